--[[
  Forget a worker that shut down cleanly: its heartbeat entry and its info hash.

  Input:
    KEYS[1] workers ZSET                 P:{jq}:workers
    KEYS[2] worker info HASH             P:{jq}:worker:<id>

    ARGV[1] worker id

  Output:
    1 if the worker was known, else 0

  Its leases are not touched: the worker released them (ack / give back) before leaving.
]]
redis.call('DEL', KEYS[2])
return redis.call('ZREM', KEYS[1], ARGV[1])
