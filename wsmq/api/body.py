"""Request bodies of the API: bounded in bytes (413), time (408) and nesting, a JSON object
(400)."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from wsmq.auth.json_body import json_depth_exceeds

from .errors import ApiError

__all__ = ["read_json_object", "refuse_unknown_fields"]

MAX_DEPTH = 8


async def read_json_object(
    request: web.Request, max_bytes: int, seconds: float
) -> dict[str, object]:
    """The body as a JSON object (empty: ``{}``), read no further than ``max_bytes`` and for
    no longer than ``seconds`` in all (one deadline, not per chunk: a client sending a
    byte a second must not hold the connection)."""
    too_large = ApiError("body_too_large", f"the request body exceeds {max_bytes} bytes", 413)
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    raw = bytearray()
    try:
        async with asyncio.timeout(seconds):
            while True:
                chunk = await request.content.read(max_bytes + 1 - len(raw))
                if not chunk:
                    break
                raw += chunk
                if len(raw) > max_bytes:
                    raise too_large
    except TimeoutError:
        raise ApiError(
            "body_timeout", f"the request body did not arrive within {seconds:g} s", 408
        ) from None
    if not raw.strip():
        return {}
    if json_depth_exceeds(bytes(raw), MAX_DEPTH):
        raise ApiError("bad_json", f"the JSON body nests deeper than {MAX_DEPTH} levels")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError("bad_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError("bad_json", "the body must be a JSON object")
    return body


def refuse_unknown_fields(body: dict[str, object], allowed: tuple[str, ...], where: str) -> None:
    """400 ``bad_request`` for a field the endpoint does not know (a misspelt ``delay`` would
    otherwise be ignored); names at most five, each cut to 40 characters."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        named = ", ".join(repr(f[:40]) for f in unknown[:5])
        raise ApiError(
            "bad_request", f"unknown field(s) in {where}: {named}; use {', '.join(allowed)}"
        )
