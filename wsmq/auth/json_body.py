"""Bounded JSON request bodies: an object, nested at most :data:`MAX_DEPTH` deep.

``json.loads`` recurses once per nesting level: ``[`` x 5000 ends in a ``RecursionError``
(a 500 and a traceback per request). The depth is measured first, in C-speed passes over the
bytes (:func:`json_depth_exceeds`).
"""

from __future__ import annotations

import json
import re

from wsmq.auth.errors import AuthError

MAX_DEPTH = 8
# A JSON string (no unescaped quote inside), written as an unrolled loop: long strings match
# in one step per run of plain characters.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_ONE_KIND = bytes.maketrans(b"{}", b"[]")


def json_depth_exceeds(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether arrays/objects in ``raw`` nest deeper than ``limit`` (brackets inside strings
    do not count). Meant for text that is then parsed: invalid JSON may give any answer.

    Every step runs in C (a regex substitution, ``translate``, ``replace``): a megabyte of
    brackets costs milliseconds of the event loop, not the quarter second a scan in Python
    took. Strings go first; of the rest only the brackets stay, all of one kind; each pass of
    ``replace(b"[]", b"")`` then removes the innermost level (non-overlapping, left to right:
    a pair emptied by a pass is removed by the next). Whatever is left after ``limit``
    passes nests deeper."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", raw).translate(_ONE_KIND, _NOT_BRACKET)
    for _ in range(limit):
        emptied = brackets.replace(b"[]", b"")
        if len(emptied) == len(brackets):
            break  # nothing left to remove: an unbalanced rest (invalid JSON)
        brackets = emptied
    return b"[" in brackets


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
