--[[
  Release leases whose token still matches (fencing): the attempt's outcome is committed in PostgreSQL.

  Input:
    KEYS[1] leases ZSET                  P:{jq}:leases
    KEYS[2] lease_tokens HASH            P:{jq}:lease_tokens
    KEYS[3] lease_queues HASH            P:{jq}:lease_queues
    KEYS[4] lease_workers HASH           P:{jq}:lease_workers
    KEYS[5] cancel SET                   P:{jq}:cancel

    ARGV    pairs, at most 1,000: id, token

  Output:
    number of leases released; a mismatching token changes nothing.
]]
local ids, tokens, seen = {}, {}, {}
for i = 1, #ARGV, 2 do
  if not seen[ARGV[i]] then
    seen[ARGV[i]] = true
    ids[#ids + 1] = ARGV[i]
    tokens[#tokens + 1] = ARGV[i + 1]
  end
end
if #ids == 0 then
  return 0
end

local current = redis.call('HMGET', KEYS[2], unpack(ids))
local matched = {}
for i, id in ipairs(ids) do
  if current[i] == tokens[i] then
    matched[#matched + 1] = id
  end
end
if #matched > 0 then
  redis.call('ZREM', KEYS[1], unpack(matched))
  redis.call('HDEL', KEYS[2], unpack(matched))
  redis.call('HDEL', KEYS[3], unpack(matched))
  redis.call('HDEL', KEYS[4], unpack(matched))
  redis.call('SREM', KEYS[5], unpack(matched))
end
return #matched
