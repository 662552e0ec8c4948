--[[
  Place jobs of one queue where PostgreSQL says they belong now: ready, or delayed until run_at.

  Input:
    KEYS[1] ready ZSET of the queue      P:{jq}:ready:<queue>
    KEYS[2] delayed ZSET of the queue    P:{jq}:delayed:<queue>
    KEYS[3] wake marker of the queue     P:{jq}:marker:<queue>
    KEYS[4] ready_scores HASH            P:{jq}:ready_scores

    ARGV    triples, at most 1,000, ids unique: id, ready_score, run_at_ms ("" = now)

  Output:
    { placed in ready, placed in delayed }

  One place per job (invariant 7): an id leaves the other set of its queue before it is added.
  Leases are not checked: PostgreSQL decided the job is not running. "Now" is Redis TIME.
  Marker: score 0 if anything became ready, else lowered (ZADD LT) to the earliest run_at.
]]
-- @include _now.lua

local readyIds, readyAdd = {}, {}
local delayedIds, delayedAdd, scoreSet = {}, {}, {}
local earliest, earliestArg = nil, nil

for i = 1, #ARGV, 3 do
  local id, score, runAt = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local at = tonumber(runAt)
  if at == nil or at <= now then
    readyIds[#readyIds + 1] = id
    readyAdd[#readyAdd + 1] = score
    readyAdd[#readyAdd + 1] = id
  else
    delayedIds[#delayedIds + 1] = id
    delayedAdd[#delayedAdd + 1] = runAt
    delayedAdd[#delayedAdd + 1] = id
    scoreSet[#scoreSet + 1] = id
    scoreSet[#scoreSet + 1] = score
    if earliest == nil or at < earliest then
      earliest, earliestArg = at, runAt
    end
  end
end

if #readyIds > 0 then
  redis.call('ZREM', KEYS[2], unpack(readyIds))
  redis.call('HDEL', KEYS[4], unpack(readyIds))
  redis.call('ZADD', KEYS[1], unpack(readyAdd))
  redis.call('ZADD', KEYS[3], 0, 'm')
end
if #delayedIds > 0 then
  redis.call('ZREM', KEYS[1], unpack(delayedIds))
  redis.call('ZADD', KEYS[2], unpack(delayedAdd))
  redis.call('HSET', KEYS[4], unpack(scoreSet))
  if #readyIds == 0 then
    redis.call('ZADD', KEYS[3], 'LT', earliestArg, 'm')
  end
end
return { #readyIds, #delayedIds }
