--[[
  Sliding-window rate limit (the API's job-creation throttle): admit a request if fewer than the limit
  were admitted in the last window, atomically, so every web process shares one budget.

  Input:
    KEYS[1] window ZSET                  P:{jq}:throttle:<scope>:<user>   (score = admission ms)

    ARGV[1] window ms
    ARGV[2] limit (requests per window)
    ARGV[3] unique member for this request (uuid4 hex)

  Output:
    0 when admitted, else the ms until the oldest admission leaves the window (at least 1)
]]
-- @include _now.lua
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
-- bounded: ZADD runs only while ZCARD < limit, so the window never holds more than the configured limit.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(tonumber(oldest[2]) + window - now, 1)
