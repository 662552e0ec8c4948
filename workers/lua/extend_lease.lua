--[[
  Extend leases the caller still owns, re-assert leases Redis lost, and report lost leases and cancel requests.

  Input:
    KEYS[1] leases ZSET                  P:{jq}:leases
    KEYS[2] lease_tokens HASH            P:{jq}:lease_tokens
    KEYS[3] lease_queues HASH            P:{jq}:lease_queues
    KEYS[4] lease_workers HASH           P:{jq}:lease_workers
    KEYS[5] cancel SET                   P:{jq}:cancel
    KEYS[2i+4], KEYS[2i+5]               ready, delayed of the i-th distinct queue (i = 1..n)

    ARGV[1] lease duration ms
    ARGV[2] worker id ("" = not recorded)
    ARGV[3] n, the number of distinct queues
    ARGV[3+i] name of the i-th distinct queue
    ARGV    then triples, at most 1,000, ids unique: id, token, queue index (1..n; "0" = queue unknown)

  Output:
    { { lost ids }, { ids with a cancel request } }

  Per id:
    token matches         -> expiry = now + lease ms
    no lease, not queued  -> re-assert it (Redis lost it: flush, restart): lease, token, queue
    no lease, but queued  -> lost (the job was given back or re-queued meanwhile)
    another token         -> lost (someone else owns the job)
]]
-- @include _now.lua
local expiry = now + tonumber(ARGV[1])
local worker = ARGV[2]

local nq = tonumber(ARGV[3])
local ids, tokens, qidx = {}, {}, {}
for i = 4 + nq, #ARGV, 3 do
  ids[#ids + 1] = ARGV[i]
  tokens[#tokens + 1] = ARGV[i + 1]
  qidx[#qidx + 1] = tonumber(ARGV[i + 2])
end
if #ids == 0 then
  return { {}, {} }
end

local current = redis.call('HMGET', KEYS[2], unpack(ids))
local lost, cancel = {}, {}
for i, id in ipairs(ids) do
  local token = tokens[i]
  if current[i] == token then
    redis.call('ZADD', KEYS[1], expiry, id)
  elseif not current[i] then
    local q = qidx[i]
    local queued = false
    if q > 0 then
      queued = redis.call('ZSCORE', KEYS[2 * q + 4], id) or redis.call('ZSCORE', KEYS[2 * q + 5], id)
    end
    if queued then
      lost[#lost + 1] = id
    else
      redis.call('ZADD', KEYS[1], expiry, id)
      redis.call('HSET', KEYS[2], id, token)
      if q > 0 then
        redis.call('HSET', KEYS[3], id, ARGV[3 + q])
      end
      if worker ~= '' then
        redis.call('HSET', KEYS[4], id, worker)
      end
    end
  else
    lost[#lost + 1] = id
  end
end

local flagged = redis.call('SMISMEMBER', KEYS[5], unpack(ids))
for i, id in ipairs(ids) do
  if flagged[i] == 1 then
    cancel[#cancel + 1] = id
  end
end
return { lost, cancel }
