"""The Python client of wsmq: ``async with connect(urls, tokens=...) as client``.

Reference: ``docs/client-python.md``.
"""

from wsmq.client.client import Client, connect
from wsmq.client.delivery import Delivery, Subscription
from wsmq.client.errors import (
    AuthenticationFailed,
    ClientClosed,
    ClientError,
    CommandFailed,
    ConnectionClosed,
    Unauthorized,
)
from wsmq.client.events import (
    Connected,
    Connecting,
    Disconnected,
    Event,
    Subscribed,
    TokenRefreshed,
    TransientError,
)
from wsmq.client.reconnect import TokenSource
from wsmq.client.stream import EventStream

__all__ = [
    "AuthenticationFailed",
    "Client",
    "ClientClosed",
    "ClientError",
    "CommandFailed",
    "Connected",
    "Connecting",
    "ConnectionClosed",
    "Delivery",
    "Disconnected",
    "Event",
    "EventStream",
    "Subscribed",
    "Subscription",
    "TokenRefreshed",
    "TokenSource",
    "TransientError",
    "Unauthorized",
    "connect",
]
