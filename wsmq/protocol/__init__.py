"""The WebSocket protocol, pure and I/O-free: queue names, frames, the per-connection session.

Nothing here imports asyncio, aiohttp or redis; the server layer drives it (see
``docs/architecture.md``).
"""
