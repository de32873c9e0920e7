"""The WebSocket gateway: ``serve()`` starts a node, :class:`Gateway` is its handle.

The aiohttp adapter over the delivery engine, the queues and the authenticator (all imported
downward from here). See ``docs/gateway.md`` (running, deployment, shutdown, health) and
``docs/protocol.md``.
"""

from __future__ import annotations

from wsmq.gateway.server import Gateway, GatewayStart, serve

__all__ = ["Gateway", "GatewayStart", "serve"]
