--[[
  Renew a short lock only if the caller still holds it (compare-and-pexpire), e.g. the scheduler leader.

  Input:
    KEYS[1] lock STRING                  P:{jq}:lock:<name>
    ARGV[1] token returned by the acquire
    ARGV[2] new TTL ms

  Output:
    1 if renewed, 0 if the lock is held by another token or has expired
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
