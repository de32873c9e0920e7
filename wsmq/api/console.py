"""The operator console: a static single-page app at ``{routes_prefix}/console/`` (see
``docs/console.md``), served by every node with the API.

The files ship in the package (``console_static/``): no CDN, no build step. The page talks only
to this node's ``/api/`` with the API key the operator types, so every response carries a strict
Content-Security-Policy (no inline scripts, nothing from another origin).
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Final

from aiohttp import web

__all__ = ["CONSOLE_CSP", "STATIC_DIR", "add_console_routes"]

#: The console's files.
STATIC_DIR: Final = Path(str(resources.files("wsmq.api") / "console_static"))
_TYPES: Final = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
CONSOLE_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_HEADERS: Final = {
    "Content-Security-Policy": CONSOLE_CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Revalidate each load (ETag: a 304 when unchanged): an upgraded node serves its new
    # console at once.
    "Cache-Control": "no-cache",
}


def _load() -> dict[str, tuple[bytes, str, str]]:
    """name -> (body, content type, ETag), read once when the node starts."""
    files: dict[str, tuple[bytes, str, str]] = {}
    for path in sorted(STATIC_DIR.iterdir()):
        content_type = _TYPES.get(path.suffix)
        if content_type is not None and path.is_file():
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            files[path.name] = (body, content_type, etag)
    if "index.html" not in files:
        raise RuntimeError(f"the console's files are missing from {STATIC_DIR}")
    return files


def add_console_routes(app: web.Application, *, prefix: str = "") -> None:
    """Serve the console at ``{prefix}/console/`` (``{prefix}/console`` redirects there, so
    the page's relative URLs, and its ``../api/``, resolve under any prefix)."""
    files = _load()
    base = f"{prefix}/console/"

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(base)

    async def static_file(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name") or "index.html"
        found = files.get(name)
        if found is None:
            raise web.HTTPNotFound(headers=_HEADERS)
        body, content_type, etag = found
        headers = {**_HEADERS, "ETag": etag}
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)  # revalidated: nothing to send
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)

    app.router.add_get(f"{prefix}/console", redirect)
    app.router.add_get(base, static_file)
    app.router.add_get(base + "{name}", static_file)
