"""ASGI middleware that refuses oversized bodies (413), non-JSON bodies (415) and bodies that are not
text (422) before any handler runs.

It buffers the body (it is small by definition) so a refusal is a clean answer, never a reset
connection, and so no handler ever sees half a body.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.problems import PROBLEM_MEDIA_TYPE, status_title

DEFAULT_MAX_BODY_BYTES = 64 * 1024
_METHODS_WITH_BODY = {"POST", "PUT", "PATCH"}


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _is_text(body: bytes) -> bool:
    """Whether ``body`` decodes as JSON text (UTF-8, or UTF-16/32 as ``json.loads`` detects)."""
    try:
        body.decode(json.detect_encoding(body))
    except UnicodeDecodeError:
        return False
    return True


class BodyGuardMiddleware:
    """Answer 413 for bodies over ``max_body_bytes``, 415 for non-JSON and 422 for undecodable
    bodies on POST/PUT/PATCH."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _METHODS_WITH_BODY:
            await self.app(scope, receive, send)
            return
        # ASGI header names are lowercase; only these two matter here.
        declared = content_type = b""
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"content-type":
                content_type = value
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(send, 413, f"The body is larger than {self.max_body_bytes} bytes.")
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self.max_body_bytes:
                await self._refuse(
                    send, 413, f"The body is larger than {self.max_body_bytes} bytes."
                )
                return
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if body and not _is_json(content_type.decode("latin-1")):
            await self._refuse(
                send, 415, "The body must be JSON, sent with Content-Type: application/json."
            )
            return
        if body and not _is_text(body):
            # FastAPI would answer an undocumented 400; it is malformed JSON like any other: 422.
            await self._refuse(
                send,
                422,
                "The body is not valid JSON: its bytes are not Unicode text.",
                errors=[{"loc": ["body"], "msg": "JSON decode error", "type": "json_invalid"}],
            )
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Send, status: int, detail: str, **extensions: Any) -> None:
        payload: dict[str, Any] = {
            "type": "about:blank",
            "title": status_title(status),
            "status": status,
            "detail": detail,
            **extensions,
        }
        raw = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                    (b"content-length", str(len(raw)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": raw})
