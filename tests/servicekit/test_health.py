"""servicekit.health: liveness always, readiness only while the database answers."""

from __future__ import annotations

import httpx
import pytest

from servicekit.app import create_service_app
from servicekit.health import health_router

pytestmark = pytest.mark.anyio


async def _client_for(healthy: bool) -> httpx.AsyncClient:
    async def check_database(_request: object) -> None:
        if not healthy:
            raise ConnectionRefusedError("db at 10.0.0.5:5432 with password hunter2 refused")

    app = create_service_app()
    app.include_router(health_router(check_database))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_probes_answer_ok_when_database_answers() -> None:
    """/healthz and /readyz are 200 {"status": "ok"} while the database check passes."""
    async with await _client_for(healthy=True) as client:
        for path in ("/healthz", "/readyz"):
            response = await client.get(path)
            assert response.status_code == 200
            assert response.json() == {"status": "ok"}


async def test_readyz_is_503_problem_when_database_fails() -> None:
    """/readyz is a 503 problem naming only the error class; /healthz stays 200."""
    async with await _client_for(healthy=False) as client:
        ready = await client.get("/readyz")
        alive = await client.get("/healthz")

    assert ready.status_code == 503
    assert ready.headers["content-type"] == "application/problem+json"
    body = ready.json()
    assert body["status"] == 503
    assert "ConnectionRefusedError" in body["detail"]
    assert "hunter2" not in ready.text
    assert "10.0.0.5" not in ready.text
    assert alive.status_code == 200
