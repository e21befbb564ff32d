"""servicekit.metrics: the HTTP families, labelled as prometheus-fastapi-instrumentator labels them."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.observability.conftest import metric, scrape
from tests.support import running
from warehouse_service.main import create_app
from warehouse_service.settings import Settings

pytestmark = pytest.mark.anyio


async def test_handlers_are_route_templates_even_when_the_router_never_ran(tmp_path: Path) -> None:
    """Requests are labelled by route template (also when a middleware refused them before
    routing), unmatched paths as "none", statuses grouped, sizes from Content-Length; scrapes
    are not counted."""
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/w.db", seed_demo_catalog=True))
    async with running(app) as client:
        body = {"checkout_id": "c-1", "items": [{"sku": "SKU-001", "quantity": 1}]}
        assert (await client.post("/reservations", json=body)).status_code == 201
        too_big = b"x" * (64 * 1024 + 1)
        headers = {"content-type": "application/json"}
        refused = await client.post("/reservations", content=too_big, headers=headers)
        assert refused.status_code == 413
        assert (await client.post("/checkouts/c-2/void")).status_code == 200
        assert (await client.get("/no/such/path")).status_code == 404
        assert (await client.delete("/inventory/SKU-001")).status_code == 405
        await client.get("/metrics")
        text = await scrape(client)

    def count(**labels: str) -> float | None:
        return metric(text, "http_requests_total", **labels)

    assert count(handler="/reservations", method="POST", status="2xx") == 1
    assert count(handler="/reservations", method="POST", status="4xx") == 1
    assert count(handler="/checkouts/{checkout_id}/void", method="POST", status="2xx") == 1
    assert count(handler="none", method="GET", status="4xx") == 1
    assert count(handler="/inventory/{sku}", method="DELETE", status="4xx") == 1
    assert count(handler="/metrics") is None
    lowr = "http_request_duration_seconds_count"
    assert metric(text, lowr, handler="/reservations", method="POST") == 2
    assert metric(text, "http_request_duration_highr_seconds_count") == 5
    sizes = "http_request_size_bytes_sum"
    assert metric(text, sizes, handler="/reservations") == len(too_big) + len(
        httpx.Request("POST", "/", json=body).content
    )
    assert metric(text, "http_response_size_bytes_count", handler="/reservations") == 2
