"""servicekit.bodyguard: 413 for oversized bodies, 415 for non-JSON bodies, before any handler."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.types import Message, Receive, Scope, Send

from servicekit.app import create_service_app
from servicekit.bodyguard import DEFAULT_MAX_BODY_BYTES, BodyGuardMiddleware

pytestmark = pytest.mark.anyio

LIMIT = 100


class Handler:
    """Counts calls and remembers the body the route received."""

    def __init__(self) -> None:
        self.calls = 0
        self.body = b""


def _app(handler: Handler) -> FastAPI:
    app = create_service_app(max_body_bytes=LIMIT)

    @app.api_route("/echo", methods=["POST", "PUT", "PATCH", "GET", "DELETE"])
    async def echo(request: Request) -> dict[str, int]:
        handler.calls += 1
        handler.body = await request.body()
        return {"received": len(handler.body)}

    return app


@pytest.fixture
def handler() -> Handler:
    """What the route behind the guard saw."""
    return Handler()


@pytest.fixture
async def client(handler: Handler, anyio_backend: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a kit app whose body limit is 100 bytes."""
    del anyio_backend  # requested so the fixture runs on the test's event loop
    transport = httpx.ASGITransport(app=_app(handler))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def _json_of_size(size: int) -> bytes:
    raw = b'{"pad": "' + b"x" * (size - 11) + b'"}'
    assert len(raw) == size
    return raw


async def _chunks(raw: bytes, size: int = 16) -> AsyncIterator[bytes]:
    for start in range(0, len(raw), size):
        yield raw[start : start + size]


def _assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= body.keys()


def test_default_limit_is_64_kib() -> None:
    """Services refuse bodies over 64 KiB unless told otherwise."""
    assert DEFAULT_MAX_BODY_BYTES == 64 * 1024


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
async def test_declared_oversized_body_is_413(
    client: httpx.AsyncClient, handler: Handler, method: str
) -> None:
    """A Content-Length over the limit is refused with 413 and the route never runs."""
    response = await client.request(
        method,
        "/echo",
        content=_json_of_size(LIMIT + 1),
        headers={"Content-Type": "application/json"},
    )

    _assert_problem(response, 413)
    assert response.json()["title"] == "Content Too Large"
    assert handler.calls == 0


async def test_chunked_oversized_body_is_413(client: httpx.AsyncClient, handler: Handler) -> None:
    """A streamed body without Content-Length is counted as it arrives and refused past the limit."""
    request = client.build_request(
        "POST",
        "/echo",
        content=_chunks(_json_of_size(LIMIT * 3)),
        headers={"Content-Type": "application/json"},
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"

    response = await client.send(request)

    _assert_problem(response, 413)
    assert handler.calls == 0


async def test_chunked_body_within_limit_reaches_the_route_whole(
    client: httpx.AsyncClient, handler: Handler
) -> None:
    """A streamed body within the limit reaches the route complete."""
    raw = _json_of_size(LIMIT)

    response = await client.post(
        "/echo", content=_chunks(raw), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"received": LIMIT}
    assert handler.body == raw


async def test_body_at_the_limit_passes(client: httpx.AsyncClient, handler: Handler) -> None:
    """A body of exactly the limit is accepted."""
    response = await client.post(
        "/echo", content=_json_of_size(LIMIT), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 200, response.text
    assert handler.calls == 1


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "text/json", None],
)
async def test_non_json_body_is_415(
    client: httpx.AsyncClient, handler: Handler, content_type: str | None
) -> None:
    """A body sent with a non-JSON media type (or none) is refused with 415 before the route."""
    headers = {"Content-Type": content_type} if content_type else {}

    response = await client.post("/echo", content=b'{"a": 1}', headers=headers)

    _assert_problem(response, 415)
    assert handler.calls == 0


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/merge-patch+json",
        "application/problem+json",
        "application/vnd.api+json; charset=utf-8",
    ],
)
async def test_json_media_types_pass(
    client: httpx.AsyncClient, handler: Handler, content_type: str
) -> None:
    """application/json, with parameters or in any case, and every +json type are accepted."""
    response = await client.post(
        "/echo", content=b'{"a": 1}', headers={"Content-Type": content_type}
    )

    assert response.status_code == 200, response.text
    assert handler.body == b'{"a": 1}'


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
async def test_empty_body_passes_through(
    client: httpx.AsyncClient, handler: Handler, method: str
) -> None:
    """A request with no body needs no Content-Type and reaches the route."""
    response = await client.request(method, "/echo")

    assert response.status_code == 200, response.text
    assert response.json() == {"received": 0}
    assert handler.calls == 1


async def test_methods_without_body_are_not_guarded(
    client: httpx.AsyncClient, handler: Handler
) -> None:
    """GET and DELETE go straight to the route, whatever their headers say."""
    for method in ("GET", "DELETE"):
        response = await client.request(
            method, "/echo", headers={"Content-Type": "text/plain", "Content-Length": "0"}
        )
        assert response.status_code == 200, response.text
    assert handler.calls == 2


async def test_disconnect_while_reading_ends_quietly() -> None:
    """A client that disconnects mid-body gets no answer and the app is never called."""
    called = False

    async def app(_scope: Scope, _receive: Receive, _send: Send) -> None:
        nonlocal called
        called = True

    messages: list[Message] = [
        {"type": "http.request", "body": b'{"a":', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-type", b"application/json")],
    }
    await BodyGuardMiddleware(app, max_body_bytes=LIMIT)(scope, receive, send)

    assert not called
    assert sent == []


async def test_refusal_body_is_valid_problem_json() -> None:
    """The guard's own 413 is complete JSON with a matching Content-Length."""
    sent: list[Message] = []

    async def app(_scope: Scope, _receive: Receive, _send: Send) -> None:
        raise AssertionError("the app must not run")

    async def receive() -> Message:
        raise AssertionError("a declared oversized body must not be read")

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "method": "PUT",
        "path": "/",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"101")],
    }
    await BodyGuardMiddleware(app, max_body_bytes=LIMIT)(scope, receive, send)

    start, body = sent
    assert start["status"] == 413
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/problem+json"
    assert int(headers[b"content-length"]) == len(body["body"])
    assert json.loads(body["body"])["status"] == 413
