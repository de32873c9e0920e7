"""HTTP endpoints: ``POST /auth/login``, ``POST /auth/token``, ``POST /auth/logout``.

Errors are JSON ``{"error": <reason>, "message": ...}`` with the :class:`AuthError` status
(400 bad JSON, 401, 403 disabled, 429 rate limited with ``Retry-After``, 503 store down).
Each request is counted against its client address before its body is read (bounded in size
and nesting), then waits its user's slowdown (:mod:`wsmq.auth.limiter`).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Awaitable, Callable, Collection

from aiohttp import web

from wsmq.auth.authenticator import Authenticator
from wsmq.auth.config import AuthConfig
from wsmq.auth.errors import AuthError, InvalidUserData
from wsmq.auth.json_body import parse_json_object
from wsmq.auth.limiter import AuthLimiter, AuthLimits
from wsmq.auth.revocation import RevocationBus
from wsmq.auth.shared_counters import SharedCounters
from wsmq.auth.users import UserStore

log = logging.getLogger("wsmq.auth")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: What an endpoint makes of a request: the per-user counter's subject, and the attempt itself.
Attempt = tuple[str, Callable[[], Awaitable[web.StreamResponse]]]
MAX_BODY = 16 * 1024


def error_response(exc: AuthError) -> web.Response:
    """The JSON error response for ``exc``."""
    headers = {"WWW-Authenticate": 'Bearer realm="wsmq"'} if exc.status == 401 else {}
    if exc.reason == "rate_limited":
        headers["Retry-After"] = str(math.ceil(exc.retry_after or 1))
    return web.json_response(exc.to_json(), status=exc.status, headers=headers)


async def _json_body(request: web.Request) -> dict[str, object]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise AuthError("bad_request", "the request body is too large", status=413)
    raw = bytearray()
    while len(raw) <= MAX_BODY:  # read() returns what has arrived: loop to the end
        chunk = await request.content.read(MAX_BODY + 1 - len(raw))
        if not chunk:
            break
        raw += chunk
    if len(raw) > MAX_BODY:
        raise AuthError("bad_request", "the request body is too large", status=413)
    return parse_json_object(bytes(raw))


def _string_field(body: dict[str, object], name: str, *, required: bool = True) -> str | None:
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


def key_salt(config: AuthConfig) -> bytes:
    """What keys the rate-limit counters' digests: derived from the JWT secret when there is
    one (the same on every node), so the keys in Redis do not give user names away."""
    secret = (config.secret or "").encode()
    return hashlib.blake2b(secret, digest_size=32, person=b"wsmq-ratelimit").digest()


def add_auth_routes(
    app: web.Application,
    auth: Authenticator,
    store: UserStore,
    bus: RevocationBus | None,
    *,
    prefix: str = "/auth",
    limiter: AuthLimiter | None = None,
    limits: AuthLimits | None = None,
    redis_url: str | None = None,
    ns: str = "rsmq",
    trusted_proxies: Collection[str] = (),
) -> AuthLimiter:
    """Mount the auth endpoints on ``app``; returns their limiter (for tests and metrics).

    ``POST {prefix}/login`` ``{"userName", "password"}`` -> ``{"token", "accessToken",
    "expiresIn"}``: the new access token replaces the user's previous one.
    ``POST {prefix}/token`` with header ``x-access-token`` and ``{"userId"}`` or
    ``{"userName"}`` -> ``{"token", "expiresIn"}``.
    ``POST {prefix}/logout`` with header ``x-access-token`` and the user (body, or the
    ``x-token`` header) -> ``{"revoked": true}``; every node drops the user's sockets.
    A node that cannot sign x-tokens (only ``jwks_url`` or a public key configured) mounts only
    ``/logout``: the identity provider or the host app issues the tokens.

    Every failure that depends on a user record is the same 401 ``invalid_credentials``. All
    three endpoints share one :class:`AuthLimiter`: per client address, checked before the body
    is read, and a per-user slowdown. Without ``limiter`` one is built on ``limits`` (default:
    the ``login_*`` numbers of the :class:`AuthConfig`) with counters shared through
    ``redis_url`` under ``{ns}:ratelimit:`` (in memory without it), closed with ``app``.
    Give the addresses of your reverse proxies as ``trusted_proxies`` so
    :func:`client_address` reads ``X-Forwarded-For`` from them.
    """
    proxies = frozenset(trusted_proxies)
    if limiter is None:
        cfg = auth.config
        limits = limits or AuthLimits(
            attempts_per_ip=cfg.login_attempts_per_ip,
            window=cfg.login_window,
            user_free_failures=cfg.login_attempts_per_user,
        )
        own = AuthLimiter(limits, SharedCounters(redis_url), ns=ns, salt=key_salt(cfg))

        async def close_limiter(_app: web.Application) -> None:
            await own.aclose()

        app.on_cleanup.append(close_limiter)
        limiter = own
    checked = limiter

    def limited(prepare: Callable[[web.Request, dict[str, object]], Attempt]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            address = client_address(
                request.remote, request.headers.get("X-Forwarded-For"), proxies
            )
            await checked.admit(address)  # before the body is read or parsed
            subject, attempt = prepare(request, await _json_body(request))
            await checked.before_attempt(subject)
            try:
                return await attempt()
            except AuthError as exc:
                if exc.reason == "invalid_credentials":
                    await checked.failed(subject)
                raise

        return _guard(handler)

    def login(request: web.Request, body: dict[str, object]) -> Attempt:
        user_name = _string_field(body, "userName")
        password = _string_field(body, "password")
        assert user_name is not None and password is not None

        async def attempt() -> web.StreamResponse:
            issued = await auth.login(user_name, password)
            return web.json_response(issued.to_json(), headers={"Cache-Control": "no-store"})

        return f"name:{user_name}", attempt

    def _user_ref(request: web.Request, body: dict[str, object]) -> tuple[str | None, str | None]:
        user_id = _string_field(body, "userId", required=False)
        user_name = _string_field(body, "userName", required=False)
        if user_id is None and user_name is None and request.headers.get("x-token"):
            user_id = auth.verify_jwt(request.headers["x-token"]).user_id
        if user_id is None and user_name is None:
            raise AuthError("bad_request", "userId or userName is required")
        return user_id, user_name

    def token(request: web.Request, body: dict[str, object]) -> Attempt:
        user_id, user_name = _user_ref(request, body)

        async def attempt() -> web.StreamResponse:
            issued = await auth.token_for(
                request.headers.get("x-access-token"), user_id=user_id, user_name=user_name
            )
            return web.json_response(issued.to_json(), headers={"Cache-Control": "no-store"})

        return _subject(user_id, user_name), attempt

    def logout(request: web.Request, body: dict[str, object]) -> Attempt:
        user_id, user_name = _user_ref(request, body)

        async def attempt() -> web.StreamResponse:
            user = await auth.logout(
                request.headers.get("x-access-token"), user_id=user_id, user_name=user_name
            )
            if bus is not None:
                try:
                    await bus.revoke(user.id)
                except Exception as exc:  # the store change already revoked it durably
                    log.error("could not publish the revocation: %s", type(exc).__name__)
            return web.json_response({"revoked": True})

        return _subject(user_id, user_name), attempt

    if auth.can_issue:  # a node that only verifies (JWKS, public key) signs nothing
        app.router.add_post(f"{prefix}/login", limited(login))
        app.router.add_post(f"{prefix}/token", limited(token))
    app.router.add_post(f"{prefix}/logout", limited(logout))
    return checked


def _subject(user_id: str | None, user_name: str | None) -> str:
    """The per-user counter's subject: the id when given, else the name (as login counts it)."""
    return f"id:{user_id}" if user_id is not None else f"name:{user_name}"
