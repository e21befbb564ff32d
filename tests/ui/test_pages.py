"""The dashboard in-process: list, filters, search, counts, pages, a checkout's page, escaping."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest

from orchestrator.ui.present import KIND_HINTS
from tests.faults import faulty_suite
from tests.ui.conftest import FaultySuite
from tests.ui.pages import Page, body

pytestmark = pytest.mark.anyio


async def place(ui: FaultySuite, customer_id: str, **kwargs: object) -> dict[str, object]:
    response = await ui.orchestrator.post("/checkouts", json=body(customer_id, **kwargs))  # type: ignore[arg-type]
    assert response.status_code in (201, 202), response.text
    return response.json()  # type: ignore[no-any-return]


async def page(ui: FaultySuite, url: str, status: int = 200) -> Page:
    response = await ui.orchestrator.get(url)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    return Page(response.text)


def counts(parsed: Page) -> dict[str, int]:
    found = re.findall(r"(all|pending|running|completed|failed) ([\d,]+)", parsed.text)
    return {name: int(number.replace(",", "")) for name, number in found}


async def test_the_list_shows_every_checkout_newest_first_with_why_it_failed(
    ui: FaultySuite,
) -> None:
    """GET /ui lists checkouts newest first with customer, total, status, steps and the failure reason."""
    first = await place(ui, "c-1")
    second = await place(ui, "c-2", member=False)
    failed = await place(ui, "c-3", sku="SKU-SOLDOUT")

    listed = await page(ui, "/ui")

    assert listed.row_ids() == [failed["id"], second["id"], first["id"]]
    assert "Not enough stock for sku SKU-SOLDOUT." in listed.text
    assert "warehouse failed" in listed.text
    assert "rewards skipped" in listed.text
    assert "10.00 USD" in listed.text
    rows = {a["data-id"]: a["data-status"] for a in listed.attrs("tr", class_="row")}
    assert rows == {first["id"]: "completed", second["id"]: "completed", failed["id"]: "failed"}
    assert listed.attrs("a", href=f"ui/checkouts/{failed['id']}")


async def test_counts_per_status_cover_every_checkout(ui: FaultySuite) -> None:
    """The status counts come from the whole journal, whatever the filter or page shown."""
    for customer in ("c-1", "c-2"):
        await place(ui, customer)
    await place(ui, "c-3", sku="SKU-SOLDOUT")

    shown = counts(await page(ui, "/ui?status=failed&limit=1"))

    assert shown == {"all": 3, "pending": 0, "running": 0, "completed": 2, "failed": 1}


async def test_the_status_filter_keeps_only_that_status(ui: FaultySuite) -> None:
    """?status=failed lists only failed checkouts, and its link is marked as the current one."""
    await place(ui, "c-1")
    failed = await place(ui, "c-2", sku="SKU-SOLDOUT")

    listed = await page(ui, "/ui?status=failed")

    assert listed.row_ids() == [failed["id"]]
    current = listed.attrs("a", class_="count", aria_current="page")
    assert [a["data-status"] for a in current] == ["failed"]
    assert "Failed checkouts, newest first." in listed.text


async def test_an_unknown_status_filter_lists_everything(ui: FaultySuite) -> None:
    """A status that does not exist is ignored instead of answering an error page."""
    placed = await place(ui, "c-1")

    assert (await page(ui, "/ui?status=nonsense")).row_ids() == [placed["id"]]


async def test_search_by_checkout_id_finds_that_checkout(ui: FaultySuite) -> None:
    """Searching a checkout's id shows that checkout alone (a primary-key lookup)."""
    wanted = await place(ui, "c-1")
    await place(ui, "c-2")

    listed = await page(ui, f"/ui?q={wanted['id']}")

    assert listed.row_ids() == [wanted["id"]]
    assert "The checkout with id" in listed.text


async def test_search_by_customer_id_lists_that_customers_checkouts(ui: FaultySuite) -> None:
    """Searching a customer id lists that customer's checkouts, newest first, with the filter too."""
    mine = [await place(ui, "c-mine") for _ in range(2)]
    failed = await place(ui, "c-mine", sku="SKU-SOLDOUT")
    await place(ui, "c-other")

    listed = await page(ui, "/ui?q=%20c-mine%20")
    only_failed = await page(ui, "/ui?q=c-mine&status=failed")

    assert listed.row_ids() == [failed["id"], mine[1]["id"], mine[0]["id"]]
    assert only_failed.row_ids() == [failed["id"]]
    assert listed.attrs("input", name="q", value="c-mine")


async def test_a_search_that_matches_nothing_says_so(ui: FaultySuite) -> None:
    """An unknown id or customer gives an empty list with a way back to every checkout."""
    await place(ui, "c-1")

    listed = await page(ui, f"/ui?q={uuid.uuid4()}")

    assert listed.row_ids() == []
    assert "No checkout for" in listed.text
    assert listed.attrs("a", href="ui")


async def test_older_links_walk_every_checkout_once(ui: FaultySuite) -> None:
    """Following the keyset cursor links (“Older”) visits every checkout once, newest first."""
    placed = [(await place(ui, f"c-{n}"))["id"] for n in range(5)]
    placed.reverse()
    seen: list[str] = []
    url = "/ui?limit=2"
    pages = 0
    while url:
        listed = await page(ui, url)
        seen += listed.row_ids()
        pages += 1
        older = listed.attrs("a", rel="next")
        if not older:
            break
        assert older[0]["href"].startswith("ui?")
        assert parse_qs(urlsplit(older[0]["href"]).query)["limit"] == ["2"]
        assert listed.attrs("a", href="ui?limit=2") or pages == 1  # “Newest” from page two on
        url = "/" + older[0]["href"]

    assert seen == placed
    assert pages == 3


async def test_a_cursor_not_handed_out_is_a_400_page(ui: FaultySuite) -> None:
    """A tampered cursor answers an HTML page that says so, with a link to the newest checkouts."""
    listed = await page(ui, "/ui?cursor=bm90LWEtY3Vyc29y", status=400)

    assert "This page link is not valid" in listed.text
    assert listed.attrs("a", href="ui")


async def test_a_failed_checkout_page_shows_the_reason_and_compensated_steps(
    ui: FaultySuite,
) -> None:
    """A checkout refused at rewards shows why, the warehouse step compensated, and no actions."""
    ui.faults["rewards"].add("POST", "/accounts/*/transactions", "status", status=422)
    checkout = await place(ui, "c-1")
    assert checkout["status"] == "failed"

    detail = await page(ui, f"/ui/checkouts/{checkout['id']}")

    assert "Failed. rewards failed: injected fault (HTTP 422)" in detail.text
    assert "Compensated (undone in reverse order): warehouse." in detail.text
    lanes = {
        a["data-step"]: a["data-step-status"]
        for a in detail.attrs("div", class_="tl-row")
        if "data-step" in a
    }
    assert lanes == {"warehouse": "compensated", "rewards": "failed", "email": "skipped"}
    assert len(detail.attrs("div", class_="tl-comp")) == 1
    bars = {a["class"].split()[1]: a["title"] for a in detail.attrs("div", class_="tl-bar")}
    assert set(bars) == {"step-compensated", "step-failed"}
    assert "error: injected fault (HTTP 422)" in bars["step-failed"]  # on hover
    assert "rewards (failed, 1 attempt): injected fault (HTTP 422)" in detail.text  # and as text
    assert "↺ compensated" in detail.text
    assert "released" in detail.text  # the warehouse's answer to the compensation
    assert not detail.attrs("button")
    assert (await ui.suite.inventory("SKU-001"))["reserved"] == 0


async def test_a_parked_checkout_shows_why_it_waits_and_its_actions(ui: FaultySuite) -> None:
    """A parked checkout shows the waiting reason in the list and Retry and Cancel on its page."""
    ui.faults["rewards"].add("POST", "/accounts/*/transactions", "refuse", times=10)
    checkout = await place(ui, "c-1")
    assert checkout["status"] == "running"

    listed = await page(ui, "/ui")
    detail = await page(ui, f"/ui/checkouts/{checkout['id']}")

    assert "parked after transient failures of step rewards" in listed.text
    assert "next_attempt_at" not in listed.text  # replaced by the time itself
    buttons = {a["data-action"]: a["data-url"] for a in detail.attrs("button")}
    assert buttons == {
        "retry": f"checkouts/{checkout['id']}/retry",
        "cancel": f"checkouts/{checkout['id']}/cancel",
    }
    assert "ConnectError" in detail.text
    assert detail.attrs("div", class_="tl-wait")
    assert detail.attrs("div", class_="live-body", data_final="false")


async def test_after_a_cancel_the_page_shows_the_compensation_and_no_actions(
    ui: FaultySuite,
) -> None:
    """Cancelling a parked checkout through the API ends it failed; its page shows why, without buttons."""
    ui.faults["rewards"].add("POST", "/accounts/*/transactions", "refuse", times=10)
    checkout = await place(ui, "c-1")
    assert (await ui.orchestrator.post(f"/checkouts/{checkout['id']}/cancel")).status_code in (
        200,
        202,
    )

    with anyio.fail_after(10):
        while True:
            fragment = await page(ui, f"/ui/checkouts/{checkout['id']}/fragment")
            if fragment.attrs("div", class_="live-body", data_final="true"):
                break
            await anyio.sleep(0.02)

    assert "Cancelled: Cancelled by an operator." in fragment.text
    assert "Compensated (undone in reverse order): warehouse." in fragment.text
    assert not fragment.attrs("button")
    assert "<html" not in fragment.source


async def test_customer_text_is_escaped(ui: FaultySuite) -> None:
    """A customer named <script>…</script> is shown as text on the list and on its page."""
    evil = "<script>alert('x')</script>"
    checkout = await place(ui, 'c-<i>"1"&', name=evil)
    assert checkout["status"] == "completed"

    for url in ("/ui", f"/ui/checkouts/{checkout['id']}", "/ui?q=c-%3Ci%3E%221%22%26"):
        response = await ui.orchestrator.get(url)
        assert evil not in response.text
        assert "<i>" not in response.text
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in response.text
        assert "c-&lt;i&gt;&#34;1&#34;&amp;" in response.text
        parsed = Page(response.text)
        assert evil in parsed.text
        assert parsed.row_ids() == [checkout["id"]] or "/checkouts/" in url


@pytest.mark.parametrize("checkout_id", ["not-a-uuid", str(uuid.uuid4())])
async def test_an_unknown_checkout_is_a_404_page(ui: FaultySuite, checkout_id: str) -> None:
    """An unknown or malformed id answers an HTML 404 page naming it, with a search form."""
    missing = await page(ui, f"/ui/checkouts/{checkout_id}", status=404)
    fragment = await ui.orchestrator.get(f"/ui/checkouts/{checkout_id}/fragment")

    assert f"No checkout has the id {checkout_id}." in missing.text
    assert missing.attrs("form", action="ui")
    assert fragment.status_code == 404


async def test_steps_run_at_once_show_their_kinds_and_overlapping_bars(
    database_url: Callable[[str], str],
) -> None:
    """`warehouse,rewards+email`: the page names each step's kind and group and draws the two
    steps of the second group over the same stretch of time."""
    async with faulty_suite(database_url, checkout_steps="warehouse,rewards+email") as (
        suite,
        faults,
    ):
        faults["rewards"].add("POST", "/accounts/*/transactions", "delay", delay=0.3)
        faults["email"].add("POST", "/emails", "delay", delay=0.3)
        checkout = (await suite.orchestrator.post("/checkouts", json=body("c-1"))).json()
        assert checkout["status"] == "completed"
        response = await suite.orchestrator.get(f"/ui/checkouts/{checkout['id']}")
    detail = Page(response.text)

    labels = [
        (a["data-step"], a.get("title"))
        for a in detail.attrs("div", class_="tl-row")
        if "data-step" in a
    ]
    assert [name for name, _ in labels] == ["warehouse", "rewards", "email"]
    kinds = list(detail.attrs("span", class_="kind muted"))
    assert [k["title"] for k in kinds] == [
        KIND_HINTS["pivot"],
        KIND_HINTS["retriable"],
        KIND_HINTS["retriable"],
    ]
    assert "pivot" in detail.text
    assert "retriable" in detail.text
    assert "warehouse → rewards + email ('+': at once)" in detail.text
    spans = {}
    for bar in detail.attrs("div", class_="tl-bar"):
        left, width = (float(v) for v in re.findall(r"([\d.]+)%", bar["style"]))
        spans[bar["title"].split(":")[0]] = (left, left + width)
    assert spans["rewards"][0] >= spans["warehouse"][1] - 0.5
    assert max(spans["rewards"][0], spans["email"][0]) < min(spans["rewards"][1], spans["email"][1])
