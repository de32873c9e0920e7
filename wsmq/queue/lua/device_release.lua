-- The last subscription of device ARGV[1] on node ARGV[2] ended: drop that lease and record
-- the device as last seen now (only while it is still registered).
-- KEYS[1] devices zset, KEYS[2] leases zset
local _, _, ms = wsmq_now()
redis.call('ZREM', KEYS[2], ARGV[1] .. '/' .. ARGV[2])
redis.call('ZADD', KEYS[1], 'XX', 'GT', wsmq_fmt(ms), ARGV[1])
return 1
