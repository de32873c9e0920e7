"""JSON values as types: what ``json.loads`` returns and ``json.dumps`` takes.

The one definition the package uses for JSON documents (the OpenAPI document, JWKs, frames),
so a JSON dict is typed as JSON, not as a dict of anything.  Server frames use a flat subset
(:data:`wsmq.protocol.server_frames.FrameObject`).
"""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["JsonObject", "JsonScalar", "JsonValue"]

#: A JSON leaf (``bool`` is an ``int`` to the type checker, so it is included).
JsonScalar: TypeAlias = str | int | float | None
#: A JSON value, nested to any depth.
JsonValue: TypeAlias = "JsonScalar | list[JsonValue] | dict[str, JsonValue]"
#: A JSON object (a document, a schema, a JWK).
JsonObject: TypeAlias = dict[str, JsonValue]
