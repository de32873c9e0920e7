"""Put many messages in place fast, before a measurement starts (backlogs, offline publishing).

The Node ``rsmq`` publisher manages a few thousand sends a second here; a backlog of tens of
thousands is written directly in RSMQ's layout instead (a Lua script writing ZADD/HSET/HINCRBY,
ids in RSMQ's format from Redis TIME), which wsmq and rsmq-worker read like any other message.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

CHUNK = 5000


def body(size: int) -> str:
    """A benchmark body: ``"<epoch ms>|"`` padded to ``size`` characters."""
    head = f"{time.time() * 1000:.3f}|"
    return head + "x" * max(size - len(head), 0)


# Runs inside Redis: building tens of thousands of ids and commands in Python is the slow part.
# Ids follow RSMQ: base36 of Redis TIME in µs (+ the message's index, so they stay unique), then
# 22 random alphanumerics; every message is visible at once.
FILL_LUA = """
local t = redis.call('TIME')
local base = tonumber(t[1]) * 1000000 + tonumber(t[2])
local score = math.floor(base / 1000)
local digits = '0123456789abcdefghijklmnopqrstuvwxyz'
local chars = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'
local first, count, body = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
for i = first, first + count - 1 do
  local n, id = base + i, ''
  while n > 0 do
    local d = n % 36
    id = string.sub(digits, d + 1, d + 1) .. id
    n = math.floor(n / 36)
  end
  id = string.rep('0', 10 - #id) .. id
  local tail = {}
  for j = 1, 22 do
    local r = math.random(1, 62)
    tail[j] = string.sub(chars, r, r)
  end
  id = id .. table.concat(tail)
  local key = KEYS[(i % #KEYS) + 1]
  redis.call('ZADD', key, score, id)
  redis.call('HSET', key .. ':Q', id, body)
  redis.call('HINCRBY', key .. ':Q', 'totalsent', 1)
end
return count
"""


async def fill_queues(
    redis_url: str, queues: list[str], count: int, size: int, ns: str = "rsmq"
) -> None:
    """Append ``count`` visible messages round-robin to existing RSMQ ``queues``."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        script = client.register_script(FILL_LUA)
        keys = [f"{ns}:{q}" for q in queues]
        for first in range(0, count, CHUNK):
            await script(keys=keys, args=[first, min(CHUNK, count - first), body(size)])
    finally:
        await client.aclose()


async def publish_many(redis_url: str, channels: list[str], count: int, size: int) -> int:
    """PUBLISH ``count`` messages round-robin; returns how many subscribers received them."""
    client = aioredis.Redis.from_url(redis_url)
    received = 0
    try:
        for start in range(0, count, CHUNK):
            pipe = client.pipeline(transaction=False)
            for i in range(start, min(start + CHUNK, count)):
                pipe.publish(channels[i % len(channels)], body(size))
            received += sum(int(n) for n in await pipe.execute())
    finally:
        await client.aclose()
    return received


async def backlog(redis_url: str, queues: list[str], ns: str = "rsmq") -> int:
    """Messages still in ``queues`` (visible or in flight)."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        pipe = client.pipeline(transaction=False)
        for qname in queues:
            pipe.zcard(f"{ns}:{qname}")
        return sum(int(n) for n in await pipe.execute())
    finally:
        await client.aclose()


async def create_queues(redis_url: str, queues: list[str], ns: str = "rsmq") -> None:
    """Create RSMQ queues as ``createQueue`` does (vt 30, delay 0, maxsize 65536); keep existing."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        sec, _ = await client.time()
        pipe = client.pipeline(transaction=False)
        for qname in queues:
            key = f"{ns}:{qname}:Q"
            for field, value in (
                ("vt", 30), ("delay", 0), ("maxsize", 65536), ("created", sec), ("modified", sec)
            ):  # fmt: skip
                pipe.hsetnx(key, field, value)
            pipe.sadd(f"{ns}:QUEUES", qname)
        await pipe.execute()
    finally:
        await client.aclose()
