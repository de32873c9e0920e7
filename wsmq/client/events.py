"""Connection state events, and what the client does after each close code."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = [
    "Connected",
    "Connecting",
    "Disconnected",
    "Event",
    "Next",
    "Subscribed",
    "TokenRefreshed",
    "TransientError",
    "after_close",
]


@dataclass(frozen=True, slots=True)
class Connecting:
    """A connection attempt to ``node`` starts."""

    node: str


@dataclass(frozen=True, slots=True)
class Connected:
    """The handshake with ``node`` succeeded (subscriptions are being renewed)."""

    node: str


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection to ``node`` ended; ``code`` is the close code (``None``: no close frame,
    refused, or the handshake failed), ``reason`` its text or the error."""

    node: str
    code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class TokenRefreshed:
    """``node`` accepted an in-band ``/refresh`` (after ``expiring``): the connection now lasts
    until ``exp`` (epoch s; ``None``: no expiry)."""

    node: str
    exp: float | None


@dataclass(frozen=True, slots=True)
class Subscribed:
    """``node`` answered ``subscribed`` for ``queue`` (as ``device``, if any): after every
    (re)subscribe, so once per connection per subscription."""

    node: str
    queue: str
    device: str | None


@dataclass(frozen=True, slots=True)
class TransientError:
    """Something failed that the client retries by itself, with backoff: ``tokens()`` raised
    (``error`` is its exception), or a subscribe was answered ``unavailable`` (a
    :class:`~wsmq.client.errors.CommandFailed`). ``node``: the node concerned (``""``: none yet).
    """

    node: str
    error: Exception


Event = Connecting | Connected | Disconnected | TokenRefreshed | Subscribed | TransientError


class Next(Enum):
    """What follows a close."""

    NEXT_NODE_NOW = "next_node_now"  # the node is going away: try another at once
    NEW_TOKENS = "new_tokens"  # call tokens() again, then reconnect
    BACK_OFF = "back_off"  # wait (jittered, growing), then try the next node
    RAISE = "raise"  # the client is at fault: retrying would fail the same way


_POLICY: dict[int, Next] = {
    1001: Next.NEXT_NODE_NOW,
    1012: Next.NEXT_NODE_NOW,
    4401: Next.NEW_TOKENS,
    4403: Next.NEW_TOKENS,
    4429: Next.BACK_OFF,
    1002: Next.RAISE,
    1007: Next.RAISE,
    1008: Next.RAISE,
    1009: Next.RAISE,
}


def after_close(code: int | None) -> Next:
    """The policy for close ``code``; anything unlisted (1006, refused, timeouts) backs off."""
    return _POLICY.get(code, Next.BACK_OFF) if code is not None else Next.BACK_OFF
