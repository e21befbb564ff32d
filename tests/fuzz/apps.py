"""The apps the fuzzer drives, on SQLite, as ASGI callables that count the requests they handle.

schemathesis runs an app's lifespan on an event loop of its own and ends it after each test item.
``Fresh`` is the ASGI app it is given: its lifespan builds the real app(s) on SQLite files in a new
temporary directory, runs them, and removes the directory at shutdown, so every app and every call
between apps lives on schemathesis's loop. The orchestrator is fuzzed with the three services
mounted in-process (as ``tests/suite.py`` wires them), so generated checkouts really run.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from email_service.main import create_app as create_email_app
from email_service.settings import Settings as EmailSettings
from orchestrator.main import create_app as create_orchestrator_app
from orchestrator.settings import Settings as OrchestratorSettings
from rewards_service.main import create_app as create_rewards_app
from rewards_service.settings import Settings as RewardsSettings
from tests.suite import SERVICE_URLS
from warehouse_service.main import create_app as create_warehouse_app
from warehouse_service.settings import Settings as WarehouseSettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Starter = Callable[[AsyncExitStack, Path], Awaitable[ASGIApp]]

# Requests each app handled: the fuzzer's, and apart from them the orchestrator's calls.
REQUESTS: Counter[str] = Counter()


def counted(name: str, app: ASGIApp) -> ASGIApp:
    """``app``, counting its HTTP requests under ``name``."""

    async def counting(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            REQUESTS[name] += 1
        await app(scope, receive, send)

    return counting


def _url(data_dir: Path, name: str) -> str:
    return f"sqlite:///{data_dir / name}.db"


def build(name: str, data_dir: Path) -> Any:
    """The FastAPI app of a service on SQLite under ``data_dir`` (building it touches nothing)."""
    if name == "warehouse":  # with the demo catalog, so the schema's examples can reserve
        return create_warehouse_app(
            WarehouseSettings(database_url=_url(data_dir, name), seed_demo_catalog=True)
        )
    if name == "rewards":
        return create_rewards_app(RewardsSettings(database_url=_url(data_dir, name)))
    if name == "email":  # no SMTP_URL: messages go to the log
        return create_email_app(EmailSettings(database_url=_url(data_dir, name)))
    raise ValueError(name)


def start_service(name: str) -> Starter:
    """Start one service on its own."""

    async def start(stack: AsyncExitStack, data_dir: Path) -> ASGIApp:
        manager = await stack.enter_async_context(LifespanManager(build(name, data_dir)))
        return manager.app

    return start


async def start_suite(stack: AsyncExitStack, data_dir: Path) -> ASGIApp:
    """Start the three services, then the orchestrator calling them in-process."""
    transports: dict[str, httpx.AsyncBaseTransport] = {}
    for name in ("warehouse", "rewards", "email"):
        manager = await stack.enter_async_context(LifespanManager(build(name, data_dir)))
        called = counted(f"{name}, called by the orchestrator", manager.app)
        transports[name] = httpx.ASGITransport(app=called)
    settings = OrchestratorSettings(
        database_url=_url(data_dir, "orchestrator"),
        warehouse_url=SERVICE_URLS["warehouse"],
        rewards_url=SERVICE_URLS["rewards"],
        email_url=SERVICE_URLS["email"],
        retry_initial_delay_s=0,
        retry_jitter_s=0,
        retry_max_delay_s=0,
        rate_limit="",  # the fuzzer posts far faster than any client may
    )
    app = create_orchestrator_app(settings, transports=transports)
    manager = await stack.enter_async_context(LifespanManager(app))
    return manager.app


def openapi(name: str) -> dict[str, Any]:
    """A service's OpenAPI schema, from an app that is built but never started."""
    unused = Path(tempfile.gettempdir()) / "never-opened"
    if name == "orchestrator":
        app = create_orchestrator_app(
            OrchestratorSettings(database_url=_url(unused, name), rate_limit="")
        )
    else:
        app = build(name, unused)
    return app.openapi()


class Fresh:
    """An ASGI app whose every lifespan runs ``start``'s app(s) on new SQLite databases."""

    def __init__(self, name: str, start: Starter) -> None:
        self.name = name
        self.start = start
        self._app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if self._app is None:
            raise RuntimeError(f"{self.name}: the lifespan has not started")
        REQUESTS[self.name] += 1
        await self._app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        async with AsyncExitStack() as stack:
            try:
                data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                self._app = await self.start(stack, data_dir)
            except BaseException as exc:
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                raise
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            self._app = None
        await send({"type": "lifespan.shutdown.complete"})
