--[[
  Release a short lock only if the caller still holds it (compare-and-delete).

  Input:
    KEYS[1] lock STRING                  P:{jq}:lock:<name>
    ARGV[1] token returned by the acquire

  Output:
    1 if released, 0 if the lock is held by another token or has expired
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
