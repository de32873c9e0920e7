"""The OpenAPI 3.1 document of the HTTP API, served at ``GET /api/openapi.json``.

Written by hand; ``tests/api/test_openapi.py`` holds it against the mounted routes (every route
documented, every documented operation mounted, the scopes alike) and against ``docs/api.md``.
Each operation names its scope in ``x-wsmq-scope``.
"""

from __future__ import annotations

import copy

from wsmq import __version__
from wsmq.protocol.json_types import JsonObject, JsonValue

__all__ = ["openapi_document"]

JSON = "application/json"


def _ref(name: str) -> JsonObject:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(description: str, schema: JsonObject, status: str = "200") -> JsonObject:
    return {status: {"description": description, "content": {JSON: {"schema": schema}}}}


def _errors(*statuses: int) -> JsonObject:
    meaning = {
        400: "Bad JSON (`bad_json`) or a value RSMQ rejects (`invalidValue`, `invalidFormat`, "
        "`missingParameter`, `messageTooLong`, ...), or a user id no user can have "
        "(`invalid_user_id`).",
        401: "No API key or an unknown one (`unauthorized`).",
        403: "The key lacks the scope (`forbidden`).",
        404: "No such queue (`queueNotFound`) or user (`user_not_found`).",
        408: "The body did not arrive within `api_body_timeout` seconds (`body_timeout`).",
        409: "The queue exists (`queueExists`), or an idempotent request is still running.",
        413: "The body exceeds `api_max_body` (`body_too_large`).",
        422: "The Idempotency-Key was used with another body (`idempotency_key_reused`).",
        429: "Over `api_rate_limit` for this key (`rate_limited`, with `Retry-After`).",
        503: "Redis or the user store is unavailable.",
    }
    base = (401, 403, 429, 503)
    return {
        str(s): {"description": meaning[s], "content": {JSON: {"schema": _ref("Error")}}}
        for s in sorted({*base, *statuses})
    }


def _op(
    op_id: str,
    summary: str,
    scope: str | None,
    responses: JsonObject,
    *,
    body: JsonObject | None = None,
    params: list[JsonValue] | None = None,
) -> JsonObject:
    op: JsonObject = {
        "operationId": op_id,
        "summary": summary,
        "x-wsmq-scope": scope,
        "responses": responses,
    }
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    return op


_INT: JsonObject = {"type": "integer"}
_STR: JsonObject = {"type": "string"}
_NUM: JsonObject = {"type": "number"}
_Q: JsonObject = {
    "name": "q",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,160}$"},
}
_CONFIRM: JsonObject = {
    "name": "confirm",
    "in": "query",
    "required": True,
    "description": "The queue's name again.",
    "schema": _STR,
}

_SCHEMAS: JsonObject = {
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {"error": _STR, "message": _STR},
    },
    "Queue": {
        "type": "object",
        "properties": {
            "name": _STR,
            "visible": {**_INT, "description": "Receivable now."},
            "hidden": {**_INT, "description": "In flight or delayed."},
            "total": _INT,
            "totalsent": _INT,
            "totalrecv": _INT,
            "totalexpired": _INT,
            "totalexceeded": _INT,
            "oldestAge": {
                "type": ["number", "null"],
                "description": "Seconds since the next message in line was sent.",
            },
            "vt": _INT,
            "delay": _INT,
            "maxsize": _INT,
            "created": _INT,
            "modified": _INT,
            "maxReceiveCount": {"type": ["integer", "null"]},
            "messageTtl": {"type": ["integer", "null"]},
            "deadLetterQueue": {
                "type": ["object", "null"],
                "properties": {"name": _STR, "depth": {"type": ["integer", "null"]}},
            },
            "deadLetterFor": {"type": "array", "items": _STR},
            "groupMembers": {
                "type": ["array", "null"],
                "items": _STR,
                "description": "The member queues when this queue is a group, else null.",
            },
            "rate": {
                "type": ["object", "null"],
                "properties": {"sentPerMinute": _NUM, "receivedPerMinute": _NUM},
            },
        },
    },
    "QueueAttributes": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "vt": _INT,
            "delay": _INT,
            "maxsize": _INT,
            "maxReceiveCount": _INT,
            "deadLetterQueue": _STR,
            "messageTtl": _INT,
        },
    },
    "OutgoingMessage": {
        "type": "object",
        "required": ["message"],
        "additionalProperties": False,
        "properties": {"message": _STR, "delay": _INT},
    },
    "PublishRequest": {
        "oneOf": [
            _ref("OutgoingMessage"),
            {
                "type": "object",
                "required": ["messages"],
                "additionalProperties": False,
                "properties": {
                    "messages": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 1000,
                        "items": _ref("OutgoingMessage"),
                    }
                },
            },
        ]
    },
    "PeekedMessage": {
        "type": "object",
        "properties": {
            "id": _STR,
            "message": _STR,
            "truncated": {"type": "boolean"},
            "length": {
                "type": ["integer", "null"],
                "description": "The full length in characters; null for a body larger than "
                "max(4 x api_peek_chars, 196608) bytes (not fetched whole).",
            },
            "size": {"type": "integer", "description": "The full size in bytes (UTF-8)."},
            "rc": _INT,
            "fr": _INT,
            "sent": _NUM,
            "visibleAt": _INT,
        },
    },
    "RatePoint": {
        "type": "object",
        "properties": {
            "t": _NUM,
            "seconds": _NUM,
            "sent": _INT,
            "received": _INT,
            "sentPerMinute": _NUM,
            "receivedPerMinute": _NUM,
        },
    },
    "Node": {
        "type": "object",
        "properties": {
            "id": _STR,
            "host": _STR,
            "pid": _INT,
            "url": {"type": ["string", "null"]},
            "version": _STR,
            "started": _NUM,
            "announced": _NUM,
            "uptime": _NUM,
            "connections": _INT,
            "subscriptions": _INT,
        },
    },
}


def _paths() -> JsonObject:
    queue = _ref("Queue")
    return {
        "/api/me": {
            "get": _op(
                "whoami",
                "The calling key's name and scopes",
                None,
                {
                    **_ok(
                        "The key",
                        {
                            "type": "object",
                            "properties": {
                                "name": _STR,
                                "scopes": {"type": "array", "items": _STR},
                            },
                        },
                    ),
                    **_errors(),
                },
            )
        },
        "/api/queues": {
            "get": _op(
                "listQueues",
                "Every queue with its counts, counters, settings and rates (read at most once "
                "a second per node, shared by concurrent listings)",
                "read",
                {
                    **_ok(
                        "The queues",
                        {
                            "type": "object",
                            "properties": {"queues": {"type": "array", "items": queue}},
                        },
                    ),
                    **_errors(),
                },
            )
        },
        "/api/queues/{q}": {
            "get": _op(
                "getQueue",
                "One queue",
                "read",
                {**_ok("The queue", queue), **_errors(400, 404)},
                params=[_Q],
            ),
            "put": _op(
                "createQueue",
                "Create a queue",
                "admin",
                {**_ok("Created", queue, "201"), **_errors(400, 408, 409, 413)},
                body=_ref("QueueAttributes"),
                params=[_Q],
            ),
            "patch": _op(
                "updateQueue",
                "Change a queue's settings",
                "admin",
                {**_ok("The changed queue", queue), **_errors(400, 404, 408, 413)},
                body=_ref("QueueAttributes"),
                params=[_Q],
            ),
            "delete": _op(
                "deleteQueue",
                "Delete a queue and its messages",
                "admin",
                {
                    **_ok("Deleted", {"type": "object", "properties": {"deleted": _STR}}),
                    **_errors(400, 404),
                },
                params=[_Q, _CONFIRM],
            ),
        },
        "/api/queues/{q}/messages": {
            "get": _op(
                "peekMessages",
                "The next messages in line, without receiving them",
                "read",
                {
                    **_ok(
                        "The messages",
                        {
                            "type": "object",
                            "properties": {
                                "queue": _STR,
                                "messages": {"type": "array", "items": _ref("PeekedMessage")},
                            },
                        },
                    ),
                    **_errors(400, 404),
                },
                params=[
                    _Q,
                    {
                        "name": "peek",
                        "in": "query",
                        "required": False,
                        "description": "ASCII digits.",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                    },
                ],
            ),
            "post": _op(
                "publish",
                "Send one message or a batch",
                "publish",
                {
                    **_ok(
                        "Stored",
                        {"type": "object", "properties": {"ids": {"type": "array", "items": _STR}}},
                        "201",
                    ),
                    **_ok(
                        "An Idempotency-Key replay: the first request's ids",
                        {"type": "object", "properties": {"ids": {"type": "array", "items": _STR}}},
                    ),
                    **_errors(400, 404, 408, 409, 413, 422),
                },
                body=_ref("PublishRequest"),
                params=[
                    _Q,
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "Remembered per API key and queue: another API key "
                        "using the same value neither replays nor blocks this one's requests.",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    },
                    {
                        "name": "create",
                        "in": "query",
                        "required": False,
                        "description": (
                            "`true`: create the queue when missing (needs the `admin` scope too)."
                        ),
                        "schema": {"type": "boolean"},
                    },
                ],
            ),
        },
        "/api/queues/{q}/purge": {
            "post": _op(
                "purgeQueue",
                "Delete every message, keep the queue",
                "admin",
                {
                    **_ok(
                        "Purged", {"type": "object", "properties": {"queue": _STR, "purged": _INT}}
                    ),
                    **_errors(400, 404),
                },
                params=[_Q, _CONFIRM],
            )
        },
        "/api/queues/{q}/redrive": {
            "post": _op(
                "redrive",
                "Move a dead-letter queue's messages back to their queue",
                "admin",
                {
                    **_ok(
                        "Moved",
                        {
                            "type": "object",
                            "properties": {"queue": _STR, "to": _STR, "moved": _INT},
                        },
                    ),
                    **_errors(400, 404, 408, 413),
                },
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "count": {"type": "integer", "minimum": 1},
                        "to": {
                            "type": "string",
                            "description": "The target queue (not the dead-letter queue itself).",
                        },
                    },
                },
                params=[_Q],
            )
        },
        "/api/queues/{q}/rates": {
            "get": _op(
                "queueRates",
                "Sent and received per minute over the last 15 minutes",
                "read",
                {
                    **_ok(
                        "The rate points, oldest first",
                        {
                            "type": "object",
                            "properties": {
                                "queue": _STR,
                                "interval": _NUM,
                                "history": _NUM,
                                "points": {"type": "array", "items": _ref("RatePoint")},
                            },
                        },
                    ),
                    **_errors(400, 404),
                },
                params=[_Q],
            )
        },
        "/api/nodes": {
            "get": _op(
                "listNodes",
                "The live gateway nodes",
                "read",
                {
                    **_ok(
                        "The nodes",
                        {
                            "type": "object",
                            "properties": {"nodes": {"type": "array", "items": _ref("Node")}},
                        },
                    ),
                    **_errors(),
                },
            )
        },
        "/api/users/{id}/revoke": {
            "post": _op(
                "revokeUser",
                "End a user's sessions on every node (close 4403) and revoke its access token",
                "admin",
                {
                    **_ok(
                        "Revoked",
                        {
                            "type": "object",
                            "properties": {
                                "userId": _STR,
                                "revoked": {"type": "boolean"},
                                "nodes": _INT,
                            },
                        },
                    ),
                    **_errors(400, 404),
                },
                params=[
                    {
                        "name": "id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:@-]{1,128}$"},
                    }
                ],
            )
        },
    }


_PATHS: JsonObject = _paths()
_DOCUMENT: JsonObject = {
    "openapi": "3.1.0",
    "info": {
        "title": "wsmq HTTP API",
        "version": __version__,
        "description": "Queues, messages and nodes of a wsmq deployment. See docs/api.md.",
    },
    "security": [{"apiKey": []}],
    "paths": _PATHS,
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {
            "apiKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "`wsmq apikey add NAME --scopes ...`",
            }
        },
    },
}


def openapi_document(prefix: str = "") -> JsonObject:
    """The document, with ``prefix`` (the ``routes_prefix`` setting) before every path."""
    doc = copy.deepcopy(_DOCUMENT)
    if prefix:
        # From a copy of its own: the caller may change the document.
        paths = copy.deepcopy(_PATHS)
        doc["paths"] = {prefix + path: item for path, item in paths.items()}
    return doc
