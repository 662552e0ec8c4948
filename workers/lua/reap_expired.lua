--[[
  List expired leases (read-only). The caller writes PostgreSQL first (guarded running -> retrying|failed)
  and then calls retry or ack for the rows it changed, so nothing here changes state.

  Input:
    KEYS[1] leases ZSET                  P:{jq}:leases
    KEYS[2] lease_tokens HASH            P:{jq}:lease_tokens
    KEYS[3] lease_queues HASH            P:{jq}:lease_queues

    ARGV[1] limit, at most 1,000

  Output:
    { id, token, queue, id, token, queue, ... } for leases whose expiry < now, earliest first
    ("" for a token or queue Redis does not have).
]]
-- @include _now.lua

local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - 1, 'LIMIT', 0, tonumber(ARGV[1]))
if #ids == 0 then
  return {}
end
local tokens = redis.call('HMGET', KEYS[2], unpack(ids))
local queues = redis.call('HMGET', KEYS[3], unpack(ids))
local out = {}
for i, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = tokens[i] or ''
  out[#out + 1] = queues[i] or ''
end
return out
