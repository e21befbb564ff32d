"""The demo catalog: stocked only when asked, never over existing stock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support import assert_problem, running
from tests.warehouse_service.helpers import levels, stock
from warehouse_service.inventory import DEMO_CATALOG
from warehouse_service.main import create_app
from warehouse_service.settings import Settings


@pytest.mark.anyio
async def test_demo_catalog_not_seeded_by_default(database_url: Callable[[str], str]) -> None:
    """Without seed_demo_catalog the warehouse starts with no stock at all."""
    app = create_app(Settings(database_url=database_url("warehouse")))
    async with running(app) as client:
        for sku in DEMO_CATALOG:
            assert_problem(await client.get(f"/inventory/{sku}"), 404)


@pytest.mark.anyio
async def test_demo_catalog_seeded_when_asked(database_url: Callable[[str], str]) -> None:
    """With seed_demo_catalog every demo sku is stocked with its catalog count and nothing reserved."""
    app = create_app(Settings(database_url=database_url("warehouse"), seed_demo_catalog=True))
    async with running(app) as client:
        for sku, on_hand in DEMO_CATALOG.items():
            assert await levels(client, sku) == (on_hand, 0, on_hand)


@pytest.mark.anyio
async def test_demo_catalog_never_overwrites_existing_stock(
    database_url: Callable[[str], str],
) -> None:
    """Seeding on restart stocks only missing skus and leaves existing stock and reservations alone."""
    url = database_url("warehouse")
    async with running(create_app(Settings(database_url=url))) as client:
        await stock(client, "SKU-001", 7)
        response = await client.post(
            "/reservations",
            json={"checkout_id": "c-1", "items": [{"sku": "SKU-001", "quantity": 3}]},
        )
        assert response.status_code == 201, response.text

    for _ in range(2):  # seeding twice is as good as once
        app = create_app(Settings(database_url=url, seed_demo_catalog=True))
        async with running(app) as client:
            assert await levels(client, "SKU-001") == (7, 3, 4)
            for sku, on_hand in DEMO_CATALOG.items():
                if sku != "SKU-001":
                    assert await levels(client, sku) == (on_hand, 0, on_hand)
