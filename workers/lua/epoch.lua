--[[
  Read the Redis epoch, creating it if missing. A missing epoch means a Redis this deployment never
  used (first start: the worker logs INFO) or one that lost its data; a worker that saw another epoch
  before knows it is the latter (WARNING). Either way the reconciler then checks PostgreSQL's active
  jobs against Redis, and warns about the ones that really are missing; workers re-assert their leases.

  Input:
    KEYS[1] epoch STRING                 P:{jq}:epoch
    ARGV[1] candidate value (random, from the caller)

  Output:
    { epoch value, 1 if created by this call else 0 }
]]
local value = redis.call('GET', KEYS[1])
if value then
  return { value, 0 }
end
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return { ARGV[1], 1 }
