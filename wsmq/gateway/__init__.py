"""The WebSocket gateway: ``serve()`` starts a node, :class:`Gateway` is its handle.

See ``docs/gateway.md`` (running, deployment, shutdown, health) and ``docs/protocol.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsmq.gateway.server import Gateway, GatewayStart, serve

__all__ = ["Gateway", "GatewayStart", "serve"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing wsmq.protocol.wire (pure) does not pull in aiohttp and Redis.
    if name in __all__:
        from wsmq.gateway import server

        return getattr(server, name)
    raise AttributeError(f"module 'wsmq.gateway' has no attribute {name!r}")
