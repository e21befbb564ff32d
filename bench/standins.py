"""Minimal in-memory stand-ins for warehouse, rewards and email, as one raw ASGI app.

``uvicorn bench.standins:create_app --factory``. They answer what the orchestrator reads and
nothing more, so the orchestrator's own cost is what a benchmark measures:

- ``POST /reservations`` → 201 ``{"id", "status": "reserved", ...}``
- ``POST /accounts/{id}/transactions`` → 201 ``{"id", "points", "kind": "credit", ...}``
- ``POST /emails`` → 201 ``{"id", "status": "logged", ...}``
- ``POST /checkouts/{id}/void`` → 200 (compensation: warehouse's released reservation, rewards'
  reversals)
- ``GET /readyz``, ``GET /healthz`` → 200; any other ``GET`` → 200 ``{"items": []}``
- ``GET /_bench/posts`` → 200 ``{"posts": N}``: the ``POST``s answered so far, so the bench can
  tell how many calls each checkout of a target made (replays included)

``STANDIN_DELAY_MS`` adds that latency to every ``POST`` (a service slower than free: what
running steps at once saves is measured against it, ``bench.plans``).

Bodies are accepted as they are (malformed JSON too). A repeated ``Idempotency-Key`` replays the
first answer, like the real services, from a bounded in-memory table.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import uuid
from collections import OrderedDict
from typing import Any

Scope = dict[str, Any]

_JSON = [(b"content-type", b"application/json")]
_READY = b'{"status":"ok"}'
_EMPTY_LIST = b'{"items":[]}'
_NOT_FOUND = b'{"type":"about:blank","title":"Not Found","status":404}'
# Replays kept per process; the oldest are forgotten past this (a bench never repeats that far back).
MAX_REMEMBERED_KEYS = 200_000
POSTS_PATH = "/_bench/posts"


class StandIns:
    """The three services' write endpoints in one process, answering from memory."""

    def __init__(self, name: str = "standins", delay_s: float = 0.0) -> None:
        self.name = name
        self.delay_s = delay_s
        self.counter = itertools.count(1)
        self.replays: OrderedDict[bytes, tuple[int, bytes]] = OrderedDict()
        self.requests = 0
        self.posts = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if kind != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.requests += 1
        if scope["method"] == "POST":
            self.posts += 1
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        status, payload = self.answer(scope, body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*_JSON, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    def answer(self, scope: Scope, body: bytes) -> tuple[int, bytes]:
        """The status and JSON body for one request."""
        method, path = scope["method"], scope["path"]
        if method == "GET":
            if path in ("/readyz", "/healthz"):
                return 200, _READY
            if path == POSTS_PATH:
                return 200, json.dumps({"posts": self.posts}).encode()
            return 200, _EMPTY_LIST
        if method != "POST":
            return 404, _NOT_FOUND
        key = next((v for k, v in scope["headers"] if k == b"idempotency-key"), None)
        if key is not None and key in self.replays:
            return self.replays[key]
        result = self._post(path, body)
        if key is not None and result[0] < 300:
            self.replays[key] = result
            if len(self.replays) > MAX_REMEMBERED_KEYS:
                self.replays.popitem(last=False)
        return result

    def _post(self, path: str, body: bytes) -> tuple[int, bytes]:
        request = _loads(body)
        new_id = str(uuid.UUID(int=next(self.counter), version=4))
        checkout_id = request.get("checkout_id")
        if path == "/reservations":
            answer = {"id": new_id, "checkout_id": checkout_id, "status": "reserved"}
        elif path.startswith("/accounts/") and path.endswith("/transactions"):
            points = request.get("points")
            answer = {
                "id": new_id,
                "checkout_id": checkout_id,
                "kind": "credit",
                "points": points if isinstance(points, int) else 0,
            }
        elif path == "/emails":
            answer = {
                "id": new_id,
                "checkout_id": checkout_id,
                "template": request.get("template"),
                "status": "logged",
            }
        elif path.startswith("/checkouts/") and path.endswith("/void"):
            # Both services' void answers in one body: the warehouse's released reservation,
            # rewards' list of reversals (none: stand-ins keep no state).
            answer = {"id": new_id, "checkout_id": path.split("/")[2], "status": "released"}
            return 200, json.dumps(answer | {"reversals": []}).encode()
        else:
            return 404, _NOT_FOUND
        return 201, json.dumps(answer).encode()


def _loads(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def create_app() -> StandIns:
    """The app for ``uvicorn --factory`` (``STANDIN_NAME`` names it in logs)."""
    delay_ms = float(os.environ.get("STANDIN_DELAY_MS", "0"))
    return StandIns(os.environ.get("STANDIN_NAME", "standins"), delay_ms / 1000)
