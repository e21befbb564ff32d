"""The orchestrator's HTTP (aiohttp in production, httpx with in-process transports) over real sockets.

Each case runs on both implementations, against a server on 127.0.0.1. No answer: a refused
connection, or a wait for a pooled connection past the timeout, was never sent (not ambiguous);
a server that reads the request and hangs up may have applied it (ambiguous), as may one that does
not answer within the timeout (a read timeout). An answer: a 5xx, or a 409 with Retry-After, is
transient and ambiguous; another 4xx is a refusal carrying the problem's detail; a 2xx without
JSON is transient. What goes out: the bearer token, the Idempotency-Key, the JSON body, and
``traceparent`` only when tracing is on.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
from anyio.abc import SocketStream
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator import service_http
from orchestrator.clients import (
    ServiceClients,
    StepError,
    StepRefusedError,
    StepTransientError,
)
from orchestrator.service_http import AiohttpServiceHTTP, HttpxServiceHTTP, ServiceHTTP
from orchestrator.settings import Settings

pytestmark = pytest.mark.anyio

Build = Callable[..., ServiceHTTP]
Handler = Callable[[SocketStream], Awaitable[None]]


@pytest.fixture(params=[AiohttpServiceHTTP, HttpxServiceHTTP], ids=["aiohttp", "httpx"])
def build(request: pytest.FixtureRequest) -> Build:
    """Each implementation, built as ``build(settings, tracer_provider=...)``."""
    implementation: Build = request.param
    return implementation


@asynccontextmanager
async def tcp_server(handle: Handler) -> AsyncIterator[str]:
    """A TCP server on a free port of 127.0.0.1 running ``handle`` per connection; yields its URL."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, handle)
        yield f"http://127.0.0.1:{port}"
        group.cancel_scope.cancel()


@dataclass
class Received:
    """One request as it arrived."""

    line: str
    headers: dict[str, str]
    body: bytes


async def read_request(stream: SocketStream) -> Received:
    received = b""
    while b"\r\n\r\n" not in received:
        received += await stream.receive()
    head, _, body = received.partition(b"\r\n\r\n")
    line, *fields = head.decode("latin-1").split("\r\n")
    headers = {}
    for field in fields:
        name, _, value = field.partition(":")
        headers[name.strip().lower()] = value.strip()
    while len(body) < int(headers.get("content-length", 0)):
        body += await stream.receive()
    return Received(line, headers, body)


def answering(
    status: int, body: bytes, *header_lines: str, seen: list[Received] | None = None
) -> Handler:
    """A handler answering every request with ``status``, ``body`` and ``header_lines``."""

    async def handle(stream: SocketStream) -> None:
        async with stream:
            received = await read_request(stream)
            if seen is not None:
                seen.append(received)
            head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *header_lines]
            await stream.send("\r\n".join([*head, "Connection: close", "", ""]).encode() + body)

    return handle


async def hang_up(stream: SocketStream) -> None:
    async with stream:
        await read_request(stream)


async def never_answer(stream: SocketStream) -> None:
    async with stream:
        await read_request(stream)
        await anyio.sleep(30)


async def trickle(stream: SocketStream) -> None:
    """Answers a byte at a time, each well within the read timeout: the connection stays busy."""
    async with stream:
        await read_request(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(1000):
            await anyio.sleep(0.5)
            await stream.send(b" ")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def clients_of(
    build: Build, url: str, tracer_provider: TracerProvider | None = None
) -> AsyncIterator[ServiceClients]:
    settings = Settings(
        warehouse_url=url, email_url=url, step_timeout_s=2, service_token="tok-1,tok-0"
    )
    async with aclosing(build(settings, tracer_provider=tracer_provider)) as http:
        yield ServiceClients(http, settings)


async def reserve(clients: ServiceClients) -> Any:
    return await clients.reserve(checkout_id="c-1", items=[{"sku": "S", "quantity": 1}], key="k")


async def reserve_failing_at(build: Build, url: str) -> StepError:
    async with clients_of(build, url) as clients:
        with pytest.raises(StepError) as raised:
            await reserve(clients)
    return raised.value


async def test_a_refused_connection_is_not_ambiguous(build: Build) -> None:
    """Nothing listens: the request never left, so it cannot have been applied."""
    error = await reserve_failing_at(build, f"http://127.0.0.1:{free_port()}")
    assert isinstance(error, StepTransientError)
    assert error.ambiguous is False
    assert error.detail.startswith("ConnectError calling ")


async def test_a_server_hanging_up_after_the_request_is_ambiguous(build: Build) -> None:
    """The request was sent and the connection dropped: it may have been applied."""
    async with tcp_server(hang_up) as url:
        error = await reserve_failing_at(build, url)
    assert isinstance(error, StepTransientError)
    assert error.ambiguous is True
    assert error.detail == f"RemoteProtocolError calling {url}/reservations"


async def test_no_answer_within_the_timeout_is_an_ambiguous_read_timeout(build: Build) -> None:
    """The request was sent and no answer came within STEP_TIMEOUT_S: it may have been applied."""
    async with tcp_server(never_answer) as url:
        with anyio.fail_after(10):
            error = await reserve_failing_at(build, url)
    assert isinstance(error, StepTransientError)
    assert error.ambiguous is True
    assert error.detail == f"ReadTimeout calling {url}/reservations"


async def test_waiting_too_long_for_a_pooled_connection_is_not_ambiguous(
    build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The only connection is busy past STEP_TIMEOUT_S: the second request never left."""
    monkeypatch.setattr(service_http, "MAX_CONNECTIONS", 1)
    async with tcp_server(trickle) as url, clients_of(build, url) as clients:
        async with anyio.create_task_group() as group:
            group.start_soon(reserve, clients)
            await anyio.sleep(0.5)
            with anyio.fail_after(10), pytest.raises(StepTransientError) as raised:
                await reserve(clients)
            group.cancel_scope.cancel()
    assert raised.value.ambiguous is False
    # aiohttp bounds the wait for a pooled connection with its connect timeout.
    assert raised.value.detail.startswith(("ConnectTimeout calling ", "PoolTimeout calling "))


def problem(status: int, detail: str) -> bytes:
    return json.dumps(
        {"type": f"https://errors.test/{status}", "title": "T", "status": status, "detail": detail}
    ).encode()


async def test_a_5xx_is_transient_and_ambiguous(build: Build) -> None:
    """The service failed while handling it: it may have been applied."""
    answer = answering(503, problem(503, "busy"), "Content-Type: application/problem+json")
    async with tcp_server(answer) as url:
        error = await reserve_failing_at(build, url)
    assert isinstance(error, StepTransientError)
    assert (error.ambiguous, error.http_status) == (True, 503)
    assert error.problem["detail"] == "busy"


async def test_a_409_with_retry_after_is_a_twin_in_flight(build: Build) -> None:
    """The same request is being handled right now: repeat it after Retry-After."""
    answer = answering(409, problem(409, "in flight"), "Retry-After: 3")
    async with tcp_server(answer) as url:
        error = await reserve_failing_at(build, url)
    assert isinstance(error, StepTransientError)
    assert (error.ambiguous, error.http_status, error.retry_after) == (True, 409, 3.0)


async def test_a_4xx_is_a_refusal_carrying_the_problem(build: Build) -> None:
    """A 422 with a problem+json body: refused for good, with the service's own detail."""
    body = problem(422, "SKU S: 1 requested, 0 available")
    answer = answering(422, body, "Content-Type: application/problem+json")
    async with tcp_server(answer) as url:
        error = await reserve_failing_at(build, url)
    assert isinstance(error, StepRefusedError)
    assert error.detail == "SKU S: 1 requested, 0 available"
    assert (error.http_status, error.problem["type"]) == (422, "https://errors.test/422")


async def test_a_2xx_without_json_is_transient(build: Build) -> None:
    """Something answered that is not the service: try again."""
    async with tcp_server(answering(200, b"<html>ok</html>", "Content-Type: text/html")) as url:
        error = await reserve_failing_at(build, url)
    assert isinstance(error, StepTransientError)
    assert error.detail == f"POST {url}/reservations answered 200 without JSON"
    assert error.http_status == 200


async def test_the_token_the_key_and_the_body_arrive_as_sent(build: Build) -> None:
    """The first SERVICE_TOKEN as bearer, the Idempotency-Key, the JSON body; params on a GET."""
    seen: list[Received] = []
    reservation = json.dumps({"id": "r-1", "status": "held"}).encode()
    async with tcp_server(answering(201, reservation, seen=seen)) as url:
        async with clients_of(build, url) as clients:
            status, answer = await reserve(clients)
    assert (status, answer.id) == (201, "r-1")
    [request] = seen
    assert request.line == "POST /reservations HTTP/1.1"
    assert request.headers["authorization"] == "Bearer tok-1"
    assert request.headers["idempotency-key"] == "k"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == {
        "checkout_id": "c-1",
        "items": [{"sku": "S", "quantity": 1}],
    }
    assert "traceparent" not in request.headers

    seen.clear()
    async with tcp_server(answering(200, b'{"items": []}', seen=seen)) as url:
        async with clients_of(build, url) as clients:
            assert await clients.find_email(checkout_id="c 1&2", template="t") is None
    [request] = seen
    method, target, _ = request.line.split(" ")
    assert (method, urlsplit(target).path) == ("GET", "/emails")
    assert parse_qs(urlsplit(target).query) == {"checkout_id": ["c 1&2"]}
    assert "idempotency-key" not in request.headers
    assert request.body == b""


async def test_with_tracing_on_each_call_sends_its_client_span_as_traceparent(
    build: Build,
) -> None:
    """The W3C header names the call's client span, so the service's span continues the trace."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    seen: list[Received] = []
    reservation = json.dumps({"id": "r-1", "status": "held"}).encode()
    async with tcp_server(answering(201, reservation, seen=seen)) as url:
        async with clients_of(build, url, tracer_provider=provider) as clients:
            await reserve(clients)
    provider.shutdown()
    [span] = exporter.get_finished_spans()
    sent = span.context
    assert seen[0].headers["traceparent"] == (
        f"00-{sent.trace_id:032x}-{sent.span_id:016x}-{int(sent.trace_flags):02x}"
    )
