--[[
  Re-add what PostgreSQL has and Redis lacks (push lost, Redis restarted empty or flushed). Never duplicates:
  an id already queued in its queue or leased is left alone. With ARGV[1] = "check" it changes nothing and
  only reports which of the given ids are missing (the reconciler re-reads PostgreSQL for those, then adds).

  Input:
    KEYS[1] leases ZSET                  P:{jq}:leases
    KEYS[2] lease_tokens HASH            P:{jq}:lease_tokens
    KEYS[3] lease_queues HASH            P:{jq}:lease_queues
    KEYS[4] ready_scores HASH            P:{jq}:ready_scores
    KEYS[3i+2], KEYS[3i+3], KEYS[3i+4]   ready, delayed, marker of the i-th distinct queue (i = 1..n)

    ARGV[1] lease duration ms (for re-created leases), or "check": report the missing ids, write nothing
    ARGV[2] n, the number of distinct queues
    ARGV[2+i] name of the i-th distinct queue
    ARGV[3+n] p, the number of placements
    ARGV    then p quads: id, queue index, ready_score, run_at_ms ("" = now)
    ARGV    then triples of running jobs: id, token, queue index
    (at most 1,000 entries in all)

  Output:
    the ids added (in "check" mode: the ids that would be added), in input order.

  Placement: in neither ready nor delayed of its queue and no lease -> placed as enqueue does (markers too).
  Running: no lease -> lease with expiry now + lease ms and PostgreSQL's token; the id leaves ready and
  delayed of its queue. If no live worker extends it, the reaper handles it when it expires.
]]
-- @include _now.lua
local check = ARGV[1] == 'check'
local expiry = now + (tonumber(ARGV[1]) or 0)
local nq = tonumber(ARGV[2])
local np = tonumber(ARGV[3 + nq])

local added = {}
local i = 4 + nq
for _ = 1, np do
  local id, q, score, runAt = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  local ready, delayed, marker = KEYS[3 * q + 2], KEYS[3 * q + 3], KEYS[3 * q + 4]
  if not (redis.call('ZSCORE', ready, id) or redis.call('ZSCORE', delayed, id)
      or redis.call('ZSCORE', KEYS[1], id)) then
    if not check then
      local at = tonumber(runAt)
      if at == nil or at <= now then
        redis.call('ZADD', ready, score, id)
        redis.call('ZADD', marker, 0, 'm')
      else
        redis.call('ZADD', delayed, runAt, id)
        redis.call('HSET', KEYS[4], id, score)
        redis.call('ZADD', marker, 'LT', runAt, 'm')
      end
    end
    added[#added + 1] = id
  end
end

while i <= #ARGV do
  local id, token, q = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  if not redis.call('ZSCORE', KEYS[1], id) then
    if not check then
      redis.call('ZREM', KEYS[3 * q + 2], id)
      redis.call('ZREM', KEYS[3 * q + 3], id)
      redis.call('HDEL', KEYS[4], id)
      redis.call('ZADD', KEYS[1], expiry, id)
      redis.call('HSET', KEYS[2], id, token)
      redis.call('HSET', KEYS[3], id, ARGV[2 + q])
    end
    added[#added + 1] = id
  end
end
return added
