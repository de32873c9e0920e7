"""The HTTP API's endpoints under ``{routes_prefix}/api/`` (see ``docs/api.md``).

:data:`ROUTES` is the one table of (method, path, scope, handler): the router is built from it
and the tests hold the OpenAPI document (:mod:`wsmq.api.openapi`) against it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from redis.exceptions import RedisError

from wsmq.auth.apikeys import ApiKey
from wsmq.auth.errors import UserStoreError
from wsmq.auth.revocation import RevocationBus
from wsmq.auth.users import UserStore
from wsmq.queue import QueueError, Queues
from wsmq.queue import validation as v
from wsmq.queue.admin import QueueAdmin
from wsmq.queue.extras import QueueSettings
from wsmq.settings import Settings

from .access import ApiAccess
from .body import read_json_object, refuse_unknown_fields
from .errors import ApiError, error_response, queue_error
from .nodes import list_nodes
from .openapi import openapi_document
from .publish import Idempotency, check_idempotency_key, fingerprint, parse_publish, store
from .rates import HISTORY, RateSampler
from .views import QueueViews

__all__ = ["API_CONTEXT", "ROUTES", "ApiContext", "add_api_routes"]

log = logging.getLogger("wsmq.api")

_USER_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}\Z")  # wsmq.auth.tokens' rule for a subject
PEEK_DEFAULT = 10
PEEK_MAX = 100


@dataclass
class ApiContext:
    """What the endpoints share."""

    settings: Settings
    queues: Queues
    admin: QueueAdmin
    access: ApiAccess
    views: QueueViews
    rates: RateSampler
    idempotency: Idempotency
    users: UserStore | None
    bus: RevocationBus | None
    #: Called with (operation, HTTP status) after each request (the node's metrics).
    observe: Callable[[str, int], None] | None = None
    #: A request failed on Redis and none succeeded since (the failure was logged once).
    redis_failing: bool = False


API_CONTEXT = web.AppKey("wsmq_api", ApiContext)
Handler = Callable[[ApiContext, web.Request, ApiKey], Awaitable[web.StreamResponse]]


def _qname(request: web.Request) -> str:
    return v.validate_qname(request.match_info["q"])


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        body, status=status, headers={"Cache-Control": "no-store", **(headers or {})}
    )


async def _body(ctx: ApiContext, request: web.Request) -> dict[str, object]:
    settings = ctx.settings
    return await read_json_object(request, settings.api_max_body, settings.api_body_timeout)


def _confirm(request: web.Request, qname: str) -> None:
    if request.query.get("confirm") != qname:
        raise ApiError("confirm_required", f"add ?confirm={qname} to confirm this action")


def _int_field(body: dict[str, object], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError("invalidValue", f"{name} must be an integer")
    return value


_ATTRIBUTES = ("vt", "delay", "maxsize", "maxReceiveCount", "deadLetterQueue", "messageTtl")


def _attributes(body: dict[str, object]) -> QueueSettings:
    """The queue settings a body gives (only those given)."""
    refuse_unknown_fields(body, _ATTRIBUTES, "the body")
    dlq = body.get("deadLetterQueue")
    if dlq is not None and not isinstance(dlq, str):
        raise ApiError("invalidFormat", "deadLetterQueue must be a string ('' = none)")
    if dlq:  # checked here, so the error names the field and not the URL's queue
        v.validate_qname(dlq, "deadLetterQueue")
    settings = QueueSettings()
    if (vt := _int_field(body, "vt")) is not None:
        settings["vt"] = vt
    if (delay := _int_field(body, "delay")) is not None:
        settings["delay"] = delay
    if (maxsize := _int_field(body, "maxsize")) is not None:
        settings["maxsize"] = maxsize
    if (count := _int_field(body, "maxReceiveCount")) is not None:
        settings["max_receive_count"] = count
    if (ttl := _int_field(body, "messageTtl")) is not None:
        settings["message_ttl"] = ttl
    if dlq is not None:
        settings["dead_letter_queue"] = dlq
    return settings


# -- reading ---------------------------------------------------------------------------------


async def list_queues(ctx: ApiContext, request: web.Request, key: ApiKey) -> web.Response:
    return _json({"queues": await ctx.views.all()})


async def get_queue(ctx: ApiContext, request: web.Request, key: ApiKey) -> web.Response:
    return _json(await ctx.views.detail(_qname(request)))


async def peek_messages(ctx: ApiContext, request: web.Request, key: ApiKey) -> web.Response:
    qname = _qname(request)
    raw = request.query.get("peek", str(PEEK_DEFAULT))
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    if not (raw.isascii() and raw.isdecimal()) or not 1 <= int(raw) <= PEEK_MAX:
        raise ApiError("invalidValue", f"peek must be between 1 and {PEEK_MAX}")
    peeked = await ctx.admin.peek(qname, int(raw), ctx.settings.api_peek_chars)
    return _json({"queue": qname, "messages": [m.to_json() for m in peeked]})


async def queue_rates(ctx: ApiContext, request: web.Request, key: ApiKey) -> web.Response:
    qname = _qname(request)
    if not await ctx.queues.queue_exists(qname):
        raise ApiError("queueNotFound", f"Queue not found (queue {qname!r})", 404)
    return _json(
        {
            "queue": qname,
            "interval": ctx.rates.interval,
            "history": HISTORY,
            "points": ctx.rates.points(qname),
        }
    )


async def nodes(ctx: ApiContext, request: web.Request, key: ApiKey) -> web.Response:
    return _json({"nodes": await list_nodes(ctx.queues.redis, ctx.settings.ns)})


async def whoami(ctx: ApiContext, request: web.Request, key: ApiKey) -> web.Response:
    return _json({"name": key.name, "scopes": list(key.scopes)})


# -- publishing ------------------------------------------------------------------------------


async def publish(ctx: ApiContext, request: web.Request, key: ApiKey) -> web.Response:
    qname = _qname(request)
    body = await _body(ctx, request)
    outgoing, batch = parse_publish(body, ctx.settings.api_max_batch)
    idem_key = request.headers.get("Idempotency-Key")
    if idem_key is not None:
        check_idempotency_key(idem_key)  # before ?create: a refused request changes nothing
    if request.query.get("create") in ("1", "true"):
        # Creating queues is administration: a publish-only key could otherwise create any
        # number of them.
        if "admin" not in key.scopes:
            raise ApiError("forbidden", "?create=true needs the 'admin' scope", 403)
        await ctx.queues.ensure_queue(qname, vt=ctx.settings.default_vt)

    async def send() -> list[str]:
        return await store(ctx.queues, qname, outgoing)

    if idem_key is None:
        return _json({"ids": await send()}, 201)
    ids, replayed = await ctx.idempotency.run(
        key.name, qname, idem_key, fingerprint(qname, outgoing, batch), send
    )
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return _json({"ids": ids}, 200 if replayed else 201, headers)


# -- administration --------------------------------------------------------------------------


async def create_queue(ctx: ApiContext, request: web.Request, key: ApiKey) -> web.Response:
    qname = _qname(request)
    attrs = _attributes(await _body(ctx, request))
    attrs.setdefault("vt", ctx.settings.default_vt)
    await ctx.queues.create_queue(qname, **attrs)
    log.info("queue created by API key %s", key.name, extra={"event": "api.create", "queue": qname})
    return _json(await ctx.views.detail(qname), 201)


async def update_queue(ctx: ApiContext, request: web.Request, key: ApiKey) -> web.Response:
    qname = _qname(request)
    attrs = _attributes(await _body(ctx, request))
    if not await ctx.queues.queue_exists(qname):
        raise ApiError("queueNotFound", f"Queue not found (queue {qname!r})", 404)
    await ctx.queues.set_queue_attributes(qname, **attrs)
    return _json(await ctx.views.detail(qname))


async def delete_queue(ctx: ApiContext, request: web.Request, key: ApiKey) -> web.Response:
    qname = _qname(request)
    _confirm(request, qname)
    await ctx.queues.delete_queue(qname)
    log.info("queue deleted by API key %s", key.name, extra={"event": "api.delete", "queue": qname})
    return _json({"deleted": qname})


async def purge_queue(ctx: ApiContext, request: web.Request, key: ApiKey) -> web.Response:
    qname = _qname(request)
    _confirm(request, qname)
    purged = await ctx.admin.purge(qname)
    log.info("queue purged by API key %s", key.name, extra={"event": "api.purge", "queue": qname})
    return _json({"queue": qname, "purged": purged})


async def redrive(ctx: ApiContext, request: web.Request, key: ApiKey) -> web.Response:
    dlq = _qname(request)
    body = await _body(ctx, request)
    refuse_unknown_fields(body, ("count", "to"), "the body")
    count = _int_field(body, "count")
    if count is not None and count < 1:
        raise ApiError("invalidValue", "count must be >= 1 (leave it out to move all)")
    target = body.get("to")
    if target is None:
        sources = await ctx.views.dead_letter_sources(dlq)
        if len(sources) != 1:
            why = "no queue uses it" if not sources else f"{', '.join(sources)} use it"
            raise ApiError(
                "redrive_target_required",
                f"{dlq!r} is not the dead-letter queue of exactly one queue ({why}): "
                'name the target as {"to": "<queue>"}',
            )
        target = sources[0]
    if not isinstance(target, str):
        raise ApiError("invalidFormat", "to must be a queue name")
    if target == dlq:
        raise ApiError("invalidValue", "to must name another queue than the dead-letter queue")
    if not await ctx.queues.queue_exists(dlq):
        raise ApiError("queueNotFound", f"Queue not found (queue {dlq!r})", 404)
    moved = await ctx.admin.redrive(dlq, target, count)
    log.info(
        "dead-letter queue redriven by API key %s",
        key.name,
        extra={"event": "api.redrive", "queue": dlq, "to": target, "moved": moved},
    )
    return _json({"queue": dlq, "to": target, "moved": moved})


async def revoke_user(ctx: ApiContext, request: web.Request, key: ApiKey) -> web.Response:
    user_id = request.match_info["id"]
    # What an x-token's subject may name: anything else has no session, and is not echoed.
    if not _USER_ID.match(user_id):
        raise ApiError("invalid_user_id", "a user id is 1-128 of A-Z a-z 0-9 _ . : @ -")
    if ctx.users is None:
        raise ApiError("no_user_store", "this node has no user store", 501)
    user = await ctx.users.get(user_id)
    if user is None:
        raise ApiError("user_not_found", f"no user with id {user_id!r}", 404)
    await ctx.users.clear_access_token(user.id)  # durable: a reconnect with the old token fails
    nodes_told = 0
    if ctx.bus is not None:
        nodes_told = await ctx.bus.revoke(user.id)  # immediate: every node closes with 4403
    log.info("user revoked by API key %s", key.name, extra={"event": "api.revoke", "user": user.id})
    return _json({"userId": user.id, "revoked": True, "nodes": nodes_told})


#: (method, path below the prefix, scope or None for any valid key, handler)
ROUTES: tuple[tuple[str, str, str | None, Handler], ...] = (
    ("GET", "/api/me", None, whoami),
    ("GET", "/api/queues", "read", list_queues),
    ("GET", "/api/queues/{q}", "read", get_queue),
    ("PUT", "/api/queues/{q}", "admin", create_queue),
    ("PATCH", "/api/queues/{q}", "admin", update_queue),
    ("DELETE", "/api/queues/{q}", "admin", delete_queue),
    ("GET", "/api/queues/{q}/messages", "read", peek_messages),
    ("POST", "/api/queues/{q}/messages", "publish", publish),
    ("POST", "/api/queues/{q}/purge", "admin", purge_queue),
    ("POST", "/api/queues/{q}/redrive", "admin", redrive),
    ("GET", "/api/queues/{q}/rates", "read", queue_rates),
    ("GET", "/api/nodes", "read", nodes),
    ("POST", "/api/users/{id}/revoke", "admin", revoke_user),
)


def _endpoint(
    scope: str | None, handler: Handler
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        ctx = request.app[API_CONTEXT]
        response = await answer(ctx, request)
        if request.method != "GET":  # a write through the API shows in the next listing
            ctx.views.invalidate()
        if ctx.redis_failing and response.status < 500:
            ctx.redis_failing = False
            log.info("API requests reach Redis again", extra={"event": "api.redis_recovered"})
        if ctx.observe is not None:
            ctx.observe(handler.__name__, response.status)
        return response

    async def answer(ctx: ApiContext, request: web.Request) -> web.StreamResponse:
        try:
            key = await ctx.access.check(request, scope)
            return await handler(ctx, request, key)
        except ApiError as exc:
            return error_response(exc)
        except QueueError as exc:
            qname = request.match_info.get("q")
            return error_response(queue_error(exc, qname))
        except UserStoreError as exc:
            # The detail (a file path, a parse error) is for the operator's log, not the client.
            log.warning("API request failed: user store: %s", exc.message)
            return error_response(ApiError("unavailable", "the user store is unavailable", 503))
        except (RedisError, OSError) as exc:
            # Once per outage, not per request: a client retrying in a loop must not flood
            # the log (the engine reports the outage too).
            if not ctx.redis_failing:
                ctx.redis_failing = True
                log.warning(
                    "API requests fail: Redis %s (logged again after a request succeeds)",
                    type(exc).__name__,
                    extra={"event": "api.redis_unavailable"},
                )
            return error_response(ApiError("redis_unavailable", "Redis is unavailable", 503))
        except Exception:  # a bug: still JSON for the client, the traceback in the log
            log.exception("API request failed", extra={"event": "api.error"})
            return error_response(ApiError("internal_error", "internal error", 500))

    return endpoint


def add_api_routes(app: web.Application, ctx: ApiContext, *, prefix: str = "") -> None:
    """Mount every endpoint of :data:`ROUTES` and ``GET {prefix}/api/openapi.json``."""
    app[API_CONTEXT] = ctx
    for method, path, scope, handler in ROUTES:
        app.router.add_route(method, prefix + path, _endpoint(scope, handler))

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(openapi_document(prefix))

    app.router.add_get(prefix + "/api/openapi.json", openapi)
