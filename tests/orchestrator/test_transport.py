"""The orchestrator's HTTP transport (aiohttp under httpx) classifies failures as the saga needs.

Real sockets on 127.0.0.1: a refused connection was never sent (not ambiguous); a server that
reads the request and hangs up may have applied it (ambiguous); a server that does not answer
within the timeout is a read timeout (ambiguous).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketStream

from orchestrator.clients import ServiceClients, StepTransientError, build_http_client
from orchestrator.settings import Settings

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def tcp_server(handle: Callable[[SocketStream], Awaitable[None]]) -> AsyncIterator[str]:
    """A TCP server on a free port of 127.0.0.1 running ``handle`` per connection; yields its URL."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, handle)
        yield f"http://127.0.0.1:{port}"
        group.cancel_scope.cancel()


async def read_request(stream: SocketStream) -> None:
    received = b""
    while b"\r\n\r\n" not in received:
        received += await stream.receive()


async def hang_up(stream: SocketStream) -> None:
    async with stream:
        await read_request(stream)


async def never_answer(stream: SocketStream) -> None:
    async with stream:
        await read_request(stream)
        await anyio.sleep(30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def reserve_at(url: str) -> StepTransientError:
    settings = Settings(warehouse_url=url, step_timeout_s=2)
    async with build_http_client(settings) as client:
        clients = ServiceClients(client, settings)
        with pytest.raises(StepTransientError) as raised:
            await clients.reserve(checkout_id="c-1", items=[{"sku": "S", "quantity": 1}], key="k")
    return raised.value


async def test_a_refused_connection_is_not_ambiguous() -> None:
    """Nothing listens: the request never left, so it cannot have been applied."""
    error = await reserve_at(f"http://127.0.0.1:{free_port()}")
    assert error.ambiguous is False


async def test_a_server_hanging_up_after_the_request_is_ambiguous() -> None:
    """The request was sent and the connection dropped: it may have been applied."""
    async with tcp_server(hang_up) as url:
        error = await reserve_at(url)
    assert error.ambiguous is True
    assert "RemoteProtocolError" in error.detail


async def test_no_answer_within_the_timeout_is_an_ambiguous_read_timeout() -> None:
    """The request was sent and no answer came within STEP_TIMEOUT_S: it may have been applied."""
    async with tcp_server(never_answer) as url:
        with anyio.fail_after(10):
            error = await reserve_at(url)
    assert error.ambiguous is True
    assert "ReadTimeout" in error.detail
