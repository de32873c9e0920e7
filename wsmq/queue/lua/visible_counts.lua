-- Number of receivable messages (score <= now) in each given queue, in one round trip.
-- KEYS messages zsets
local _, _, ms = wsmq_now()
local now = wsmq_fmt(ms)
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('ZCOUNT', KEYS[i], '-inf', now)
end
return out
