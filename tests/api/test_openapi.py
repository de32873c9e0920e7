"""The OpenAPI document matches the mounted routes, and docs/api.md matches the document."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from wsmq.api import ROUTES, openapi_document
from wsmq.gateway import Gateway
from wsmq.protocol.json_types import JsonObject, JsonValue

from .conftest import Api

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _mounted(app: web.Application) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/api/") and route.method != "HEAD":
            out.add((route.method, path))
    return out


def _obj(value: JsonValue) -> JsonObject:
    """``value`` as an object: the document's nodes are typed as any JSON value."""
    assert isinstance(value, dict), value
    return value


def _at(value: JsonValue, *path: str) -> JsonObject:
    """The object at ``path`` below ``value``."""
    for key in path:
        value = _obj(value)[key]
    return _obj(value)


def _documented(doc: JsonObject) -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, item in _at(doc, "paths").items() for m in _obj(item)}


async def test_every_route_documented_and_every_documented_route_mounted(
    api: Api, node: Gateway
) -> None:
    status, served, _ = await api.call("GET", "/api/openapi.json", None)
    assert status == 200
    mounted = _mounted(node.app) - {("GET", "/api/openapi.json")}
    assert mounted == _documented(served)
    assert served == openapi_document()


def test_scopes_match_the_route_table() -> None:
    doc = openapi_document()
    for method, path, scope, _ in ROUTES:
        op = _at(doc, "paths", path, method.lower())
        assert op["x-wsmq-scope"] == scope, (method, path)
        assert "401" in _at(op, "responses") and "403" in _at(op, "responses")


def test_refs_resolve() -> None:
    doc = openapi_document()
    text = repr(doc)
    for name in re.findall(r"#/components/schemas/(\w+)", text):
        assert name in _at(doc, "components", "schemas"), name


def test_docs_api_md_lists_every_operation_with_its_scope() -> None:
    text = DOC.read_text()
    listed = set(re.findall(r"^### `(GET|POST|PUT|PATCH|DELETE) (/api/\S+)`", text, re.M))
    listed.discard(("GET", "/api/openapi.json"))
    documented = _documented(openapi_document()) - {("GET", "/api/openapi.json")}
    assert listed == documented
    for method, path, scope, _ in ROUTES:
        section = text.split(f"### `{method} {path}`", 1)[1].split("\n### ", 1)[0]
        assert f"Scope: `{scope or 'any'}`" in section, (method, path)


def test_path_parameters_declared() -> None:
    doc = openapi_document()
    for path, item in _at(doc, "paths").items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, op in _obj(item).items():
            params = _obj(op).get("parameters", [])
            assert isinstance(params, list)
            declared = {_obj(p)["name"] for p in params if _obj(p)["in"] == "path"}
            assert declared == names, (method, path)


async def test_schemas_name_exactly_the_fields_served(api: Api, node: Gateway) -> None:
    """The UI reads the documented fields: each object served has exactly those."""
    from wsmq.queue import Queues

    assert node.api is not None
    schemas = _at(openapi_document(), "components", "schemas")
    queues = Queues.from_url(node.settings.redis_url)
    try:
        await queues.create_queue("q1")
        await queues.send_messages("q1", ["a", "b"])
        await node.api.rates.sample()
        await queues.send_message("q1", "c")
        await node.api.rates.sample()
    finally:
        await queues.close()
    _, listed, _ = await api.call("GET", "/api/queues")
    (queue,) = listed["queues"]
    assert set(queue) == set(_at(schemas, "Queue", "properties"))
    _, peeked, _ = await api.call("GET", "/api/queues/q1/messages")
    assert set(peeked["messages"][0]) == set(_at(schemas, "PeekedMessage", "properties"))
    _, rates, _ = await api.call("GET", "/api/queues/q1/rates")
    assert set(rates["points"][0]) == set(_at(schemas, "RatePoint", "properties"))
    await node.api.announcer.announce()
    _, nodes, _ = await api.call("GET", "/api/nodes")
    assert set(nodes["nodes"][0]) == set(_at(schemas, "Node", "properties"))
