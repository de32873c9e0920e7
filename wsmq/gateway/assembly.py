"""Assembling a gateway node from its settings: every part built, every route mounted, nothing
connected yet (no event loop needed, so ``serve(app, ...)`` may run before ``web.run_app``).

Also the start-time Redis check, which says once and clearly that Redis does not answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from wsmq.api import ApiService, mount_api
from wsmq.auth import Authenticator, UserStore
from wsmq.connections import AnyRedis, pool_stats, redis_from_url
from wsmq.engine.delivery import DeliveryEngine
from wsmq.engine.group_copier import GroupCopier
from wsmq.gateway.app import (
    STATE_KEY,
    Authenticate,
    AuthorizeHook,
    GatewayState,
    websocket_handler,
)
from wsmq.gateway.health import CHECK_TIMEOUT, HealthChecks, add_health_routes
from wsmq.gateway.metrics import CONTENT_TYPE, GatewayMetrics
from wsmq.realtime.listener import RealtimeListener
from wsmq.settings import Settings

__all__ = [
    "Closer",
    "NodeParts",
    "assemble",
    "check_redis",
    "listener_close",
    "redis_host",
    "store_kind",
]

log = logging.getLogger("wsmq.gateway")

#: The close coroutine function of a part the node opens (a Redis client, the user store...).
Closer = Callable[[], Awaitable[object]]


@dataclass
class NodeParts:
    """A node's parts before it starts."""

    app: web.Application
    state: GatewayState
    own_app: bool
    #: Close coroutine functions of everything the node opens (Redis clients, the store...).
    closers: list[Closer]
    #: The readiness Redis client, also used for the start-time check.
    redis_probe: AnyRedis
    #: Copies group messages into member queues (docs/delivery.md "Groups"); None with the
    #: ``group_copier`` setting off.
    copier: GroupCopier | None
    #: The HTTP API's background parts (None with ``api`` off).
    api: ApiService | None = None


def assemble(
    app: web.Application | None,
    settings: Settings,
    authorize: AuthorizeHook | None,
    authenticate: Authenticate | None,
    user_store: UserStore | None,
    authorize_leave: bool = False,
) -> NodeParts:
    """Build every part and mount the routes; nothing connects yet (no event loop needed)."""
    from wsmq.queue import Queues

    auth: Authenticator | None = None
    store = user_store
    owns_store = False
    if authenticate is None or settings.secret or store is not None:
        cfg = settings.auth_config()
        if cfg is None and authenticate is None:
            raise ValueError("token authentication needs `secret` (or key files, or jwks_url)")
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
            auth = Authenticator(cfg, store)
            if not auth.can_issue and settings.auth_routes:
                log.info(
                    "no signing key (secret or private_key_file): /auth/login and /auth/token "
                    "are off; the identity provider or the host app issues x-tokens",
                    extra={"event": "auth_routes_verify_only"},
                )

    queues = Queues.from_url(settings.redis_url, realtime=True, **settings.queue_options())
    listener = RealtimeListener(settings.redis_url, settings.ns)
    metrics = GatewayMetrics()
    metrics.watch_pool(pool_stats(queues.redis))
    engine = DeliveryEngine(
        queues,
        listener,
        on_redis_error=lambda exc: metrics.redis_outages.inc(),
        on_redis_failure=lambda exc: metrics.redis_errors.inc(),
        on_devices_removed=metrics.devices_removed.labels("retention").inc,
        on_handoff=metrics.observe_handoff,
        **settings.engine_options(),
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
        authorize_leave=authorize_leave,
        authenticate=authenticate,
    )
    closers: list[Closer] = [listener_close(listener)]
    copier: GroupCopier | None = None
    if settings.group_copier:
        # Its own listener: the engine's listener has one callback, the engine's.
        copier_listener = RealtimeListener(settings.redis_url, settings.ns)
        copier = GroupCopier(
            queues,
            copier_listener,
            poll_interval=settings.poll_interval,
            batch_size=settings.batch_size,
            on_member_copied=metrics.observe_group_copies,
            on_error=metrics.observe_group_copy_error,
        )
        closers.append(listener_close(copier_listener))
    closers += [queues.close, health_redis.aclose]
    if auth is not None:
        closers.append(auth.aclose)
    if owns_store and store is not None:
        closers.append(store.close)
    own_app = app is None
    if app is None:
        app = web.Application()
    app[STATE_KEY] = state
    app.router.add_get(settings.path, websocket_handler)
    metrics_text = (lambda: (metrics.render(), CONTENT_TYPE)) if settings.metrics else None
    prefix = settings.routes_prefix
    add_health_routes(app, health, metrics_text, prefix=prefix)
    if settings.auth_routes and auth is not None and store is not None:
        from wsmq.auth import RevocationBus, add_auth_routes

        publish_bus = RevocationBus(settings.redis_url, ns=settings.ns)
        add_auth_routes(
            app,
            auth,
            store,
            publish_bus,
            prefix=f"{prefix}/auth",
            trusted_proxies=settings.trusted_proxies,
            limits=settings.auth_limits(),
            redis_url=settings.redis_url,
            ns=settings.ns,
        )
        closers.append(publish_bus.aclose)
    api: ApiService | None = None
    if settings.api:

        def node_stats() -> dict[str, int]:
            subscriptions = int(engine.stats()["subscriptions"])
            return {"connections": len(state.connections), "subscriptions": subscriptions}

        def observe(operation: str, status: int) -> None:
            metrics.api_requests.labels(operation, str(status)).inc()

        api = mount_api(app, settings, queues, store, node_stats, observe=observe)
        closers.append(api.aclose)
    return NodeParts(app, state, own_app, closers, health_redis, copier, api)


async def check_redis(client: AnyRedis, url: str) -> None:
    """One clear line when Redis does not answer at start; the node starts anyway (its parts
    retry in the background and ``/readyz`` reports it)."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await client.ping()
    except Exception as exc:  # any failure: say so once, do not fail the start
        log.warning(
            "Redis at %s does not answer (%s); starting anyway, retrying in the background "
            "(/readyz fails until it answers)",
            redis_host(url),
            type(exc).__name__,
            extra={"event": "redis_down_at_start"},
        )


def redis_host(url: str) -> str:
    """``host:port`` part of a Redis URL, without credentials."""
    rest = url.partition("://")[2] or url
    return rest.rpartition("@")[2].split("/", 1)[0] or url


def store_kind(state: GatewayState) -> str:
    """``FileUserStore``, ``MongoUserStore``, ... or ``hook`` (an ``authenticate`` hook)."""
    return type(state.auth.store).__name__ if state.auth is not None else "hook"


def _health_redis(url: str) -> AnyRedis:
    # Readiness must answer within a second and never retry for a minute (redis-py 8 defaults).
    # Every URL form (Sentinel, Cluster, TLS) goes through wsmq.connections.
    return redis_from_url(url, socket_timeout=1.0, connect_timeout=1.0, retry=0)


def listener_close(listener: RealtimeListener) -> Closer:
    """The close coroutine function of a realtime listener."""
    return listener.aclose
