"""The only code that touches private internals of aiohttp, redis-py or asyncio.

Each fast path names the library versions it was read against, probes before use and keeps a
public-API path.
"""
