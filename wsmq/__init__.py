"""wsmq: durable Redis queues delivered to authenticated WebSocket clients.

Public API (see README.md)::

    from wsmq import Queues, Message, send_message   # RSMQ-compatible queue layer
    from wsmq import serve                           # the WebSocket gateway
    from wsmq import issue_tokens, verify_tokens     # authentication, usable without a server
    from wsmq import WsmqError, QueueError, AuthError  # the error tree (see wsmq.errors)
"""

from __future__ import annotations

from typing import Any

from wsmq._lazy import load_lazy

__version__ = "0.1.0"

# Imported lazily so that `import wsmq` stays cheap and a publisher that only sends
# messages never imports aiohttp, pyjwt or the MongoDB drivers.
_LAZY = {
    "Queues": "wsmq.queue",
    "Message": "wsmq.queue",
    "send_message": "wsmq.queue",
    "QueueError": "wsmq.queue",
    "WsmqError": "wsmq.errors",
    "ConfigError": "wsmq.errors",
    "RedisUrlError": "wsmq.redis_url",
    "ProtocolError": "wsmq.protocol.wire",
    "UserStoreError": "wsmq.auth.errors",
    "serve": "wsmq.gateway",
    "Settings": "wsmq.settings",
    "issue_tokens": "wsmq.auth",
    "verify_tokens": "wsmq.auth",
    "AuthError": "wsmq.auth",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    return load_lazy(__name__, _LAZY, globals(), name)
