"""Operational HTTP endpoints: ``/healthz``, ``/readyz`` and ``/metrics``.

``/healthz`` answers 200 while the process serves requests (a liveness probe: restart me if
this fails). ``/readyz`` answers 503 while Redis or the user store is unreachable or the node is
shutting down (a readiness probe: send me no new clients), so a load balancer moves clients to
healthy nodes while the sockets already here stay open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

__all__ = ["CHECK_TIMEOUT", "HealthChecks", "add_health_routes"]

#: Seconds a readiness check may take before it counts as failed.
CHECK_TIMEOUT: Final = 1.0

Check = Callable[[], Awaitable[object]]


class HealthChecks:
    """Named readiness checks plus a ``shutting_down`` switch.

    A check is an async callable that raises (or returns ``False``) when its dependency is
    unavailable. Checks run concurrently, each bounded by :data:`CHECK_TIMEOUT`.
    """

    def __init__(self) -> None:
        self.checks: dict[str, Check] = {}
        self.shutting_down = False

    def add(self, name: str, check: Check) -> None:
        """Register a readiness check."""
        self.checks[name] = check

    async def run(self) -> tuple[bool, dict[str, str]]:
        """Run every check; ``(ready, {name: "ok" | reason})``."""
        names = list(self.checks)
        results = await asyncio.gather(*(self._one(self.checks[n]) for n in names))
        report = dict(zip(names, results, strict=True))
        if self.shutting_down:
            report["shutdown"] = "shutting down"
        ready = all(v == "ok" for v in report.values())
        return ready, report

    @staticmethod
    async def _one(check: Check) -> str:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                result = await check()
        except TimeoutError:
            return "timeout"
        except Exception as exc:  # any failure means "not ready"; the reason is reported
            return f"error: {type(exc).__name__}"
        return "ok" if result is not False else "unavailable"


def add_health_routes(
    app: web.Application,
    checks: HealthChecks,
    metrics_text: Callable[[], tuple[bytes, str]] | None = None,
    *,
    prefix: str = "",
) -> None:
    """Mount ``/healthz``, ``/readyz`` and (when ``metrics_text`` is given) ``/metrics``.

    ``metrics_text()`` returns ``(body, content_type)`` in the Prometheus text format.
    """

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        ready, report = await checks.run()
        return web.json_response(
            {"status": "ready" if ready else "unavailable", "checks": report},
            status=200 if ready else 503,
        )

    app.router.add_get(prefix + "/healthz", healthz)
    app.router.add_get(prefix + "/readyz", readyz)
    if metrics_text is not None:

        async def metrics(request: web.Request) -> web.Response:
            body, content_type = metrics_text()
            # Prometheus' content type carries parameters aiohttp's `content_type=` refuses.
            return web.Response(body=body, headers={"Content-Type": content_type})

        app.router.add_get(prefix + "/metrics", metrics)
