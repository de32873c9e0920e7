"""The HTTP API's errors: every failure is JSON ``{"error": <code>, "message": ...}``.

Queue errors keep RSMQ's names (``queueNotFound``, ``invalidValue``, ``messageTooLong``...);
the API's own codes are snake_case like the ``/auth/*`` endpoints' (``unauthorized``,
``forbidden``, ``rate_limited``, ``bad_request``, ``body_too_large``...).
"""

from __future__ import annotations

import math

from aiohttp import web

from wsmq.errors import WsmqError
from wsmq.queue import DeadLetterQueueNotFound, QueueError, QueueExists, QueueNotFound

__all__ = ["ApiError", "error_response", "queue_error"]


class ApiError(WsmqError, code="api_error"):
    """A refused API request: its code, HTTP status and message."""

    def __init__(
        self, code: str, message: str, status: int = 400, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.retry_after = retry_after


def queue_error(exc: QueueError, qname: str | None = None) -> ApiError:
    """A queue error as an API error: 404 ``queueNotFound``, 409 ``queueExists``, else 400.

    ``qname`` is the queue of the URL; a missing dead-letter queue is a bad setting of that
    queue (400), and its message must not name the URL's queue as the missing one.
    """
    if isinstance(exc, DeadLetterQueueNotFound):
        return ApiError(exc.name, exc.describe(None), 400)
    status = 404 if isinstance(exc, QueueNotFound) else 409 if isinstance(exc, QueueExists) else 400
    return ApiError(exc.name, exc.describe(qname), status)


def error_response(exc: ApiError) -> web.Response:
    """The JSON response for ``exc`` (``WWW-Authenticate`` on 401, ``Retry-After`` on 429)."""
    headers = {"Cache-Control": "no-store"}  # as the successful answers: nothing to cache
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="wsmq-api"'
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    body = {"error": exc.code, "message": exc.message}
    return web.json_response(body, status=exc.status, headers=headers)
