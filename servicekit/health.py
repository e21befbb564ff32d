"""``/healthz`` (the process answers) and ``/readyz`` (its own database answers)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from servicekit.problems import problem_response, problem_responses


class HealthStatus(BaseModel):
    """The answer of a health probe."""

    status: str = "ok"


def health_router(check_database: Callable[[], Awaitable[None]]) -> APIRouter:
    """Probes for a service; ``check_database`` raises when the database does not answer."""
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
    async def readyz() -> HealthStatus | JSONResponse:
        """The service's own database answers a query; other services are not consulted."""
        try:
            await check_database()
        except Exception as exc:
            return problem_response(503, f"The database does not answer: {type(exc).__name__}.")
        return HealthStatus()

    return router
