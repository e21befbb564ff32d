"""The HTTP under ``ServiceClients``: one request in, one ``Answer`` or one ``CallFailed`` out.

Two implementations of the same small seam:

- ``AiohttpServiceHTTP``, production: one shared ``aiohttp.ClientSession``. Per call, httpx costs
  this process 0.7-1.1 ms of CPU even on aiohttp's engine, aiohttp alone 0.3-0.4 ms
  (``python -m bench.experiments.http_clients``); a checkout makes three calls.
- ``HttpxServiceHTTP``, when the app is built with in-process ``transports`` (tests mount the
  services' ASGI apps and fault injectors, which are httpx transports).

Both classify a call that got no answer the same way, in httpx's names (the journal and the tests
read them): ``ConnectError``, ``ConnectTimeout`` and ``PoolTimeout`` never left this process
(``sent=False``); ``RemoteProtocolError`` (the connection dropped after the request went out),
``ReadTimeout`` and any other failure after sending may have been applied (``sent=True``). What an
answer's status means is decided above, in ``ServiceClients``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx
import orjson
from opentelemetry.trace import TracerProvider

from orchestrator.settings import Settings
from servicekit.auth import split_secrets
from servicekit.tracing import client_trace_configs, instrument_client

# Below uvicorn's default keep-alive (5 s), so this side drops an idle connection before the
# service does: a POST on a connection the service is closing would fail ambiguously.
KEEPALIVE_S = 4.0
MAX_CONNECTIONS = 200


@dataclass(frozen=True, slots=True)
class Answer:
    """A service's answer, its body read in full."""

    status: int
    # Case-insensitive (aiohttp's CIMultiDictProxy, httpx.Headers).
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON; ``ValueError`` if it is not."""
        return orjson.loads(self.body)


class CallFailed(Exception):
    """No answer came. ``name`` says why, in httpx's vocabulary; ``sent`` means it may have been applied."""

    def __init__(self, name: str, *, sent: bool) -> None:
        super().__init__(name)
        self.name = name
        self.sent = sent


class ServiceHTTP(Protocol):
    """What ``ServiceClients`` needs of HTTP."""

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        key: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Answer:
        """Send one request (``key`` as its Idempotency-Key); raises ``CallFailed`` without an answer."""

    async def aclose(self) -> None:
        """Close the connections."""


def _default_headers(settings: Settings) -> dict[str, str]:
    tokens = split_secrets(settings.service_token)
    # The first token is sent; the services may accept several while one is being rotated.
    return {"Authorization": f"Bearer {tokens[0].get_secret_value()}"} if tokens else {}


def _request_headers(json: Any, key: str | None) -> dict[str, str]:
    headers = {"Idempotency-Key": key} if key else {}
    if json is not None:
        headers["Content-Type"] = "application/json"
    return headers


class AiohttpServiceHTTP:
    """Production: one ``aiohttp.ClientSession`` with keep-alive for all three services."""

    def __init__(self, settings: Settings, tracer_provider: TracerProvider | None = None) -> None:
        step = settings.step_timeout_s
        # No overall limit: ``connect`` bounds the wait for a pooled connection plus connecting
        # (ConnectionTimeoutError: never sent), ``sock_read`` each wait for the answer's bytes
        # (SocketTimeoutError: maybe applied).
        timeout = aiohttp.ClientTimeout(total=None, connect=step, sock_connect=step, sock_read=step)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_S),
            timeout=timeout,
            headers=_default_headers(settings),
            trace_configs=client_trace_configs(tracer_provider),
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        key: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Answer:
        data = orjson.dumps(json) if json is not None else None
        try:
            async with self._session.request(
                method,
                url,
                data=data,
                headers=_request_headers(json, key),
                params=params,
                allow_redirects=False,  # as httpx: a redirect is an answer, not followed
            ) as response:
                body = await response.read()
        # Most specific first: ClientConnectorError and both timeouts are ClientConnectionErrors.
        except aiohttp.ClientConnectorError as exc:
            raise CallFailed("ConnectError", sent=False) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            # Also a wait for a free pooled connection: aiohttp does not tell the two apart.
            raise CallFailed("ConnectTimeout", sent=False) from exc
        except aiohttp.SocketTimeoutError as exc:
            raise CallFailed("ReadTimeout", sent=True) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise CallFailed("RemoteProtocolError", sent=True) from exc
        except aiohttp.ClientError as exc:
            # A reset, a truncated body…: after connecting, so the request may have gone out.
            raise CallFailed("ReadError", sent=True) from exc
        return Answer(response.status, response.headers, body)

    async def aclose(self) -> None:
        await self._session.close()


class HttpxServiceHTTP:
    """One ``httpx.AsyncClient``; ``transports`` (tests) route a service's URL to an in-process app."""

    def __init__(
        self,
        settings: Settings,
        transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        mounts: dict[str, httpx.AsyncBaseTransport | None] = {
            getattr(settings, f"{name}_url").rstrip("/"): transport
            for name, transport in (transports or {}).items()
        }
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.step_timeout_s),
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=50),
            mounts=mounts or None,
            headers=_default_headers(settings),
        )
        instrument_client(self._client, tracer_provider)

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        key: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Answer:
        content = orjson.dumps(json) if json is not None else None
        try:
            response = await self._client.request(
                method, url, content=content, headers=_request_headers(json, key), params=params
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise CallFailed(type(exc).__name__, sent=False) from exc
        except httpx.TransportError as exc:
            raise CallFailed(type(exc).__name__, sent=True) from exc
        return Answer(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        await self._client.aclose()


def build_service_http(
    settings: Settings,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    tracer_provider: TracerProvider | None = None,
) -> ServiceHTTP:
    """aiohttp, unless in-process ``transports`` are given (only httpx can mount them).

    Call from a running event loop (aiohttp's session belongs to one).
    """
    if transports:
        return HttpxServiceHTTP(settings, transports, tracer_provider)
    return AiohttpServiceHTTP(settings, tracer_provider)
