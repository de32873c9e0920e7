"""The Origin check of the WebSocket handshake (cross-site WebSocket hijacking guard).

Origins compare as ``(scheme, host, port)``. Without ``allowed_origins``, a browser may connect
only from this node's own origin: ``public_url``'s, or, without it, ``scheme://Host`` when the
``Host`` header is an IP address or ``localhost``. A DNS name in ``Host`` is never believed
alone: with DNS rebinding, ``evil.example`` resolves to this server and the browser sends
``Host: evil.example`` with ``Origin: http://evil.example``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from urllib.parse import urlsplit

from aiohttp import web

__all__ = ["OriginKey", "origin_allowed", "origin_key", "own_scheme"]

OriginKey = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HTTP_SCHEME = {"http": "http", "ws": "http", "https": "https", "wss": "https"}


def origin_key(origin: str) -> OriginKey | None:
    """``(scheme, host, port)`` of an origin or URL (``ws``/``wss`` count as ``http``/``https``,
    default ports filled in); ``None`` for anything else (``null``, garbage)."""
    try:
        parts = urlsplit(origin.strip().lower())
        scheme = _HTTP_SCHEME.get(parts.scheme)
        host, port = parts.hostname, parts.port
    except ValueError:  # a bad port
        return None
    if scheme is None or not host:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def _is_ip_or_localhost(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def own_scheme(request: web.Request, trusted_proxies: Collection[str] = ()) -> str:
    """``http`` or ``https`` as the browser sees this node: the ``X-Forwarded-Proto`` of a
    trusted proxy (TLS ends there), else the connection's own scheme."""
    forwarded = request.headers.get("X-Forwarded-Proto")
    if forwarded and request.remote in trusted_proxies:
        scheme = forwarded.split(",", 1)[0].strip().lower()
        if scheme in _DEFAULT_PORTS:
            return scheme
    return "https" if request.scheme == "https" else "http"


def origin_allowed(
    request: web.Request,
    allowed: Collection[str],
    *,
    public_url: str | None = None,
    trusted_proxies: Collection[str] = (),
) -> bool:
    """Cross-site WebSocket hijacking guard: scheme, host and port must all match.

    No ``Origin`` header: not a browser, allowed. ``*`` in ``allowed``: any origin. A
    non-empty ``allowed`` list: the origin must be one of them. An empty list means same
    origin only: the origin of ``public_url`` when set; otherwise the ``Host`` header is
    believed only when it is an IP address or ``localhost`` (a DNS name in ``Host`` can be
    the attacker's own, rebound to this server's address), with the scheme of the connection
    (or of ``X-Forwarded-Proto`` from a ``trusted_proxies`` peer).
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if "*" in allowed:
        return True
    key = origin_key(origin)
    if key is None:
        return False
    if allowed:
        return key in {origin_key(a) for a in allowed}
    if public_url:
        return key == origin_key(public_url)
    scheme = own_scheme(request, trusted_proxies)
    own = origin_key(f"{scheme}://{request.host}")
    return own is not None and _is_ip_or_localhost(own[1]) and key == own
