"""A tiny delaying reverse proxy, run like a service: ``uvicorn tests.e2e.proxy:create_app --factory``.

Environment: ``PROXY_UPSTREAM`` (base URL), ``PROXY_DELAY_S`` and ``PROXY_DELAY`` (comma-separated
``METHOD /path-glob`` rules, e.g. ``POST /emails``): matching requests wait that long before being
forwarded; ``PROXY_DELAY_TIMES`` (default: all) limits the delay to the first n of them. The body
is read before the wait, so a held request still reaches the upstream after its client has given
up, as a request queued in a slow service would. Everything else passes straight through, so
``/readyz`` answers for the upstream.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def create_app() -> Starlette:
    """The proxy, configured from the environment."""
    upstream = os.environ["PROXY_UPSTREAM"].rstrip("/")
    delay_s = float(os.environ.get("PROXY_DELAY_S", "0"))
    rules = [
        tuple(rule.strip().split(" ", 1))
        for rule in os.environ.get("PROXY_DELAY", "").split(",")
        if rule.strip()
    ]
    times = int(os.environ.get("PROXY_DELAY_TIMES", "-1"))
    delayed = [0]
    clients: list[httpx.AsyncClient] = []

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(base_url=upstream, timeout=60) as client:
            clients.append(client)
            yield

    async def forward(request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        matches = any(
            request.method == method and fnmatch.fnmatchcase(path, glob) for method, glob in rules
        )
        if matches and (times < 0 or delayed[0] < times):
            delayed[0] += 1
            await anyio.sleep(delay_s)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            answer = await clients[0].request(
                request.method,
                request.url.path,
                params=request.url.query,
                content=body,
                headers=headers,
            )
        except httpx.TransportError as exc:
            return Response(f"upstream: {type(exc).__name__}", status_code=502)
        out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
        return Response(answer.content, status_code=answer.status_code, headers=out)

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)
