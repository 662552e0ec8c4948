--[[
  Take cancelled jobs out of dispatch: drop queued and delayed ids, flag leased ones for their worker.

  Input:
    KEYS[1] leases ZSET                  P:{jq}:leases
    KEYS[2] cancel SET                   P:{jq}:cancel
    KEYS[3] ready_scores HASH            P:{jq}:ready_scores
    KEYS[2i+2], KEYS[2i+3]               ready, delayed of the i-th distinct queue (i = 1..n)

    ARGV    pairs, at most 1,000: id, queue index (1..n)

  Output:
    { ids that hold a lease (now flagged in the cancel SET; extend_lease reports them to the worker) }
]]
local ids, byQueue = {}, {}
for i = 1, #ARGV, 2 do
  local id, q = ARGV[i], tonumber(ARGV[i + 1])
  ids[#ids + 1] = id
  local group = byQueue[q]
  if group == nil then
    group = {}
    byQueue[q] = group
  end
  group[#group + 1] = id
end
if #ids == 0 then
  return {}
end

for q, group in pairs(byQueue) do
  redis.call('ZREM', KEYS[2 * q + 2], unpack(group))
  redis.call('ZREM', KEYS[2 * q + 3], unpack(group))
end
redis.call('HDEL', KEYS[3], unpack(ids))

local held = redis.call('ZMSCORE', KEYS[1], unpack(ids))
local flagged, seen = {}, {}
for i, id in ipairs(ids) do
  if held[i] and not seen[id] then
    seen[id] = true
    flagged[#flagged + 1] = id
  end
end
if #flagged > 0 then
  redis.call('SADD', KEYS[2], unpack(flagged))
end
return flagged
