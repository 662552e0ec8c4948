--[[
  Read the Redis epoch, creating it if missing: a new epoch reveals a Redis that lost its data
  (the reconciler then rebuilds from PostgreSQL, workers re-assert their leases).

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
