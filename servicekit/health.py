"""``/healthz`` (the process answers) and ``/readyz`` (its own database answers)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from servicekit.problems import problem_response, problem_responses


class HealthStatus(BaseModel):
    """The answer of a health probe."""

    status: str = "ok"


async def _ping_database(request: Request) -> None:
    await request.state.database.ping()


def health_router(
    check_database: Callable[[Request], Awaitable[None]] = _ping_database,
) -> APIRouter:
    """Probes for a service; ``check_database`` raises when the database does not answer.

    By default it pings the ``Database`` in the app's state (``servicekit.service``).
    """
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness", response_model=HealthStatus)
    async def healthz() -> HealthStatus:
        """The process is alive and serving requests."""
        return HealthStatus()

    @router.get(
        "/readyz",
        summary="Readiness",
        response_model=HealthStatus,
        responses=problem_responses(503),
    )
    async def readyz(request: Request) -> HealthStatus | JSONResponse:
        """The service's own database answers a query; other services are not consulted."""
        try:
            await check_database(request)
        except Exception as exc:
            return problem_response(503, f"The database does not answer: {type(exc).__name__}.")
        return HealthStatus()

    return router
