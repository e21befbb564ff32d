"""What every service's app is built from: its database for the app's lifetime, and route helpers.

- ``service_app``: a service's whole app: its routes behind the service token, the kit's
  problem+json, offline docs, logs, metrics and traces, the health probes, and a lifespan that
  opens its database.
- ``open_database``: the lifespan's part; it opens the database after bringing its schema to the latest migration, yields it
in the app's state (``"database"``), and closes it whatever ends the lifespan; routes reach it
  through ``DatabaseDep``.
- ``respond_once``: the whole body of a mutating route: one transaction, applied once per
  Idempotency-Key, its answer recorded with it.
- ``uuid_or_404``: a path id that must be a UUID.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, SecretStr

from servicekit.app import create_service_app
from servicekit.auth import service_token_guard
from servicekit.db.database import Database
from servicekit.db.statements import Transaction
from servicekit.events.reactor import Reaction
from servicekit.events.runtime import CoordinationSettings, choreography
from servicekit.events.telemetry import EventTelemetry
from servicekit.health import health_router
from servicekit.idempotency import NO_BODY, fingerprint, run_once
from servicekit.migrations import MigrationHistory, upgrade
from servicekit.observability import install_observability
from servicekit.problems import ProblemError

HEALTH_TAG = {"name": "health", "description": "Liveness and readiness probes."}


def service_app(
    *,
    service: str,
    title: str,
    description: str,
    tags: list[dict[str, str]],
    router: APIRouter,
    service_token: SecretStr | None,
    database_url: str,
    history: MigrationHistory,
    on_start: Callable[[Database], Awaitable[None]] | None = None,
    state: dict[str, Any] | None = None,
    coordination: CoordinationSettings | None = None,
    reactions: Callable[[Database], Mapping[str, Reaction]] | None = None,
) -> FastAPI:
    """The app of a service the orchestrator calls, named ``service`` (in logs, traces, pools).

    Its lifespan opens the database (``open_database``), awaits ``on_start(database)`` (e.g. a
    demo catalog) and puts the database and ``state``'s members in the app's state. With
    ``coordination`` set to choreography, it also reacts to the checkout's events for as long as
    it runs: ``reactions(database)`` on its queue, and its outbox relayed to the broker.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with open_database(database_url, history, name=service) as database:
            if on_start is not None:
                await on_start(database)
            async with contextlib.AsyncExitStack() as stack:
                if coordination is not None and coordination.coordination == "choreography":
                    await stack.enter_async_context(
                        choreography(
                            database,
                            coordination,
                            consumer=service,
                            reactions=reactions(database) if reactions else {},
                            telemetry=EventTelemetry(
                                service, observability.registry, observability.tracer_provider
                            ),
                        )
                    )
                yield {**(state or {}), "database": database}

    app = create_service_app(
        title=title,
        version="1.0.0",
        description=description,
        lifespan=lifespan,
        openapi_tags=[*tags, HEALTH_TAG],
    )
    observability = install_observability(app, service=service)
    guard = service_token_guard(service, service_token)
    app.include_router(router, dependencies=[Depends(guard)])
    app.include_router(health_router())
    return app


@asynccontextmanager
async def open_database(
    url: str, history: MigrationHistory, *, name: str
) -> AsyncIterator[Database]:
    """The database at ``url``, migrated to ``history``'s head, closed on the way out.

    Alembic runs synchronously: in a worker thread, on a short-lived engine of its own.
    ``name`` names the database's PostgreSQL pool (in logs and ``pg_stat_activity``).
    """
    await anyio.to_thread.run_sync(upgrade, url, history)
    database = Database.open(url, name=name)
    try:
        yield database
    finally:
        # Even when the lifespan is cancelled rather than shut down: a PostgreSQL pool runs
        # tasks of its own, which must not outlive the event loop.
        with anyio.CancelScope(shield=True):
            await database.close()


# ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread, a hand-off per request.
async def database_of(request: Request) -> Database:
    """The database the app's lifespan put in its state."""
    database: Database = request.state.database
    return database


DatabaseDep = Annotated[Database, Depends(database_of)]


def uuid_or_404(raw: str, not_found: type[ProblemError], noun: str) -> uuid.UUID:
    """The UUID a path segment spells; a 404 naming ``noun`` for anything else.

    Path ids are taken as text, not as ``uuid.UUID``: an id that is not a UUID names no
    resource, which is a 404, not an invalid request (422).
    """
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise not_found(f"No {noun} has the id {raw}.") from None


async def respond_once(
    database: Database,
    *,
    scope: str,
    key: str | None,
    action: Callable[[Transaction], Awaitable[tuple[int, BaseModel]]],
    body: BaseModel | None = None,
    location: Callable[[Any], str] | None = None,
) -> JSONResponse:
    """Answer a mutating request: ``action`` in one transaction, once per ``(scope, key)``.

    ``action`` returns the status code and the resource; a repeat of the key with the same
    ``body`` (the request's, compared by its ``fingerprint``) replays the first answer, with
    another body it is refused (422). ``location``: the ``Location`` header, from the answer's
    JSON.
    """

    async def as_json(transaction: Transaction) -> tuple[int, Any]:
        status_code, resource = await action(transaction)
        return status_code, resource.model_dump(mode="json")

    digest = NO_BODY if body is None else fingerprint(body.model_dump(mode="json"))
    result = await run_once(database, scope=scope, key=key, digest=digest, action=as_json)
    return result.to_response(None if location is None else {"Location": location(result.body)})
