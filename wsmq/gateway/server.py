"""``serve()``: assemble and run one gateway node; :class:`Gateway` is its handle.

A node is: the WebSocket endpoint, the delivery engine (one consumer per queue with local
subscribers), the group copier (copies group messages into member queues), the revocation
listener (other nodes' logouts close sockets here), the auth HTTP endpoints and ``/healthz``,
``/readyz``, ``/metrics``. It runs its own aiohttp server, or mounts
on a host application (``serve(app)``), in which case the host runs the server: the gateway
starts with the app's ``on_startup`` and closes with its ``on_shutdown``, so ``web.run_app(app)``
works.

``serve()`` assembles the node at once (routes are mounted before a host app starts) and
returns a :class:`GatewayStart`: ``await`` it, or ``async with`` it, to start the node. A
start that fails half-way closes everything it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator
from typing import Any

from aiohttp import web

from wsmq._compat import enabled, set_fast_paths
from wsmq.api import ApiService
from wsmq.auth import UserStore
from wsmq.connections import AnyRedis
from wsmq.engine.group_copier import GroupCopier
from wsmq.gateway.app import Authenticate, AuthorizeHook, GatewayState
from wsmq.gateway.assembly import Closer, assemble, check_redis, redis_host, store_kind
from wsmq.gateway.preupgrade import setup_runner
from wsmq.settings import Settings

__all__ = ["Gateway", "GatewayStart", "serve"]

log = logging.getLogger("wsmq.gateway")


class Gateway:
    """A gateway node: what ``await serve(...)`` (or ``async with serve(...)``) gives.

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
        own_app: bool,
        closers: list[Closer],
        redis_probe: AnyRedis | None = None,
        copier: GroupCopier | None = None,
        api: ApiService | None = None,
    ) -> None:
        self.app = app
        #: The node's group copier (docs/delivery.md "Groups").
        self.copier = copier
        self.state = state
        self.settings = state.settings
        self._own_app = own_app
        self._runner: web.AppRunner | None = None
        self._closers = closers
        self._redis_probe = redis_probe
        self._background: list[asyncio.Task[None]] = []
        self._starting: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._closing = asyncio.Event()  # no loop needed until awaited
        self.port: int | None = None
        self.host: str | None = None
        self.api = api
        if api is not None:
            api.announcer.url = lambda: self.url

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

    async def _start(self) -> None:
        """Start consuming, listening for revocations and (own server) accepting; once.

        Whatever fails or is cancelled half-way, everything opened so far is closed.
        """
        if self._starting is not None:
            await asyncio.shield(self._starting)
            return
        self._starting = asyncio.get_running_loop().create_future()
        try:
            await self._start_parts()
        except BaseException as exc:
            await asyncio.shield(self.close())  # a cancelled start still closes what it opened
            if isinstance(exc, asyncio.CancelledError):
                self._starting.cancel()
            else:
                self._starting.set_exception(exc)
                self._starting.exception()  # retrieved: concurrent callers re-raise it
            raise
        self._starting.set_result(None)
        settings = self.settings
        log.info(
            "gateway listening",
            extra={
                "event": "listen",
                "url": self.url,
                "node": socket.gethostname(),
                "users": store_kind(self.state),
                "redis": redis_host(settings.redis_url),
            },
        )
        log.info("fast paths: %s", ", ".join(enabled()) or "none", extra={"event": "fast_paths"})
        log.debug("settings", extra={"event": "settings", "settings": settings.redacted()})

    async def _start_parts(self) -> None:
        state, settings = self.state, self.settings
        if self._redis_probe is not None:
            await check_redis(self._redis_probe, settings.redis_url)
        await state.engine.start()
        if self.copier is not None:
            await self.copier.start()
        if state.auth is not None:
            state.auth.prefetch()  # an identity provider's JWKS, if any
            self._background.append(
                asyncio.create_task(_revocations(state), name="wsmq-revocations")
            )
        if self._own_app:
            runner = self._runner = web.AppRunner(
                self.app,
                access_log=None,  # request lines may carry tokens (allow_query_token)
                shutdown_timeout=max(settings.shutdown_timeout * 0.1, 0.1),
                max_line_size=settings.max_header_size,
                max_field_size=settings.max_header_size,
            )
            await setup_runner(runner, settings)  # header deadline, connection cap, fd limit
            sock = _listen(settings.host, settings.port)
            await web.SockSite(runner, sock).start()
            self._bound(runner)
        if self.api is not None:
            self.api.start()  # announced once it accepts

    async def serve_forever(self) -> None:
        """Wait until the node is closed (by :meth:`close`, a host app's shutdown, or a
        signal handler). Cancelling the wait closes the node."""
        await self._start()
        try:
            await self._closing.wait()
            assert self._closed is not None  # set together with `_closing`
            await asyncio.shield(self._closed)
        except asyncio.CancelledError:
            await asyncio.shield(self.close())
            raise

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
        self._closing.set()
        try:
            await self._shutdown(restart)
        finally:
            self._closed.set_result(None)

    async def _shutdown(self, restart: bool) -> None:
        """Each phase has its own share of ``shutdown_timeout`` (together all of it): API 5 %,
        engine 30 %, group copier 10 %, sockets 25 % (+ a short abort wait), handlers' releases
        10 %, Redis and store clients 7 %, listener 10 %. The sockets' close phase always runs,
        whatever the phases before it took."""
        state = self.state
        budget = max(self.settings.shutdown_timeout, 0.5)
        state.accepting = False
        state.health.shutting_down = True
        log.info(
            "shutting down",
            extra={"event": "shutdown", "connections": len(state.connections)},
        )
        try:
            if self.api is not None:
                async with asyncio.timeout(max(budget * 0.05, 0.5)):
                    await self.api.stop()  # withdrawn from GET /api/nodes first
        except TimeoutError:  # Redis down, most likely: already reported by its own checks
            log.debug(
                "shutdown: node API did not stop in time", extra={"event": "shutdown_api_timeout"}
            )
        # Consumers stop and give their in-flight messages back before sockets close, so a
        # client reconnecting elsewhere finds them visible at once.
        try:
            async with asyncio.timeout(budget * 0.3):
                await state.engine.stop()
        except TimeoutError:
            log.warning(
                "shutdown: delivery engine did not stop in time",
                extra={"event": "shutdown_engine_timeout"},
            )
        if self.copier is not None:
            # A batch cut short is redone by another node's copier after its vt, never lost.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(budget * 0.1):
                    await self.copier.stop(grace=budget * 0.05)
        await self._close_sockets(restart, budget * 0.25)
        for task in self._background:
            task.cancel()
        pending = [*self._background, *state.tasks]
        if pending:
            await asyncio.wait(pending, timeout=budget * 0.1)
        results = await asyncio.gather(
            *(asyncio.wait_for(closer(), max(budget * 0.07, 0.25)) for closer in self._closers),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, TimeoutError):
                log.debug(
                    "shutdown: closing a part of the node failed: %r",
                    result,
                    extra={"event": "shutdown_close_fail"},
                )
        if self._runner is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(budget * 0.1, 0.25)):
                    await self._runner.cleanup()
        state.heartbeat.close()
        state.deadlines.close()
        log.info("shutdown complete", extra={"event": "shutdown_done"})

    async def _close_sockets(self, restart: bool, grace: float) -> None:
        """Close every socket with 1001 (1012 restarting), all at once, in ``grace`` seconds.

        Each close writes its frame at once and then waits for the peer's reply; the waits run
        side by side, so N sockets cost N frame writes, not N round trips. Whatever has not
        finished when the grace is up is aborted: a peer that does not answer (or read) must
        not hold the node past ``shutdown_timeout``.
        """
        conns = list(self.state.connections)
        if not conns:
            return
        loop = asyncio.get_running_loop()
        closes = [loop.create_task(c.execute(c.session.shutdown(restart=restart))) for c in conns]
        _, late = await asyncio.wait(closes, timeout=grace)
        for conn, close in zip(conns, closes, strict=True):
            if close in late:
                conn.drop()  # abort: a peer that does not answer must not hold the node
            else:
                conn.finish()  # flush the close frame, then FIN: the peer reads 1001
        if late:
            # An aborted transport ends a close waiting for the reply; a stuck one is cancelled.
            _, stuck = await asyncio.wait(late, timeout=min(grace * 0.1, 0.5))
            for task in stuck:
                task.cancel()
        log.info(
            "shutdown: sockets closed",
            extra={
                "event": "shutdown_sockets",
                "closed": len(conns) - len(late),
                "dropped": len(late),
            },
        )

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class GatewayStart:
    """What :func:`serve` returns: ``await`` it for the started :class:`Gateway`, or use it as
    ``async with serve(...) as gateway:`` (closed on exit)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def _started(self) -> Gateway:
        await self.gateway._start()
        return self.gateway

    def __await__(self) -> Generator[object, None, Gateway]:
        return self._started().__await__()

    async def __aenter__(self) -> Gateway:
        return await self._started()

    async def __aexit__(self, *exc: object) -> None:
        await self.gateway.close()


def serve(
    app: web.Application | None = None,
    *,
    settings: Settings | None = None,
    authorize: AuthorizeHook | None = None,
    authenticate: Authenticate | None = None,
    user_store: UserStore | None = None,
    authorize_leave: bool = False,
    **overrides: Any,  # Settings fields
) -> GatewayStart:
    """Assemble a gateway node; ``await`` the result to start it (or ``async with`` it).

    ``gateway = await serve(...)`` returns the started :class:`Gateway`;
    ``await gateway.serve_forever()`` then runs until it is closed or the wait is cancelled.

    Args:
        app: mount on this aiohttp application instead of running a server of our own. The
            routes are added at once; the node starts with the app's ``on_startup`` (or when
            awaited) and closes with its ``on_shutdown``, so ``serve(app, ...)`` followed by
            ``web.run_app(app)`` works without awaiting anything.
        settings: a :class:`~wsmq.settings.Settings`; keyword ``overrides`` change single
            fields (``serve(redis_url=..., secret=..., users_file=..., port=0)``).
        authorize: ``authorize(user, qname, action) -> bool``, sync or ``async`` (action
            ``"subscribe"`` or ``"send"``) replacing the default own-id/``queues``/``publish``
            rule. A hook that raises, or an async one slower than 5 s, denies. ``/leave`` asks
            it with action ``"subscribe"`` unless ``authorize_leave``.
        authenticate: ``async authenticate(request) -> user | None`` replacing token
            authentication (a host app's session cookie); a user is an object with
            ``user_id`` (and optionally ``queues``, ``publish``, ``token_exp``) or an id string.
        user_store: a :class:`wsmq.auth.UserStore` instead of ``mongo_url``/``users_file``.
        authorize_leave: ask ``authorize`` with action ``"leave"`` for ``/leave`` (a hook that
            knows it); off by default, so that a hook denying actions it does not know keeps
            allowing ``/leave`` as it did (asked ``"subscribe"``).

    Raises:
        wsmq.settings.SettingsError: invalid settings.
        ValueError: token authentication needs ``secret`` (or key files, or ``jwks_url``) and a user
            store.
    """
    settings = (settings or Settings()).replace(**overrides) if overrides else settings
    settings = settings or Settings()
    set_fast_paths(settings.fast_paths)
    parts = assemble(app, settings, authorize, authenticate, user_store, authorize_leave)
    gateway = Gateway(
        parts.app,
        parts.state,
        own_app=parts.own_app,
        closers=parts.closers,
        redis_probe=parts.redis_probe,
        copier=parts.copier,
        api=parts.api,
    )
    if app is not None:

        async def on_startup(_app: web.Application) -> None:
            await gateway._start()

        async def on_shutdown(_app: web.Application) -> None:
            await gateway.close()

        if not app.on_startup.frozen:  # else called from the app's own on_startup: awaited
            app.on_startup.append(on_startup)
        app.on_shutdown.append(on_shutdown)
        app.on_cleanup.append(on_shutdown)  # a failed startup skips on_shutdown
    return GatewayStart(gateway)


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


async def _revocations(state: GatewayState) -> None:
    """Close local sockets of users revoked on any node (:mod:`wsmq.gateway.revocations`)."""
    from wsmq.gateway.revocations import run_revocations

    await run_revocations(state)
