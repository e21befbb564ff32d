"""The dashboard in real headless Chromium against real processes: an operator's tour.

The four services run as uvicorn subprocesses (tests/e2e/harness.py); the orchestrator parks a
checkout after one failed attempt and resumes it only an hour later, so a stopped rewards service
leaves checkouts parked for the operator. Every request the browser makes outside the orchestrator
is refused, which proves the pages (and /docs) need no CDN. Screenshots go to test-artifacts/ui/.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import anyio
import pytest
from playwright.async_api import async_playwright, expect

from tests.e2e.harness import SERVICES, Harness
from tests.ui.browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    Live,
    no_trouble,
    shot,
)

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """One event loop for the module, so the processes and the browser serve every test."""
    return "asyncio"


@pytest.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory, anyio_backend: str) -> AsyncIterator[Live]:
    """The suite as real processes (demo catalog; parking after one attempt) and headless Chromium."""
    del anyio_backend
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run the browser tests"
        )
    workdir = tmp_path_factory.mktemp("ui-browser")
    harness = Harness(workdir)
    try:
        services = harness.services(
            {s: f"sqlite:///{workdir / s}.db" for s in SERVICES}, seed_demo_catalog=True
        )
        orchestrator = harness.orchestrator(
            f"sqlite:///{workdir / 'orchestrator.db'}",
            services,
            STEP_MAX_ATTEMPTS="1",
            RESUME_DELAY_S="3600",
            CHECKOUT_SYNC_DEADLINE_S="10",
        )
        await harness.start_all(*services.values())
        await orchestrator.start()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
            try:
                yield Live(harness, orchestrator, services, harness.client(orchestrator), browser)
            finally:
                await browser.close()
    finally:
        try:
            await harness.aclose()
        finally:
            harness.close()


async def test_an_operator_sees_which_checkout_failed_and_why(live: Live) -> None:
    """The list shows a member's, a non-member's and a sold-out checkout; the failed one explains itself."""
    member = await live.place("c-ada", name="Ada Lovelace")
    other = await live.place("c-grace", member=False, name="Grace Hopper")
    soldout = await live.place("c-alan", sku="SKU-SOLDOUT", name="Alan Turing")
    assert [member["status"], other["status"], soldout["status"]] == [
        "completed",
        "completed",
        "failed",
    ]
    page = await live.page()

    await page.goto(f"{live.url}/ui")
    rows = page.locator("tr.row")
    await expect(rows).to_have_count(3)
    failed_row = page.locator(f'tr[data-id="{soldout["id"]}"]')
    await expect(failed_row.locator("td.why")).to_have_text(
        "warehouse failed: Not enough stock for sku SKU-SOLDOUT. (HTTP 409)"
    )
    await expect(failed_row.locator(".pill")).to_contain_text("failed")
    await expect(page.locator(f'tr[data-id="{other["id"]}"] .steps')).to_contain_text(
        "rewards skipped"
    )
    await expect(page.locator("#live-status")).to_contain_text("Live")
    await shot(page, "01-list")

    await page.locator('a.count[data-status="failed"]').click()
    await expect(page).to_have_url(re.compile(r"/ui\?status=failed$"))
    await expect(rows).to_have_count(1)
    await shot(page, "02-list-filtered-failed")

    await failed_row.locator("a.id").click()
    await expect(page).to_have_url(f"{live.url}/ui/checkouts/{soldout['id']}")
    await expect(page.locator("#why")).to_contain_text(
        "Failed. warehouse failed: Not enough stock for sku SKU-SOLDOUT."
    )
    for step, status in {"warehouse": "failed", "rewards": "skipped", "email": "skipped"}.items():
        lane = page.locator(f'.tl-row[data-step="{step}"]')
        await expect(lane).to_have_attribute("data-step-status", status)
        await expect(lane.locator(".tl-label")).to_contain_text(status)
    bar = page.locator('.tl-row[data-step="warehouse"] .tl-bar')
    await expect(bar).to_have_attribute(
        "title", re.compile("error: Not enough stock for sku SKU-SOLDOUT")
    )
    await expect(page.locator(".tl-errors")).to_contain_text(
        "warehouse (failed, 1 attempt): Not enough stock"
    )
    await expect(page.locator("button[data-action]")).to_have_count(0)
    await expect(page.locator("#live-status")).to_contain_text("Finished")
    await bar.hover()
    await shot(page, "03-failed-checkout-timeline")
    no_trouble(live)


async def test_an_operator_cancels_and_retries_parked_checkouts(live: Live) -> None:
    """With rewards down checkouts park; Cancel compensates the reservation, Retry completes, 409s are shown."""
    rewards = live.services["rewards"]
    rewards.terminate()
    await rewards.wait_exit()
    parked = [await live.place(f"c-park-{n}", name=f"Parker {n}") for n in range(3)]
    assert {p["status"] for p in parked} == {"running"}
    page = await live.page()

    await page.goto(f"{live.url}/ui")
    for checkout in parked:
        row = page.locator(f'tr[data-id="{checkout["id"]}"]')
        await expect(row.locator("td.why")).to_contain_text(
            "parked after transient failures of step rewards"
        )
        await expect(row.locator(".pill")).to_contain_text("running")
    await shot(page, "04-list-parked")

    # Cancel while rewards is still down: compensation waits for it (the checkout says so) ...
    cancelled = parked[0]["id"]
    await page.goto(f"{live.url}/ui/checkouts/{cancelled}")
    await expect(page.locator("#why")).to_contain_text(
        "parked after transient failures of step rewards"
    )
    await expect(page.locator('.tl-row[data-step="rewards"] .tl-wait')).to_be_visible()
    await expect(page.locator('button[data-action="retry"]')).to_be_visible()
    await shot(page, "05-parked-checkout")
    await page.locator('button[data-action="cancel"]').click()
    await expect(page.locator("#action-message")).to_contain_text("Cancel accepted")
    await expect(page.locator("#why")).to_contain_text(
        "cancelling: compensating completed steps", timeout=TIMEOUT_MS
    )
    await expect(page.locator('button[data-action="cancel"]')).to_have_count(0)
    await shot(page, "06-cancelling-while-rewards-is-down")

    # ... and once rewards is back the page, without a reload, shows the reservation released.
    await rewards.start()
    await expect(page.locator(".detail-head .pill")).to_contain_text("failed", timeout=TIMEOUT_MS)
    await expect(page.locator("#why")).to_contain_text("Cancelled: Cancelled by an operator.")
    await expect(page.locator("#why")).to_contain_text(
        "Compensated (undone in reverse order): warehouse."
    )
    warehouse_lane = page.locator('.tl-row[data-step="warehouse"]')
    await expect(warehouse_lane).to_have_attribute("data-step-status", "compensated")
    await expect(warehouse_lane.locator(".tl-label")).to_contain_text("compensated")
    await expect(warehouse_lane.locator(".tl-comp")).to_be_visible()
    await expect(warehouse_lane.locator(".tl-note")).to_contain_text("compensated")
    await expect(page.locator("button[data-action]")).to_have_count(0)
    await shot(page, "07-cancelled-checkout-compensated")
    warehouse = live.harness.client(live.services["warehouse"])
    reservations = (await warehouse.get("/reservations", params={"checkout_id": cancelled})).json()
    assert [r["status"] for r in reservations["items"]] == ["released"]

    # Retry: the parked checkout completes now, without waiting for its next attempt.
    retried = parked[1]["id"]
    await page.goto(f"{live.url}/ui/checkouts/{retried}")
    await page.locator('button[data-action="retry"]').click()
    await expect(page.locator(".detail-head .pill")).to_contain_text(
        "completed", timeout=TIMEOUT_MS
    )
    await expect(page.locator('.tl-row[data-step="rewards"]')).to_have_attribute(
        "data-step-status", "succeeded"
    )
    await expect(page.locator("#why")).to_contain_text("Completed.")
    await shot(page, "08-retried-checkout-completed")

    # A button the page still shows but the API refuses: the problem's detail is shown.
    stale = parked[2]["id"]
    await page.goto(f"{live.url}/ui/checkouts/{stale}")
    await page.route(
        "**/fragment", lambda route: route.abort()
    )  # the page cannot learn of the cancel
    assert (await live.api.post(f"/checkouts/{stale}/cancel")).status_code in (200, 202)
    await live.wait_status(stale, "failed")
    await page.locator('button[data-action="retry"]').click()
    message = page.locator("#action-message")
    await expect(message).to_contain_text(
        "The orchestrator refused (409): Checkout already finished"
    )
    await expect(message).to_have_class(re.compile(r"\berror\b"))
    await shot(page, "09-retry-refused-409")
    await page.unroute("**/fragment")
    no_trouble(live)


async def test_the_list_refreshes_itself_and_pauses_when_hidden(live: Live) -> None:
    """A new checkout appears without a reload; a hidden tab stops polling and resumes when shown."""
    page = await live.page()
    polls: list[str] = []
    page.on(
        "request",
        lambda request: polls.append(request.url) if "/ui/fragments/list" in request.url else None,
    )
    await page.goto(f"{live.url}/ui")
    await page.evaluate("document.getElementById('live').dataset.poll = '200'")

    placed = await live.place("c-new", name="Newly Placed")
    await expect(page.locator(f'tr[data-id="{placed["id"]}"]')).to_be_visible(timeout=TIMEOUT_MS)
    await expect(page.locator("#live-status")).to_contain_text("Live · updated")

    await page.evaluate(
        "Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    await expect(page.locator("#live-status")).to_have_text("Paused while this tab is hidden")
    await anyio.sleep(0.5)  # a poll already under way may still land
    before = len(polls)
    await anyio.sleep(1.5)
    assert len(polls) == before
    await page.evaluate(
        "Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    await expect(page.locator("#live-status")).to_contain_text("Live · updated")
    assert len(polls) > before
    no_trouble(live)


async def test_the_docs_render_post_checkouts_offline(live: Live) -> None:
    """/docs renders Swagger UI from the orchestrator itself, with POST /checkouts listed."""
    page = await live.page()

    await page.goto(f"{live.url}/docs")
    operation = page.locator('.opblock-post .opblock-summary-path[data-path="/checkouts"]')
    await expect(operation).to_be_visible(timeout=TIMEOUT_MS)
    await expect(page.locator(".opblock-post").first).to_contain_text("POST")
    await shot(page, "10-docs")
    no_trouble(live)
