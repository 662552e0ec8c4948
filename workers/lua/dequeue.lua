--[[
  Promote due delayed ids, pop up to N ready ids over the given queues (in precedence order)
  and lease each one under a fresh fencing token.

  Input:
    KEYS[1] leases ZSET                  P:{jq}:leases          (score = lease expiry ms)
    KEYS[2] lease_tokens HASH            P:{jq}:lease_tokens
    KEYS[3] lease_queues HASH            P:{jq}:lease_queues
    KEYS[4] lease_workers HASH           P:{jq}:lease_workers
    KEYS[5] ready_scores HASH            P:{jq}:ready_scores
    KEYS[3i+3], KEYS[3i+4], KEYS[3i+5]   ready, delayed, marker of the i-th queue (i = 1..n)

    ARGV[1] count, at most 1,000
    ARGV[2] lease duration ms
    ARGV[3] token prefix (one uuid4 hex per call); token = prefix .. ":" .. n
    ARGV[4] worker id
    ARGV[4+i] name of the i-th queue

  Output:
    { next_due_ms or "", queue, id, token, queue, id, token, ... }
    next_due_ms: earliest delayed score over the queues after promotion.

  Bounded: at most 1,000 ids promoted per queue, at most count + 1,000 ids scanned per queue.
  An id that already holds a lease is dropped from ready, never returned (invariant 7).
  A queue whose ready set is not empty after the pop gets marker 0: the next idle worker wakes.
]]
-- @include _now.lua

local remaining = tonumber(ARGV[1])
local expiry = now + tonumber(ARGV[2])
local tokenPrefix, worker = ARGV[3], ARGV[4]
-- Fallback ready score when an id lacks one: below every priority.
local LOWEST = '3000000000000000'

local out = { '' }
local n = 0
local nextDue = nil

for q = 1, #ARGV - 4 do
  local queue = ARGV[4 + q]
  local ready, delayed, marker = KEYS[3 * q + 3], KEYS[3 * q + 4], KEYS[3 * q + 5]

  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)
  if #due > 0 then
    local scores = redis.call('HMGET', KEYS[5], unpack(due))
    local add = {}
    for i, id in ipairs(due) do
      add[#add + 1] = scores[i] or LOWEST
      add[#add + 1] = id
    end
    redis.call('ZREM', delayed, unpack(due))
    redis.call('HDEL', KEYS[5], unpack(due))
    redis.call('ZADD', ready, unpack(add))
  end

  local budget = remaining + 1000
  while remaining > 0 and budget > 0 do
    local popped = redis.call('ZPOPMIN', ready, math.min(remaining, budget))
    if #popped == 0 then
      break
    end
    local ids = {}
    for i = 1, #popped, 2 do
      ids[#ids + 1] = popped[i]
    end
    budget = budget - #ids
    local held = redis.call('ZMSCORE', KEYS[1], unpack(ids))
    local leaseAdd, tokenSet, queueSet, workerSet = {}, {}, {}, {}
    for i, id in ipairs(ids) do
      if not held[i] then
        n = n + 1
        local token = tokenPrefix .. ':' .. n
        leaseAdd[#leaseAdd + 1] = expiry
        leaseAdd[#leaseAdd + 1] = id
        tokenSet[#tokenSet + 1] = id
        tokenSet[#tokenSet + 1] = token
        queueSet[#queueSet + 1] = id
        queueSet[#queueSet + 1] = queue
        workerSet[#workerSet + 1] = id
        workerSet[#workerSet + 1] = worker
        out[#out + 1] = queue
        out[#out + 1] = id
        out[#out + 1] = token
        remaining = remaining - 1
      end
    end
    if #leaseAdd > 0 then
      redis.call('ZADD', KEYS[1], unpack(leaseAdd))
      redis.call('HSET', KEYS[2], unpack(tokenSet))
      redis.call('HSET', KEYS[3], unpack(queueSet))
      redis.call('HSET', KEYS[4], unpack(workerSet))
    end
  end

  if redis.call('ZCARD', ready) > 0 then
    redis.call('ZADD', marker, 0, 'm')
  end

  local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
  if #first > 0 and (nextDue == nil or tonumber(first[2]) < tonumber(nextDue)) then
    nextDue = first[2]
  end
end

out[1] = nextDue or ''
return out
