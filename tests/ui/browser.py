"""Helpers of the browser tests: the live suite, a page that may reach only it, screenshots."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
from playwright.async_api import Browser, Page, Route

from tests.e2e.harness import ROOT, Harness, ServiceProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
TIMEOUT_MS = 15_000


@dataclass
class Live:
    """The running suite, a client of its API, and the browser."""

    harness: Harness
    orchestrator: ServiceProcess
    services: dict[str, ServiceProcess]
    api: httpx.AsyncClient
    browser: Browser
    outside: list[str] = field(default_factory=list)  # requests the browser tried beyond the app
    errors: list[str] = field(default_factory=list)  # uncaught JavaScript errors of any page

    @property
    def url(self) -> str:
        return self.orchestrator.url

    async def place(
        self,
        customer: str,
        *,
        member: bool = True,
        sku: str = "SKU-001",
        name: str = "Ada Lovelace",
    ) -> dict[str, Any]:
        """Place a checkout through the API; its body."""
        response = await self.api.post(
            "/checkouts",
            json={
                "customer": {
                    "id": customer,
                    "email": f"{customer}@example.com",
                    "name": name,
                    "rewards_member": member,
                },
                "items": [{"sku": sku, "quantity": 1, "unit_price": "19.99"}],
            },
        )
        assert response.status_code in (201, 202), response.text
        return response.json()  # type: ignore[no-any-return]

    async def wait_status(self, checkout_id: str, status: str) -> dict[str, Any]:
        """Poll the API until the checkout has ``status``."""
        with anyio.fail_after(TIMEOUT_MS / 1000):
            while True:
                checkout = (await self.api.get(f"/checkouts/{checkout_id}")).json()
                if checkout["status"] == status:
                    return checkout  # type: ignore[no-any-return]
                await anyio.sleep(0.05)

    async def page(self) -> Page:
        """A fresh page that may reach only the orchestrator, accepting confirm() dialogs."""
        context = await self.browser.new_context(viewport={"width": 1400, "height": 900})

        async def only_the_app(route: Route) -> None:
            if route.request.url.startswith(self.url + "/"):
                await route.continue_()
            else:
                self.outside.append(route.request.url)
                await route.abort()

        await context.route("**/*", only_the_app)
        page = await context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        return page


async def shot(page: Page, name: str) -> None:
    """Save a full-page screenshot as a test artifact."""
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def no_trouble(live: Live) -> None:
    """No JavaScript error happened, and nothing was asked of another host (no CDN)."""
    assert live.errors == []
    assert live.outside == [], "a page tried to load something from outside the orchestrator"
