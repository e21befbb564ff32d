"""``X-Request-ID`` on every response: a valid incoming id is echoed, otherwise one is generated.

Valid means 1–128 visible ASCII characters; anything else is replaced, never echoed. While the
request is handled the id is bound to the context (structlog contextvars), so every log line it
causes carries ``request_id``, including those of a saga task the request starts.
"""

from __future__ import annotations

import re
import uuid

import structlog
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode("latin-1")
_VALID = re.compile(r"[\x21-\x7e]{1,128}")


def valid_request_id(value: str | None) -> str | None:
    """``value`` if it can be echoed as a request id, else None."""
    return value if value is not None and _VALID.fullmatch(value) else None


def current_request_id() -> str | None:
    """The id of the request being handled in this context, if any."""
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


class RequestIdMiddleware:
    """Give every HTTP response an ``X-Request-ID`` and bind it for the request's logs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope["headers"] if k.lower() == _HEADER_KEY), None)
        request_id = valid_request_id(incoming.decode("latin-1") if incoming else None)
        request_id = request_id or uuid.uuid4().hex

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)


def install_request_id(app: Starlette) -> None:
    """Wrap ``app``'s whole middleware stack (call after any other wrapping, e.g. tracing).

    Outside Starlette's ``ServerErrorMiddleware``, unlike ``add_middleware``, so an unexpected
    error's 500 carries the header too, and so do answers of middleware added later.
    """
    build = app.build_middleware_stack

    def build_with_request_id() -> ASGIApp:
        return RequestIdMiddleware(build())

    app.build_middleware_stack = build_with_request_id  # type: ignore[method-assign]
