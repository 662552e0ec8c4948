--[[
  Sliding-window rate limit (the API's job-creation throttle): admit a request if fewer than the limit
  were admitted in the last window, atomically, so every web process shares one budget.

  Input:
    KEYS[1] window ZSET                  P:{jq}:throttle:<scope>:<user>   (score = admission ms)

    ARGV[1] window ms
    ARGV[2] limit (requests per window)
    ARGV[3] unique member for this request (uuid4 hex)

  Output:
    {wait_ms, remaining, reset_ms}
      wait_ms    0 when admitted, else the ms until the oldest admission leaves the window (at least 1)
      remaining  admissions still free in the window after this request (0 when refused)
      reset_ms   ms until the oldest admission leaves the window, freeing a slot (at least 1; the
                 window ms when it is empty, which only a limit of 0 leaves it)
]]
-- @include _now.lua
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
-- bounded: ZADD runs only while ZCARD < limit, so the window never holds more than the configured limit.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local admitted = count < limit
if admitted then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  count = count + 1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local reset = window  -- an empty window (a limit of 0) frees nothing sooner
if oldest[2] then
  reset = math.max(tonumber(oldest[2]) + window - now, 1)
end
if admitted then
  return {0, limit - count, reset}
end
return {reset, 0, reset}
