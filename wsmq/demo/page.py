"""The demo's page server: the static browser page, its ``config.json`` and an ``/auth`` relay.

The relay forwards ``POST /auth/login|token|logout`` to the first node that answers, so the page
logs in and refreshes tokens from its own origin (no CORS) even while one node is down. It
forwards only the body and the two token headers, and never logs either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Final

from aiohttp import ClientError, ClientSession, ClientTimeout, web

__all__ = ["STATIC_DIR", "add_page_routes", "page_app"]

#: The browser page's files (``index.html``, ``app.js`` and ``view.js``, ``style.css``) and
#: ``wsmq-client.js``, a byte-identical copy of ``clients/js/wsmq-client.js``
#: (``scripts/sync-js-client``) that ``app.js`` imports as an ES module.
STATIC_DIR: Final = Path(str(resources.files("wsmq.demo") / "static"))
_FILES: Final = {
    "/": ("index.html", "text/html"),
    "/index.html": ("index.html", "text/html"),
    "/app.js": ("app.js", "text/javascript"),
    "/view.js": ("view.js", "text/javascript"),
    "/wsmq-client.js": ("wsmq-client.js", "text/javascript"),
    "/style.css": ("style.css", "text/css"),
}
_FORWARDED: Final = ("content-type", "x-token", "x-access-token")
_MAX_BODY: Final = 16 * 1024
_SESSION: Final = web.AppKey("wsmq_demo_http", ClientSession)


def _csp(node_urls: Sequence[str]) -> str:
    # Only this origin and the nodes: the page loads nothing from the internet.
    connect = " ".join(["'self'", *node_urls])
    return (
        f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def add_page_routes(
    app: web.Application,
    *,
    prefix: str = "/",
    node_urls: Sequence[str] = (),
    node_http_urls: Sequence[str] = (),
    users: Sequence[tuple[str, str]] = (),
    shared_queue: str | None = None,
) -> None:
    """Serve the page under ``prefix`` on ``app`` (call before the app starts).

    ``node_urls`` (ws://) are the nodes the page connects to; empty means the page's own origin
    (a node serving its own page). With ``node_http_urls`` (http://) the app also relays
    ``POST /auth/*`` to the first of them that answers; leave it empty on a node, which has
    its own ``/auth`` routes. ``users`` are ``(name, id)`` hints shown on the page (never
    passwords).
    """
    if not prefix.startswith("/") or not prefix.endswith("/"):
        raise ValueError("prefix must start and end with /")
    headers = {
        "Content-Security-Policy": _csp(node_urls),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }
    config: dict[str, object] = {
        "nodes": list(node_urls),
        "users": [{"userName": name, "id": uid} for name, uid in users],
        "sharedQueue": shared_queue,
    }
    files = {prefix + path.lstrip("/"): spec for path, spec in _FILES.items()}

    async def static_file(request: web.Request) -> web.StreamResponse:
        name, content_type = files[request.path]
        body = (STATIC_DIR / name).read_bytes()
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)

    async def config_json(request: web.Request) -> web.StreamResponse:
        return web.json_response(config, headers={"Cache-Control": "no-store"})

    for path in files:
        app.router.add_get(path, static_file)
    app.router.add_get(prefix + "config.json", config_json)
    if node_http_urls:
        _add_relay(app, node_http_urls)


def _add_relay(app: web.Application, node_http_urls: Sequence[str]) -> None:
    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        fwd = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED}
        http = request.app[_SESSION]
        for base in node_http_urls:
            try:
                async with http.post(base + request.path, data=body, headers=fwd) as resp:
                    data = await resp.read()
                    out_headers = {
                        k: v
                        for k, v in resp.headers.items()
                        if k.lower() in ("retry-after", "www-authenticate", "cache-control")
                    }
                    return web.Response(
                        body=data,
                        status=resp.status,
                        content_type=resp.content_type,
                        headers=out_headers,
                    )
            except (ClientError, OSError, TimeoutError):
                continue  # that node is down: the next one answers
        return web.json_response(
            {"error": "unavailable", "message": "no wsmq node answered"}, status=503
        )

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        app[_SESSION] = ClientSession(timeout=ClientTimeout(total=10))
        yield
        await app[_SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    for verb in ("login", "token", "logout"):
        app.router.add_post(f"/auth/{verb}", relay)


def page_app(
    node_urls: Sequence[str],
    node_http_urls: Sequence[str],
    users: Sequence[tuple[str, str]] = (),
    *,
    shared_queue: str = "chat",
) -> web.Application:
    """The demo's page server: the page at ``/`` for nodes at ``node_urls``, and the relay."""
    app = web.Application(client_max_size=_MAX_BODY)
    add_page_routes(
        app,
        node_urls=node_urls,
        node_http_urls=node_http_urls,
        users=users,
        shared_queue=shared_queue,
    )
    app.router.add_get("/favicon.ico", _no_content)
    return app


async def _no_content(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204)
