"""A tiny delaying reverse proxy, run like a service: ``uvicorn tests.e2e.proxy:create_app --factory``.

Environment: ``PROXY_UPSTREAM`` (base URL), ``PROXY_DELAY_S`` and ``PROXY_DELAY`` (comma-separated
``METHOD /path-glob`` rules, e.g. ``POST /emails``): matching requests wait that long before being
forwarded. Everything else passes straight through, so ``/readyz`` answers for the upstream.
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
    clients: list[httpx.AsyncClient] = []

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(base_url=upstream, timeout=60) as client:
            clients.append(client)
            yield

    async def forward(request: Request) -> Response:
        path = request.url.path
        if any(
            request.method == method and fnmatch.fnmatchcase(path, glob) for method, glob in rules
        ):
            await anyio.sleep(delay_s)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        answer = await clients[0].request(
            request.method,
            request.url.path,
            params=request.url.query,
            content=await request.body(),
            headers=headers,
        )
        out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
        return Response(answer.content, status_code=answer.status_code, headers=out)

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)
