"""``serve()``: assemble and run one gateway node; :class:`Gateway` is its handle.

A node is: the WebSocket endpoint, the delivery engine (one consumer per queue with local
subscribers), the revocation listener (other nodes' logouts close sockets here), the auth HTTP
endpoints and ``/healthz``, ``/readyz``, ``/metrics``. It runs its own aiohttp server, or mounts
on a host application (``serve(app)``), in which case the host runs the server and the gateway
closes with the app's ``on_shutdown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

from aiohttp import web

from wsmq.connections import AnyRedis, pool_stats, redis_from_url
from wsmq.gateway.app import (
    STATE_KEY,
    Authenticate,
    AuthorizeHook,
    GatewayState,
    websocket_handler,
)
from wsmq.gateway.delivery import DeliveryEngine
from wsmq.gateway.health import HealthChecks, add_health_routes
from wsmq.gateway.metrics import CONTENT_TYPE, GatewayMetrics
from wsmq.settings import Settings

__all__ = ["Gateway", "serve"]

log = logging.getLogger("wsmq.gateway")


class Gateway:
    """A running gateway node, as returned by :func:`serve`.

    Attributes:
        app: the aiohttp application the endpoints are mounted on.
        settings: the effective settings.
        port: the TCP port listened on (``None`` when mounted on a host app).
        url: ``ws://host:port/path`` of the WebSocket endpoint (``None`` when mounted).
    """

    def __init__(
        self,
        app: web.Application,
        state: GatewayState,
        *,
        runner: web.AppRunner | None,
        closers: list[Any],
        background: list[asyncio.Task[Any]],
    ) -> None:
        self.app = app
        self.state = state
        self.settings = state.settings
        self._runner = runner
        self._closers = closers
        self._background = background
        self._closed: asyncio.Future[None] | None = None
        self.port: int | None = None
        self.host: str | None = None

    def _bound(self, runner: web.AppRunner) -> None:
        addresses = runner.addresses
        if addresses:
            self.host, self.port = str(addresses[0][0]), int(addresses[0][1])

    @property
    def url(self) -> str | None:
        """WebSocket URL of this node (the ``public_url`` setting when given)."""
        if self.settings.public_url:
            return self.settings.public_url
        if self.port is None:
            return None
        host = self.host or self.settings.host
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard is not dialable
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.port}{self.settings.path}"

    @property
    def http_url(self) -> str | None:
        """``http://host:port`` of this node (health, metrics, auth endpoints)."""
        url = self.url
        if url is None:
            return None
        scheme, _, rest = url.partition("://")
        host = rest.split("/", 1)[0]
        return f"{'https' if scheme == 'wss' else 'http'}://{host}"

    @property
    def closed(self) -> bool:
        return self._closed is not None and self._closed.done()

    async def close(self, *, restart: bool = False) -> None:
        """Graceful shutdown, bounded by ``shutdown_timeout``.

        Stop accepting (new handshakes get 503) and fail readiness, stop consuming and release
        in-flight messages (visibility 0), close every socket with 1001 (1012 with
        ``restart=True``), then stop the listener and close connections to Redis and the user
        store. Idempotent; concurrent callers wait for the same shutdown.
        """
        if self._closed is not None:
            await asyncio.shield(self._closed)
            return
        self._closed = asyncio.get_running_loop().create_future()
        try:
            await self._shutdown(restart)
        finally:
            self._closed.set_result(None)

    async def _shutdown(self, restart: bool) -> None:
        state = self.state
        budget = max(self.settings.shutdown_timeout, 0.5)
        state.accepting = False
        state.health.shutting_down = True
        log.info(
            "shutting down",
            extra={"event": "shutdown", "connections": len(state.connections)},
        )
        # Consumers stop and give their in-flight messages back before sockets close, so a
        # client reconnecting elsewhere finds them visible at once.
        try:
            async with asyncio.timeout(budget * 0.5):
                await state.engine.stop()
        except TimeoutError:
            log.warning("shutdown: delivery engine did not stop in time")
        conns = list(state.connections)

        async def close_one(conn: Any) -> None:
            await conn.execute(conn.session.shutdown(restart=restart))

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(budget * 0.3):
                await asyncio.gather(*(close_one(c) for c in conns), return_exceptions=True)
        for task in self._background:
            task.cancel()
        pending = [*self._background, *state.tasks]
        if pending:
            await asyncio.wait(pending, timeout=budget * 0.1)
        results = await asyncio.gather(
            *(asyncio.wait_for(closer(), budget * 0.1 + 0.5) for closer in self._closers),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, TimeoutError):
                log.debug("shutdown: closing a connection failed: %r", result)
        if self._runner is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(budget * 0.1 + 1.0):
                    await self._runner.cleanup()
        state.heartbeat.close()
        state.deadlines.close()
        log.info("shutdown complete", extra={"event": "shutdown_done"})

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _health_redis(url: str) -> AnyRedis:
    # Readiness must answer within a second and never retry for a minute (redis-py 8 defaults).
    # Any URL form (Sentinel, Cluster, TLS) goes through wsmq.connections.
    return redis_from_url(url, socket_timeout=1.0, connect_timeout=1.0, retry=0)


def _auth_config(settings: Settings) -> Any | None:
    from wsmq.auth import AuthConfig

    if not (settings.secret or settings.public_key_file or settings.private_key_file):
        return None
    return AuthConfig(
        secret=settings.secret,
        algorithm=settings.algorithm,
        ttl=settings.token_ttl,
        leeway=float(settings.leeway),
        issuer=settings.issuer,
        audience=settings.audience,
        previous_secret=settings.previous_secret,
        previous_secret_until=settings.previous_secret_until,
        private_key_file=settings.private_key_file,
        public_key_file=settings.public_key_file,
        legacy_tokens2=settings.legacy_tokens2,
    )


async def serve(
    app: web.Application | None = None,
    *,
    settings: Settings | None = None,
    authorize: AuthorizeHook | None = None,
    authenticate: Authenticate | None = None,
    user_store: Any | None = None,
    **overrides: Any,
) -> Gateway:
    """Start a gateway node and return its :class:`Gateway` handle.

    Args:
        app: mount on this aiohttp application instead of running a server of our own
            (call before the app starts; the gateway closes on the app's ``on_shutdown``).
        settings: a :class:`~wsmq.settings.Settings`; keyword ``overrides`` change single
            fields (``serve(redis_url=..., secret=..., users_file=..., port=0)``).
        authorize: ``authorize(user, qname, action) -> bool``, sync or ``async`` (action
            ``"subscribe"`` or ``"send"``) replacing the default own-id/``queues``/``publish``
            rule. A hook that raises, or an async one slower than 5 s, denies.
        authenticate: ``async authenticate(request) -> user | None`` replacing token
            authentication (a host app's session cookie); a user is an object with
            ``user_id`` (and optionally ``queues``, ``publish``, ``token_exp``) or an id string.
        user_store: a :class:`wsmq.auth.UserStore` instead of ``mongo_url``/``users_file``.

    Raises:
        wsmq.settings.SettingsError: invalid settings.
        ValueError: token authentication needs ``secret`` (or key files) and a user store.
    """
    from wsmq.queue import Queues
    from wsmq.queue.realtime import RealtimeListener

    settings = (settings or Settings()).replace(**overrides) if overrides else settings
    settings = settings or Settings()
    closers: list[Any] = []
    auth: Any | None = None
    store = user_store
    owns_store = False
    if authenticate is None or settings.secret or store is not None:
        cfg = _auth_config(settings)
        if cfg is None and authenticate is None:
            raise ValueError("token authentication needs `secret` (or key files)")
        if store is None and (settings.mongo_url or settings.users_file):
            from wsmq.auth import open_user_store

            store = open_user_store(
                mongo_url=settings.mongo_url,
                users_file=settings.users_file,
                database=settings.mongo_database,
            )
            owns_store = True
        if store is None and authenticate is None:
            raise ValueError("token authentication needs a user store (mongo_url or users_file)")
        if cfg is not None and store is not None:
            from wsmq.auth import Authenticator

            auth = Authenticator(cfg, store)

    queues = Queues.from_url(
        settings.redis_url,
        ns=settings.ns,
        realtime=True,
        max_connections=settings.redis_pool_size,
    )
    listener = RealtimeListener(settings.redis_url, settings.ns)
    metrics = GatewayMetrics()
    metrics.watch_pool(pool_stats(queues.redis))
    engine = DeliveryEngine(
        queues,
        listener,
        poll_interval=settings.poll_interval,
        batch_size=settings.batch_size,
        max_outbox_bytes=settings.write_buffer_limit,
        on_redis_error=lambda exc: metrics.redis_outages.inc(),
        on_redis_failure=lambda exc: metrics.redis_errors.inc(),
        stop_timeout=max(settings.shutdown_timeout * 0.2, 0.2),
    )
    health = HealthChecks()
    health_redis = _health_redis(settings.redis_url)
    health.add("redis", health_redis.ping)
    if store is not None:
        health.add("users", store.ping)
    state = GatewayState(
        settings=settings,
        queues=queues,
        engine=engine,
        auth=auth,
        metrics=metrics,
        health=health,
        authorize=authorize,
        authenticate=authenticate,
    )
    own_app = app is None
    if app is None:
        app = web.Application()
    app[STATE_KEY] = state
    app.router.add_get(settings.path, websocket_handler)
    metrics_text = (lambda: (metrics.render(), CONTENT_TYPE)) if settings.metrics else None
    add_health_routes(app, health, metrics_text)
    if settings.auth_routes and auth is not None and store is not None:
        from wsmq.auth import RevocationBus, add_auth_routes

        publish_bus = RevocationBus(settings.redis_url, ns=settings.ns)
        add_auth_routes(app, auth, store, publish_bus, trusted_proxies=settings.trusted_proxies)
        closers.append(publish_bus.aclose)

    await engine.start()
    background: list[asyncio.Task[Any]] = []
    if auth is not None:
        background.append(asyncio.create_task(_revocations(state), name="wsmq-revocations"))
    closers += [listener_close(listener), queues.close, health_redis.aclose]
    if owns_store and store is not None:
        closers.append(store.close)

    runner: web.AppRunner | None = None
    if own_app:
        runner = web.AppRunner(
            app,
            access_log=None,  # request lines may carry tokens (allow_query_token)
            shutdown_timeout=max(settings.shutdown_timeout * 0.1, 0.1),
            max_line_size=settings.max_header_size,
            max_field_size=settings.max_header_size,
        )
        await runner.setup()
    gateway = Gateway(app, state, runner=runner, closers=closers, background=background)
    if runner is not None:
        try:
            sock = _listen(settings.host, settings.port)
            await web.SockSite(runner, sock).start()
        except BaseException:
            # e.g. the port is taken: stop what already runs (engine, listeners, pools).
            await gateway.close()
            raise
        gateway._bound(runner)
    else:

        async def on_shutdown(_app: web.Application) -> None:
            await gateway.close()

        app.on_shutdown.append(on_shutdown)
    log.info(
        "gateway listening",
        extra={"event": "listen", "url": gateway.url, "settings": settings.redacted()},
    )
    return gateway


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def listener_close(listener: Any) -> Any:
    """The close coroutine function of a realtime listener (``aclose`` or ``close``)."""
    return getattr(listener, "aclose", None) or listener.close


async def _revocations(state: GatewayState) -> None:
    """Close local sockets of users revoked on any node (logout, disable)."""
    from wsmq.auth import RevocationBus

    bus = RevocationBus(state.settings.redis_url, ns=state.settings.ns)

    async def recheck() -> None:
        # Revocations published while our subscription was down were missed: ask the store.
        store = state.auth.store if state.auth is not None else None
        for user_id in list(state.by_user):
            with contextlib.suppress(Exception):
                user = await store.get(user_id) if store is not None else None
                if store is not None and (user is None or getattr(user, "disabled", False)):
                    await state.revoke_user(user_id)

    try:
        async for user_id in bus.revocations(on_reconnect=recheck):
            closed = await state.revoke_user(user_id)
            if closed:
                log.info(
                    "revoked user's sockets closed",
                    extra={"event": "revoke", "user": user_id, "sockets": closed},
                )
    finally:
        await bus.aclose()
