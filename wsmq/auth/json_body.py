"""Bounded JSON request bodies: an object, nested at most :data:`MAX_DEPTH` deep.

``json.loads`` recurses once per nesting level: ``[`` x 5000 ends in a ``RecursionError``
(a 500 and a traceback per request). The depth is measured first, by a linear scan over the
bracket, quote and backslash bytes only.
"""

from __future__ import annotations

import json
import re

from wsmq.auth.errors import AuthError

MAX_DEPTH = 8
_SPECIAL = re.compile(rb'[\\"\[\]{}]')


def json_depth_exceeds(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether arrays/objects in ``raw`` nest deeper than ``limit`` (brackets inside strings
    do not count). Meant for text that is then parsed: invalid JSON may give any answer."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    in_string = False
    escaped_at = -1  # the offset of the byte a backslash inside a string escapes
    for match in _SPECIAL.finditer(raw):
        at, byte = match.start(), match.group()
        if in_string:
            if at == escaped_at:
                continue
            if byte == b"\\":
                escaped_at = at + 1
            elif byte == b'"':
                in_string = False
        elif byte == b'"':
            in_string = True
        elif byte in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif byte in (b"]", b"}"):
            depth -= 1
    return False


def parse_json_object(raw: bytes) -> dict[str, object]:
    """``raw`` as a JSON object (empty body: ``{}``); anything else is ``bad_request`` (400)."""
    if not raw.strip():
        return {}
    if json_depth_exceeds(raw):
        raise AuthError("bad_request", f"the JSON body nests deeper than {MAX_DEPTH} levels")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise AuthError("bad_request", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise AuthError("bad_request", "the body must be a JSON object")
    return body
