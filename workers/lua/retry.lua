--[[
  Release leases whose token still matches and schedule the job again: delayed:<lease queue> at run_at.

  Input:
    KEYS[1] leases ZSET                  P:{jq}:leases
    KEYS[2] lease_tokens HASH            P:{jq}:lease_tokens
    KEYS[3] lease_queues HASH            P:{jq}:lease_queues
    KEYS[4] lease_workers HASH           P:{jq}:lease_workers
    KEYS[5] cancel SET                   P:{jq}:cancel
    KEYS[6] ready_scores HASH            P:{jq}:ready_scores

    ARGV[1] key prefix "P:{jq}:" (the queue's keys are built from the lease's queue; one hash slot)
    ARGV    then quads, at most 1,000: id, token, run_at_ms, ready_score

  Output:
    number of jobs moved to delayed; a mismatching token changes nothing.
    (A matching lease without a recorded queue is released but not moved.)

  Per queue: the id leaves ready (one place per job) and the marker is lowered (ZADD LT) to the earliest run_at.
]]
local prefix = ARGV[1]
local ids, tokens, runAts, scores, seen = {}, {}, {}, {}, {}
for i = 2, #ARGV, 4 do
  if not seen[ARGV[i]] then
    seen[ARGV[i]] = true
    ids[#ids + 1] = ARGV[i]
    tokens[#tokens + 1] = ARGV[i + 1]
    runAts[#runAts + 1] = ARGV[i + 2]
    scores[#scores + 1] = ARGV[i + 3]
  end
end
if #ids == 0 then
  return 0
end

local current = redis.call('HMGET', KEYS[2], unpack(ids))
local queues = redis.call('HMGET', KEYS[3], unpack(ids))
local matched, byQueue, order, scoreSet = {}, {}, {}, {}
for i, id in ipairs(ids) do
  if current[i] == tokens[i] then
    matched[#matched + 1] = id
    local queue = queues[i]
    if queue then
      local group = byQueue[queue]
      if group == nil then
        group = { ids = {}, add = {}, earliest = nil, earliestArg = nil }
        byQueue[queue] = group
        order[#order + 1] = queue
      end
      group.ids[#group.ids + 1] = id
      group.add[#group.add + 1] = runAts[i]
      group.add[#group.add + 1] = id
      local at = tonumber(runAts[i])
      if group.earliest == nil or at < group.earliest then
        group.earliest, group.earliestArg = at, runAts[i]
      end
      scoreSet[#scoreSet + 1] = id
      scoreSet[#scoreSet + 1] = scores[i]
    end
  end
end
if #matched == 0 then
  return 0
end
redis.call('ZREM', KEYS[1], unpack(matched))
redis.call('HDEL', KEYS[2], unpack(matched))
redis.call('HDEL', KEYS[3], unpack(matched))
redis.call('HDEL', KEYS[4], unpack(matched))
redis.call('SREM', KEYS[5], unpack(matched))
if #scoreSet > 0 then
  redis.call('HSET', KEYS[6], unpack(scoreSet))
end

local moved = 0
for _, queue in ipairs(order) do
  local group = byQueue[queue]
  redis.call('ZREM', prefix .. 'ready:' .. queue, unpack(group.ids))
  redis.call('ZADD', prefix .. 'delayed:' .. queue, unpack(group.add))
  redis.call('ZADD', prefix .. 'marker:' .. queue, 'LT', group.earliestArg, 'm')
  moved = moved + #group.ids
end
return moved
