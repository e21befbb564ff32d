"""Application factory of the orchestrator: ``uvicorn orchestrator.main:create_app --factory``."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import TypedDict

import httpx
from fastapi import Depends, FastAPI

from orchestrator.api import router
from orchestrator.choreography.feed import Feed
from orchestrator.choreography.placing import Placing
from orchestrator.clients import ServiceClients
from orchestrator.journal.journal import Journal
from orchestrator.migrations import HISTORY
from orchestrator.ratelimit import CheckoutRateLimit
from orchestrator.saga.crashpoints import CrashPoints
from orchestrator.saga.metrics import SagaMetrics
from orchestrator.saga.retry import RetryPolicy
from orchestrator.saga.runner import SagaRunner
from orchestrator.saga.steps import build_steps
from orchestrator.saga.supervisor import Supervisor
from orchestrator.saga.telemetry import SagaTelemetry
from orchestrator.service_http import build_service_http
from orchestrator.settings import Settings
from orchestrator.ui import router as ui_router
from servicekit.app import create_service_app
from servicekit.auth import bearer_guard, browser_guard, split_secrets, warn_if_open
from servicekit.db.database import Database
from servicekit.events.runtime import choreography
from servicekit.events.telemetry import EventTelemetry
from servicekit.health import health_router
from servicekit.observability import install_observability
from servicekit.service import open_database

log = logging.getLogger("orchestrator")


class State(TypedDict):
    settings: Settings
    database: Database
    journal: Journal
    supervisor: Supervisor
    placing: Placing | None
    rate_limit: CheckoutRateLimit


@asynccontextmanager
async def placing_of(
    settings: Settings, database: Database, telemetry: EventTelemetry, metrics: SagaMetrics
) -> AsyncIterator[Placing | None]:
    """In choreography: checkouts placed as events, and the journal fed by every checkout event
    (one replica's feed at a time). In orchestration: None, and the supervisor drives them."""
    if settings.coordination != "choreography":
        yield None
        return
    placing = Placing(database)
    feed = Feed(placing.journal, placing.ended, metrics)
    async with choreography(
        database,
        settings,
        consumer="journal",
        reactions=feed.reactions,
        single_active=True,
        telemetry=telemetry,
        tables="orchestrator",
    ) as running:
        placing.publish_with(running.store, running.relay)
        yield placing


def retry_policy(settings: Settings) -> RetryPolicy:
    """The retry policy the settings describe."""
    return RetryPolicy(
        max_attempts=settings.step_max_attempts,
        deadline_s=settings.step_deadline_s,
        initial_delay_s=settings.retry_initial_delay_s,
        max_delay_s=settings.retry_max_delay_s,
        jitter_s=settings.retry_jitter_s,
        # A runner must not sleep past its lease, or another replica takes the checkout over.
        max_retry_after_s=settings.lease_ttl_s / 3,
    )


def create_app(
    settings: Settings | None = None,
    *,
    transports: dict[str, httpx.AsyncBaseTransport] | None = None,
) -> FastAPI:
    """Build the orchestrator; ``transports`` (tests) route a service's URL to an in-process app."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        async with open_database(
            settings.database_url, HISTORY, name="orchestrator-journal"
        ) as database:
            owner = f"{socket.gethostname()}:{os.getpid()}:{id(database):x}"
            journal = Journal(database, owner=owner, lease_ttl_s=settings.lease_ttl_s)
            http = build_service_http(settings, transports, observability.tracer_provider)
            async with aclosing(http):
                runner = SagaRunner(
                    journal,
                    build_steps(ServiceClients(http, settings)),
                    retry_policy(settings),
                    CrashPoints(settings.crash_points),
                    resume_delay_s=settings.resume_delay_s,
                    telemetry=SagaTelemetry(saga_metrics, observability.tracer_provider),
                )
                supervisor = Supervisor(
                    journal,
                    runner,
                    recovery_interval_s=settings.recovery_interval_s,
                    grace_s=settings.shutdown_grace_s,
                )
                async with (
                    supervisor.running(),
                    placing_of(
                        settings,
                        database,
                        EventTelemetry(
                            "journal", observability.registry, observability.tracer_provider
                        ),
                        saga_metrics,
                    ) as placing,
                ):
                    yield {
                        "settings": settings,
                        "database": database,
                        "journal": journal,
                        "supervisor": supervisor,
                        "placing": placing,
                        "rate_limit": CheckoutRateLimit(
                            settings.rate_limit, settings.rate_limit_storage_url
                        ),
                    }

    app = create_service_app(
        title="Checkout orchestrator",
        version="1.0.0",
        description=(
            "Receives checkouts and drives each one as a saga over HTTP: reserve stock in the warehouse, "
            "credit rewards points (members only), send the confirmation email. Every step is journaled "
            "(status, attempts, timings, result, error); a step refused for good compensates the completed "
            "ones in reverse. Send an `Idempotency-Key` to make retries of `POST /checkouts` safe."
        ),
        lifespan=lifespan,
        openapi_tags=[
            {"name": "checkouts", "description": "Place checkouts and follow their steps."},
            {"name": "health", "description": "Liveness and readiness probes."},
        ],
    )
    observability = install_observability(app, service="orchestrator")
    saga_metrics = SagaMetrics(observability.registry)
    api_keys = split_secrets(settings.api_keys)
    warn_if_open("the orchestrator", "API_KEYS", api_keys)
    warn_if_open(
        "the orchestrator's calls to the services",
        "SERVICE_TOKEN",
        split_secrets(settings.service_token),
    )
    client_guard = bearer_guard(
        api_keys, scheme_name="ApiKey", description="A client key from the orchestrator's API_KEYS."
    )
    app.include_router(router, dependencies=[Depends(client_guard)])
    app.include_router(health_router())
    # The dashboard reads with the browser's own sign-in (HTTP Basic, a key as the password); its
    # retry/cancel buttons call the API with a bearer key, which a cross-site page cannot send.
    app.include_router(
        ui_router, dependencies=[Depends(browser_guard(api_keys, realm="checkout dashboard"))]
    )
    return app
