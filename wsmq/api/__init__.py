"""The HTTP API under ``/api/``: queues, messages, nodes, rates; keys with scopes.

See ``docs/api.md``. A node builds it with :func:`mount_api` (from its settings) and runs its
background parts (:class:`ApiService`: the node announcer and the rate sampler) while it runs.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from wsmq.auth.apikeys import ApiKeyIndex, api_key_store
from wsmq.auth.errors import UserStoreError
from wsmq.auth.revocation import RevocationBus
from wsmq.auth.shared_counters import SharedCounters
from wsmq.auth.users import UserStore
from wsmq.queue import Queues
from wsmq.queue.admin import QueueAdmin
from wsmq.settings import Settings

from .access import ApiAccess
from .console import add_console_routes
from .nodes import NodeAnnouncer, list_nodes
from .openapi import openapi_document
from .publish import Idempotency
from .rates import RateSampler
from .routes import ROUTES, ApiContext, add_api_routes
from .views import QueueViews

__all__ = ["ROUTES", "ApiService", "list_nodes", "mount_api", "openapi_document"]


class ApiService:
    """The API's background parts on one node: its announcement and the rate sampler."""

    def __init__(
        self,
        announcer: NodeAnnouncer,
        rates: RateSampler,
        counters: SharedCounters,
        bus: RevocationBus | None,
    ) -> None:
        self.announcer = announcer
        self.rates = rates
        self._counters = counters
        self._bus = bus

    def start(self) -> None:
        self.announcer.start()
        if self.rates.interval > 0:
            self.rates.start()

    async def stop(self) -> None:
        await self.announcer.stop()
        await self.rates.stop()

    async def aclose(self) -> None:
        """Stop, and close the connections the API opened itself."""
        await self.stop()
        await self._counters.aclose()
        if self._bus is not None:
            await self._bus.aclose()


def mount_api(
    app: web.Application,
    settings: Settings,
    queues: Queues,
    users: UserStore | None,
    stats: Callable[[], dict[str, int]],
    *,
    url: Callable[[], str | None] = lambda: None,
    observe: Callable[[str, int], None] | None = None,
) -> ApiService:
    """Mount ``/api/*`` and the console (``/console/``) on ``app`` (under ``routes_prefix``);
    the returned service announces the node (``stats()``: its connections and subscriptions)
    once started. ``observe`` is called with (operation, status) after each request."""
    index: ApiKeyIndex | None = None
    if users is not None:
        try:
            keys = api_key_store(users)
        except UserStoreError:
            keys = None  # a custom store without API keys: every request is 401
        if keys is not None:
            index = ApiKeyIndex(keys.list)
    counters = SharedCounters(settings.redis_url)
    access = ApiAccess(
        index,
        counters,
        per_minute=settings.api_rate_limit,
        ns=settings.ns,
        trusted_proxies=settings.trusted_proxies,
    )
    admin = QueueAdmin(queues)
    rates = RateSampler(admin, settings.rate_sample_interval)
    bus = RevocationBus(settings.redis_url, ns=settings.ns) if users is not None else None
    ctx = ApiContext(
        settings=settings,
        queues=queues,
        admin=admin,
        access=access,
        views=QueueViews(queues, admin, rates),
        rates=rates,
        idempotency=Idempotency(queues.redis, settings.ns, settings.api_idempotency_window),
        users=users,
        bus=bus,
        observe=observe,
    )
    add_api_routes(app, ctx, prefix=settings.routes_prefix)
    add_console_routes(app, prefix=settings.routes_prefix)
    announcer = NodeAnnouncer(
        queues.redis, settings.ns, stats, interval=settings.node_announce_interval, url=url
    )
    return ApiService(announcer, rates, counters, bus)
