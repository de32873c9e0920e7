"""``POST /api/queues/{q}/messages``: one message or a batch, optionally idempotent.

Body ``{"message": str, "delay"?: int}`` or ``{"messages": [{"message", "delay"?}, ...]}``;
any other field is 400 ``bad_request``.
A batch whose messages share one delay is stored all or nothing in one script call; messages
with different delays are stored one group per delay, in order (each group all or nothing).

``Idempotency-Key`` (1-255 printable characters): the first request with a key stores the
messages and remembers their ids for ``api_idempotency_window`` seconds in Redis under
``{ns}:wsmq:api:idem:<queue>:<digest>`` (the digest of the API key's name and the
Idempotency-Key: each API key has its own keys); a replay with the same key and body returns
those ids (header ``Idempotent-Replayed: true``) and stores nothing. The same key with another
body is 422 ``idempotency_key_reused``; a replay while the first request still runs is 409
``idempotency_in_progress``. A failed request forgets its key, so it may be retried.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from wsmq.connections import AnyRedis
from wsmq.queue import InvalidValue, MissingParameter, Queues
from wsmq.queue import validation as v

from .body import refuse_unknown_fields
from .errors import ApiError

__all__ = ["Idempotency", "Outgoing", "check_idempotency_key", "parse_publish"]


@dataclass(frozen=True)
class Outgoing:
    """One message to store."""

    message: str
    delay: int | None


def _one(item: object, where: str) -> Outgoing:
    if not isinstance(item, dict):
        raise InvalidValue(where, 0, 0, f"{where} must be an object with a message")
    if "message" not in item:
        raise MissingParameter(f"{where}.message")
    refuse_unknown_fields(item, ("message", "delay"), where)
    message = item["message"]
    v.validate_message(message)  # messageNotString, messageTooLong
    assert isinstance(message, str)
    delay = item.get("delay")
    if delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, int):
            raise InvalidValue(f"{where}.delay", 0, 9_999_999)
        delay = v.validate_delay(delay)
    return Outgoing(message, delay)


def parse_publish(body: dict[str, object], max_batch: int) -> tuple[list[Outgoing], bool]:
    """The messages of a publish body and whether it was a batch (``messages``)."""
    if "messages" in body:
        refuse_unknown_fields(body, ("messages",), "the body (a batch)")
        items = body["messages"]
        if not isinstance(items, list) or not items:
            raise InvalidValue("messages", 1, max_batch, "messages must be a non-empty list")
        if len(items) > max_batch:
            raise InvalidValue("messages", 1, max_batch)
        return [_one(item, f"messages[{i}]") for i, item in enumerate(items)], True
    if "message" not in body:
        raise MissingParameter("message")
    return [_one(body, "body")], False


async def store(queues: Queues, qname: str, outgoing: list[Outgoing]) -> list[str]:
    """Store the messages, one script call per run of equal delays; their ids in order."""
    if len(outgoing) == 1:
        return [await queues.send_message(qname, outgoing[0].message, outgoing[0].delay)]
    ids: list[str] = []
    start = 0
    while start < len(outgoing):
        end = start
        while end < len(outgoing) and outgoing[end].delay == outgoing[start].delay:
            end += 1
        batch = [o.message for o in outgoing[start:end]]
        ids += await queues.send_messages(qname, batch, outgoing[start].delay)
        start = end
    return ids


MAX_KEY_LENGTH = 255
#: Seconds an idempotent request may run before its key is free again.
PENDING_TTL = 60


def check_idempotency_key(key: str) -> None:
    """400 ``bad_request`` unless ``key`` is 1-255 printable characters."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ApiError(
            "bad_request", f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters"
        )


class Idempotency:
    """Idempotency keys of publishes, remembered in Redis for ``window`` seconds."""

    def __init__(self, redis: AnyRedis, ns: str, window: int) -> None:
        self.redis = redis
        self.ns = ns
        self.window = window

    def _key(self, owner: str, qname: str, key: str) -> str:
        # The API key's name is part of the digest: two API keys that pick the same
        # Idempotency-Key neither replay nor block each other's requests.
        digest = hashlib.sha256(f"{owner}\0{key}".encode()).hexdigest()[:32]
        return f"{self.ns}:wsmq:api:idem:{qname}:{digest}"

    async def run(
        self,
        owner: str,
        qname: str,
        key: str,
        fingerprint: str,
        send: Callable[[], Awaitable[list[str]]],
    ) -> tuple[list[str], bool]:
        """The ids of ``send()``, or those of an earlier request of the API key ``owner`` (its
        name) with ``key``; and whether this was a replay."""
        check_idempotency_key(key)
        rkey = self._key(owner, qname, key)
        pending = json.dumps({"state": "pending", "fp": fingerprint})
        # A pending mark lives briefly: a node that dies mid-request does not block the key
        # for the whole window.
        pending_ttl = min(self.window, PENDING_TTL)
        for _ in range(3):  # the mark may expire between SET NX and GET: look again
            if await self.redis.set(rkey, pending, nx=True, ex=pending_ttl):
                break
            raw = await self.redis.get(rkey)
            if raw is None:
                continue
            record = json.loads(raw)
            if record.get("fp") != fingerprint:
                raise ApiError(
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with another request body",
                    422,
                )
            if record.get("state") != "done":
                raise ApiError(
                    "idempotency_in_progress",
                    "a request with this Idempotency-Key is still running",
                    409,
                    retry_after=1,
                )
            return [str(i) for i in record["ids"]], True
        else:
            raise ApiError("idempotency_in_progress", "the Idempotency-Key is contended", 409)
        try:
            ids = await send()
        except BaseException:
            await self.redis.delete(rkey)
            raise
        done = json.dumps({"state": "done", "fp": fingerprint, "ids": ids})
        await self.redis.set(rkey, done, ex=self.window)
        return ids, False


def fingerprint(qname: str, outgoing: list[Outgoing], batch: bool) -> str:
    """What a replay must repeat: the queue and the messages with their delays."""
    canon = json.dumps([qname, batch, [[o.message, o.delay] for o in outgoing]])
    return hashlib.sha256(canon.encode("utf-8", "surrogatepass")).hexdigest()
