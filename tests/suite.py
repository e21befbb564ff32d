"""The whole suite in one process: four apps under their lifespans, wired by ASGITransport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from email_service.main import create_app as create_email_app
from email_service.settings import Settings as EmailSettings
from orchestrator.main import create_app as create_orchestrator_app
from orchestrator.settings import Settings as OrchestratorSettings
from rewards_service.main import create_app as create_rewards_app
from rewards_service.settings import Settings as RewardsSettings
from warehouse_service.main import create_app as create_warehouse_app
from warehouse_service.settings import Settings as WarehouseSettings

SERVICE_URLS = {
    "warehouse": "http://warehouse.test",
    "rewards": "http://rewards.test",
    "email": "http://email.test",
}


@dataclass
class Suite:
    """Clients for the orchestrator and each service, all in-process."""

    orchestrator: httpx.AsyncClient
    warehouse: httpx.AsyncClient
    rewards: httpx.AsyncClient
    email: httpx.AsyncClient
    settings: OrchestratorSettings

    async def stock(self, sku: str, on_hand: int) -> None:
        response = await self.warehouse.put(f"/inventory/{sku}", json={"on_hand": on_hand})
        assert response.status_code in (200, 201), response.text

    async def inventory(self, sku: str) -> dict[str, Any]:
        response = await self.warehouse.get(f"/inventory/{sku}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def balance(self, customer_id: str) -> int | None:
        response = await self.rewards.get(f"/accounts/{customer_id}")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return response.json()["balance"]  # type: ignore[no-any-return]

    async def emails(self, to: str) -> list[dict[str, Any]]:
        response = await self.email.get("/emails", params={"to": to})
        assert response.status_code == 200, response.text
        return response.json()["items"]  # type: ignore[no-any-return]


def checkout_body(
    *,
    customer_id: str = "c-42",
    email: str = "ada@example.com",
    member: bool = True,
    items: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A valid checkout request."""
    return {
        "customer": {
            "id": customer_id,
            "email": email,
            "name": "Ada Lovelace",
            "rewards_member": member,
        },
        "items": items or [{"sku": "SKU-001", "quantity": 2, "unit_price": "19.99"}],
        "currency": "USD",
    }


@asynccontextmanager
async def running_suite(
    database_url: Callable[[str], str],
    *,
    wrap: Callable[[str, httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
    everywhere: dict[str, Any] | None = None,
    only: dict[str, dict[str, Any]] | None = None,
    **orchestrator_settings: Any,
) -> AsyncIterator[Suite]:
    """Start the four apps; ``wrap(service, transport)`` may put a fault injector in front of a service.

    ``everywhere``: settings of all four (e.g. ``coordination``, ``broker_url``, ``events_prefix``);
    ``only``: settings of one service, over those (``{"rewards": {...}}``).
    """
    shared = everywhere or {}

    def of(service: str) -> dict[str, Any]:
        return shared | (only or {}).get(service, {})

    async with AsyncExitStack() as stack:
        services: dict[str, httpx.AsyncClient] = {}
        transports: dict[str, httpx.AsyncBaseTransport] = {}
        apps = {
            "warehouse": create_warehouse_app(
                WarehouseSettings(database_url=database_url("warehouse"), **of("warehouse"))
            ),
            "rewards": create_rewards_app(
                RewardsSettings(database_url=database_url("rewards"), **of("rewards"))
            ),
            "email": create_email_app(
                EmailSettings(database_url=database_url("email"), **of("email"))
            ),
        }
        for name, app in apps.items():
            manager = await stack.enter_async_context(LifespanManager(app))
            transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=manager.app)
            services[name] = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url=SERVICE_URLS[name])
            )
            transports[name] = wrap(name, transport) if wrap else transport
        defaults: dict[str, Any] = {
            "database_url": database_url("orchestrator"),
            "warehouse_url": SERVICE_URLS["warehouse"],
            "rewards_url": SERVICE_URLS["rewards"],
            "email_url": SERVICE_URLS["email"],
            "retry_initial_delay_s": 0,
            "retry_jitter_s": 0,
            "retry_max_delay_s": 0,
            "rate_limit": "",  # load tests send many checkouts from one client; tests/security turns it on
        }
        settings = OrchestratorSettings(**(defaults | shared | orchestrator_settings))
        manager = await stack.enter_async_context(
            LifespanManager(create_orchestrator_app(settings, transports=transports))
        )
        orchestrator = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=manager.app), base_url="http://orchestrator.test"
            )
        )
        yield Suite(
            orchestrator, services["warehouse"], services["rewards"], services["email"], settings
        )
