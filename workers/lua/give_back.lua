--[[
  Release leases whose token still matches and put the job back in ready:<lease queue> without delay
  (shutdown, or a child replaced for another job's timeout: no attempt is charged in PostgreSQL).

  Input:
    KEYS[1] leases ZSET                  P:{jq}:leases
    KEYS[2] lease_tokens HASH            P:{jq}:lease_tokens
    KEYS[3] lease_queues HASH            P:{jq}:lease_queues
    KEYS[4] lease_workers HASH           P:{jq}:lease_workers
    KEYS[5] cancel SET                   P:{jq}:cancel
    KEYS[6] ready_scores HASH            P:{jq}:ready_scores

    ARGV[1] key prefix "P:{jq}:" (the queue's keys are built from the lease's queue; one hash slot)
    ARGV    then triples, at most 1,000: id, token, ready_score

  Output:
    number of jobs moved to ready; a mismatching token changes nothing.
    (A matching lease without a recorded queue is released but not moved.)

  Per queue: the id leaves delayed (one place per job) and the marker is set to 0.
]]
local prefix = ARGV[1]
local ids, tokens, scores, seen = {}, {}, {}, {}
for i = 2, #ARGV, 3 do
  if not seen[ARGV[i]] then
    seen[ARGV[i]] = true
    ids[#ids + 1] = ARGV[i]
    tokens[#tokens + 1] = ARGV[i + 1]
    scores[#scores + 1] = ARGV[i + 2]
  end
end
if #ids == 0 then
  return 0
end

local current = redis.call('HMGET', KEYS[2], unpack(ids))
local queues = redis.call('HMGET', KEYS[3], unpack(ids))
local matched, byQueue, order = {}, {}, {}
for i, id in ipairs(ids) do
  if current[i] == tokens[i] then
    matched[#matched + 1] = id
    local queue = queues[i]
    if queue then
      local group = byQueue[queue]
      if group == nil then
        group = { ids = {}, add = {} }
        byQueue[queue] = group
        order[#order + 1] = queue
      end
      group.ids[#group.ids + 1] = id
      group.add[#group.add + 1] = scores[i]
      group.add[#group.add + 1] = id
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
redis.call('HDEL', KEYS[6], unpack(matched))

local moved = 0
for _, queue in ipairs(order) do
  local group = byQueue[queue]
  redis.call('ZREM', prefix .. 'delayed:' .. queue, unpack(group.ids))
  redis.call('ZADD', prefix .. 'ready:' .. queue, unpack(group.add))
  redis.call('ZADD', prefix .. 'marker:' .. queue, 0, 'm')
  moved = moved + #group.ids
end
return moved
