--[[
  Take cancelled jobs out of dispatch: drop queued and delayed ids, flag leased ones and tell their worker.

  Input:
    KEYS[1] leases ZSET                  P:{jq}:leases
    KEYS[2] cancel SET                   P:{jq}:cancel
    KEYS[3] ready_scores HASH            P:{jq}:ready_scores
    KEYS[4] lease_workers HASH           P:{jq}:lease_workers
    KEYS[2i+3], KEYS[2i+4]               ready, delayed of the i-th distinct queue (i = 1..n)

    ARGV[1] key prefix "P:{jq}:" (a worker's control list is built from its lease's worker; one hash slot)
    ARGV[2] control list TTL ms (a list whose worker died expires on its own)
    ARGV    then pairs, at most 1,000: id, queue index (1..n)

  Output:
    { ids that hold a lease (now flagged in the cancel SET, the fallback extend_lease reports, and pushed
      onto control:<worker> of the worker holding the lease, which it BLPOPs: the prompt path) }
]]
local prefix, ttl = ARGV[1], ARGV[2]
local ids, byQueue = {}, {}
for i = 3, #ARGV, 2 do
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
  redis.call('ZREM', KEYS[2 * q + 3], unpack(group))
  redis.call('ZREM', KEYS[2 * q + 4], unpack(group))
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
if #flagged == 0 then
  return flagged
end
redis.call('SADD', KEYS[2], unpack(flagged))

local owners = redis.call('HMGET', KEYS[4], unpack(flagged))
local byWorker, order = {}, {}
for i, id in ipairs(flagged) do
  local worker = owners[i]
  if worker then
    local group = byWorker[worker]
    if group == nil then
      group = {}
      byWorker[worker] = group
      order[#order + 1] = worker
    end
    group[#group + 1] = id
  end
end
for _, worker in ipairs(order) do
  local control = prefix .. 'control:' .. worker
  redis.call('RPUSH', control, unpack(byWorker[worker]))
  redis.call('PEXPIRE', control, ttl)
end
return flagged
