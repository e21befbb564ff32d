"""Helpers shared by the tests: in-process apps, problem answers, polling, concurrent calls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_MEMBERS = frozenset({"type", "title", "status", "detail"})
FIELD_ERROR_MEMBERS = frozenset({"loc", "msg", "type"})
FINISHED = ("completed", "failed")


@asynccontextmanager
async def running(
    app: FastAPI, base_url: str = "http://testserver"
) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan and yield a client talking to it in-process.

    The client's transport wraps ``manager.app``, which carries the lifespan state.
    """
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            client.app = manager.app  # type: ignore[attr-defined]
            yield client


def assert_problem(response: httpx.Response, status: int, **members: Any) -> dict[str, Any]:
    """Check ``response`` is an RFC 9457 problem with ``status``; return its body.

    The content type is exactly ``application/problem+json``; ``type``, ``title`` and ``detail``
    are non-empty strings and ``status`` repeats the code; each entry of ``errors``, if any, is
    ``loc``, ``msg`` and ``type``. ``members`` (``type="urn:..."``) must be in the body as given.
    """
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE, response.headers
    body: dict[str, Any] = response.json()
    assert PROBLEM_MEMBERS <= body.keys(), body
    assert body["status"] == status, body
    for member in ("type", "title", "detail"):
        assert isinstance(body[member], str), body
        assert body[member], body
    for error in body.get("errors") or []:
        assert error.keys() == FIELD_ERROR_MEMBERS, error
    for name, value in members.items():
        assert body.get(name) == value, (name, body)
    return body


async def wait_finished(
    client: httpx.AsyncClient, location: str, status: str | None = None, *, timeout_s: float = 10
) -> dict[str, Any]:
    """Poll ``GET location`` until the checkout is completed or failed; return it.

    With ``status``, the checkout must have ended so: a checkout that ends otherwise fails the
    test as soon as it ends, not at the timeout.
    """
    with anyio.fail_after(timeout_s):
        while True:
            response = await client.get(location)
            assert response.status_code == 200, response.text
            checkout: dict[str, Any] = response.json()
            if checkout["status"] in FINISHED:
                break
            await anyio.sleep(0.02)
    if status is not None:
        assert checkout["status"] == status, checkout
    return checkout


def step(checkout: dict[str, Any], name: str) -> dict[str, Any]:
    """The step ``name`` of a checkout as the orchestrator's API shows it."""
    return next(s for s in checkout["steps"] if s["name"] == name)


async def gather(calls: Sequence[Callable[[], Awaitable[httpx.Response]]]) -> list[httpx.Response]:
    """Run every call at once and return the responses in call order."""
    responses: list[httpx.Response | None] = [None] * len(calls)

    async def run(index: int) -> None:
        responses[index] = await calls[index]()

    async with anyio.create_task_group() as group:
        for index in range(len(calls)):
            group.start_soon(run, index)
    assert all(response is not None for response in responses)
    return [response for response in responses if response is not None]
