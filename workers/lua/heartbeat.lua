--[[
  Record a worker's heartbeat and info; forget workers silent for longer than the prune age.

  Input:
    KEYS[1] workers ZSET                 P:{jq}:workers        (score = last heartbeat ms)
    KEYS[2] worker info HASH             P:{jq}:worker:<id>

    ARGV[1] worker id
    ARGV[2] info TTL ms (PEXPIRE of the info hash)
    ARGV[3] prune age ms
    ARGV    then pairs: field, JSON-encoded value (merged into the info hash)

  Output:
    heartbeat time, ms (Redis TIME)

  Bounded: at most 100 silent workers are forgotten per heartbeat (a backlog drains over the next
  heartbeats, each worker beating every few seconds).
]]
-- @include _now.lua

redis.call('ZADD', KEYS[1], now, ARGV[1])
if #ARGV > 3 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 4))
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local silent = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]), 'LIMIT', 0, 100)
if #silent > 0 then
  redis.call('ZREM', KEYS[1], unpack(silent))
end
return now
