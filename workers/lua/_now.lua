--[[
  Shared preamble, not a script: "now" in ms from Redis TIME, the one clock every script uses, so the
  hosts' clocks never matter. A script says `-- @include _now.lua` on a line of its own; the broker's
  loader replaces that line with the code below, joined onto one line (so it must hold no comment).

  Input:
    no KEYS, no ARGV (TIME touches no key: nothing to declare for Redis Cluster)

  Output:
    locals t (the TIME reply) and now (ms)
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
