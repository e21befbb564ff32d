"""A fault injector between the orchestrator and a service: an httpx transport with rules.

Each rule matches a method and a path glob (``/reservations/*/release``) and misbehaves for its first ``times`` matching
calls, then lets calls through. Kinds:
- ``refuse``: the connection is refused (nothing reaches the service);
- ``status``: the service is never called and the answer is ``status`` (503, 429 with Retry-After…);
- ``lose_answer``: the request reaches the service and is applied, then the answer is lost
  (a read timeout): the ambiguous case;
- ``timeout``: a read timeout before the service is called (the client cannot tell it apart);
- ``delay``: the call is held for ``delay`` seconds, then let through.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from tests.suite import Suite, running_suite


@dataclass
class Rule:
    method: str
    path: str
    kind: str
    times: int = 1
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    seen: int = 0


class FaultyTransport(httpx.AsyncBaseTransport):
    """Wraps a transport; misbehaves according to its rules; counts the calls that got through."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.rules: list[Rule] = []
        self.calls: list[tuple[str, str]] = []

    def add(
        self,
        method: str,
        path: str,
        kind: str,
        *,
        times: int = 1,
        status: int = 503,
        delay: float = 0.0,
        **headers: str,
    ) -> Rule:
        rule = Rule(
            method,
            path,
            kind,
            times,
            status,
            {k.replace("_", "-"): v for k, v in headers.items()},
            delay,
        )
        self.rules.append(rule)
        return rule

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.method, request.url.path))
        for rule in self.rules:
            if (
                request.method == rule.method
                and fnmatch.fnmatchcase(request.url.path, rule.path)
                and rule.seen < rule.times
            ):
                rule.seen += 1
                return await self._misbehave(rule, request)
        return await self.inner.handle_async_request(request)

    async def _misbehave(self, rule: Rule, request: httpx.Request) -> httpx.Response:
        if rule.kind == "refuse":
            raise httpx.ConnectError("connection refused (injected)", request=request)
        if rule.kind == "delay":
            await anyio.sleep(rule.delay)
            return await self.inner.handle_async_request(request)
        if rule.kind == "timeout":
            raise httpx.ReadTimeout("read timed out (injected)", request=request)
        if rule.kind == "lose_answer":
            response = await self.inner.handle_async_request(request)
            await response.aread()
            raise httpx.ReadTimeout(
                "answer lost after the service applied it (injected)", request=request
            )
        if rule.kind == "status":
            body = {
                "type": "about:blank",
                "title": "Injected",
                "status": rule.status,
                "detail": "injected fault",
            }
            return httpx.Response(
                rule.status,
                headers={"content-type": "application/problem+json", **rule.headers},
                content=json.dumps(body).encode(),
                request=request,
            )
        raise ValueError(f"unknown fault kind {rule.kind!r}")


@asynccontextmanager
async def faulty_suite(
    database_url: Callable[[str], str],
    *,
    stock: Mapping[str, int] | None = None,
    **settings: Any,
) -> AsyncIterator[tuple[Suite, dict[str, FaultyTransport]]]:
    """The suite in-process with a fault injector in front of each service, by service name.

    ``stock`` (default: 10 of SKU-001) is put in the warehouse first; ``settings`` go to the
    orchestrator as in ``running_suite``.
    """
    faults: dict[str, FaultyTransport] = {}

    def wrap(name: str, transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        faults[name] = FaultyTransport(transport)
        return faults[name]

    async with running_suite(database_url, wrap=wrap, **settings) as suite:
        for sku, on_hand in (stock or {"SKU-001": 10}).items():
            await suite.stock(sku, on_hand)
        yield suite, faults
