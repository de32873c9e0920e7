"""HTTP endpoints: ``POST /auth/login``, ``POST /auth/token``, ``POST /auth/logout``.

Errors are JSON ``{"error": <reason>, "message": ...}`` with the :class:`AuthError` status
(400 bad JSON, 401, 403 disabled, 429 rate limited with ``Retry-After``, 503 store down).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from aiohttp import web

from wsmq.auth.authenticator import Authenticator
from wsmq.auth.errors import AuthError, InvalidUserData
from wsmq.auth.ratelimit import SlidingWindowLimiter
from wsmq.auth.revocation import RevocationBus
from wsmq.auth.users import UserStore

log = logging.getLogger("wsmq.auth")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY = 16 * 1024


class LoginLimiter:
    """Login attempts limited per user name and per client address (explicit clock)."""

    def __init__(
        self,
        per_user: int = 10,
        per_ip: int = 50,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.users = SlidingWindowLimiter(per_user, window)
        self.ips = SlidingWindowLimiter(per_ip, window)
        self.clock = clock

    def check(self, user_name: str, ip: str) -> None:
        """Record an attempt or raise ``AuthError("rate_limited")``."""
        now = self.clock()
        wait = max(self.users.retry_after(user_name, now), self.ips.retry_after(ip, now))
        if wait > 0:
            raise AuthError(
                "rate_limited", f"too many attempts, retry in {math.ceil(wait)} s", retry_after=wait
            )
        self.users.hit(user_name, now)
        self.ips.hit(ip, now)


def error_response(exc: AuthError) -> web.Response:
    """The JSON error response for ``exc``."""
    headers = {"WWW-Authenticate": 'Bearer realm="wsmq"'} if exc.status == 401 else {}
    if exc.reason == "rate_limited":
        headers["Retry-After"] = str(math.ceil(exc.retry_after or 1))
    return web.json_response(exc.to_json(), status=exc.status, headers=headers)


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise AuthError("bad_request", "the request body is too large", status=413)
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise AuthError("bad_request", "the request body is too large", status=413)
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise AuthError("bad_request", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise AuthError("bad_request", "the body must be a JSON object")
    return body


def _string_field(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise AuthError("bad_request", f"{name} must be a non-empty string")
    return value


def _guard(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except AuthError as exc:
            return error_response(exc)
        except InvalidUserData as exc:
            return error_response(AuthError("bad_request", str(exc)))

    return wrapped


def client_address(
    remote: str | None, forwarded_for: str | None, trusted_proxies: Collection[str] = ()
) -> str:
    """The client's address: ``remote``, or, when ``remote`` is a trusted proxy, the rightmost
    ``X-Forwarded-For`` hop that is not itself a trusted proxy.

    Only hops added by trusted proxies are believed (a client can write anything to the left),
    so behind nginx every client gets its own login rate limit instead of sharing the proxy's.
    """
    address = remote or "unknown"
    if address not in trusted_proxies or not forwarded_for:
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        if not hop:
            break
        address = hop
        if hop not in trusted_proxies:
            break
    return address


def add_auth_routes(
    app: web.Application,
    auth: Authenticator,
    store: UserStore,
    bus: RevocationBus | None,
    *,
    prefix: str = "/auth",
    limiter: LoginLimiter | None = None,
    trusted_proxies: Collection[str] = (),
) -> LoginLimiter:
    """Mount the auth endpoints on ``app``; returns the login limiter (for tests and metrics).

    ``POST {prefix}/login`` ``{"userName", "password"}`` -> ``{"token", "accessToken",
    "expiresIn"}``: the new access token replaces the user's previous one.
    ``POST {prefix}/token`` with header ``x-access-token`` and ``{"userId"}`` or
    ``{"userName"}`` -> ``{"token", "expiresIn"}``.
    ``POST {prefix}/logout`` with header ``x-access-token`` and the user (body, or the
    ``x-token`` header) -> ``{"revoked": true}``; every node drops the user's sockets.

    Login attempts are limited per user name and per client address; give the addresses of
    your reverse proxies as ``trusted_proxies`` so :func:`client_address` reads
    ``X-Forwarded-For`` from them.
    """
    proxies = frozenset(trusted_proxies)
    cfg = auth.config
    limiter = limiter or LoginLimiter(
        cfg.login_attempts_per_user, cfg.login_attempts_per_ip, cfg.login_window
    )

    async def login(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        user_name = _string_field(body, "userName")
        password = _string_field(body, "password")
        assert user_name is not None and password is not None
        address = client_address(request.remote, request.headers.get("X-Forwarded-For"), proxies)
        limiter.check(user_name, address)
        issued = await auth.login(user_name, password)
        return web.json_response(issued.to_json(), headers={"Cache-Control": "no-store"})

    def _user_ref(request: web.Request, body: dict[str, Any]) -> tuple[str | None, str | None]:
        user_id = _string_field(body, "userId", required=False)
        user_name = _string_field(body, "userName", required=False)
        if user_id is None and user_name is None and request.headers.get("x-token"):
            user_id = auth.verify_jwt(request.headers["x-token"]).user_id
        return user_id, user_name

    async def token(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        user_id, user_name = _user_ref(request, body)
        issued = await auth.token_for(
            request.headers.get("x-access-token"), user_id=user_id, user_name=user_name
        )
        return web.json_response(issued.to_json(), headers={"Cache-Control": "no-store"})

    async def logout(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        user_id, user_name = _user_ref(request, body)
        user = await auth.logout(
            request.headers.get("x-access-token"), user_id=user_id, user_name=user_name
        )
        if bus is not None:
            try:
                await bus.revoke(user.id)
            except Exception as exc:  # the store change already revoked it durably
                log.error("could not publish the revocation: %s", type(exc).__name__)
        return web.json_response({"revoked": True})

    app.router.add_post(f"{prefix}/login", _guard(login))
    app.router.add_post(f"{prefix}/token", _guard(token))
    app.router.add_post(f"{prefix}/logout", _guard(logout))
    return limiter
