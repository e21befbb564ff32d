"""The dashboard's plumbing: relative links under any prefix, assets, fragments, OpenAPI."""

from __future__ import annotations

import re

import pytest

from tests.ui.conftest import FaultySuite
from tests.ui.pages import Page, body

pytestmark = pytest.mark.anyio


async def test_every_link_is_relative_to_a_base_that_points_at_the_app_root(
    ui: FaultySuite,
) -> None:
    """Pages set <base href> relative to their own URL and no link, asset or action is absolute."""
    checkout = (await ui.orchestrator.post("/checkouts", json=body("c-1"))).json()
    ui.faults["rewards"].add("POST", "/accounts/*/transactions", "refuse", times=10)
    parked = (await ui.orchestrator.post("/checkouts", json=body("c-2"))).json()
    pages = {
        "/ui": "./",
        "/ui/": "../",
        "/ui?status=failed&q=c-1": "./",
        f"/ui/checkouts/{checkout['id']}": "../../",
        f"/ui/checkouts/{parked['id']}": "../../",
        "/ui/checkouts/unknown": "../../",
    }
    for url, base in pages.items():
        response = await ui.orchestrator.get(url)
        parsed = Page(response.text)
        assert [a["href"] for a in parsed.attrs("base")] == [base], url
        targets = [
            a.get(k, "")
            for _, a in parsed.elements
            for k in ("href", "src", "action", "data-url", "data-src")
        ]
        absolute = [t for t in targets if re.match(r"^(/|[a-z]+:)", t) and t != "data:,"]
        assert absolute == [], (url, absolute)
    assert (
        Page((await ui.orchestrator.get("/ui")).text)
        .attrs("link", rel="stylesheet")[0]["href"]
        .startswith("ui/static/ui.css?v=")
    )


async def test_the_static_assets_are_served_with_validators(ui: FaultySuite) -> None:
    """ui.css and ui.js come from the package with an ETag (304 on a match); other names are 404."""
    css = await ui.orchestrator.get("/ui/static/ui.css")
    js = await ui.orchestrator.get("/ui/static/ui.js")
    again = await ui.orchestrator.get(
        "/ui/static/ui.js", headers={"If-None-Match": js.headers["etag"]}
    )

    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    assert "visibilitychange" in js.text
    assert again.status_code == 304
    for name in ("../main.py", "..%2Fqueries.py", "missing.js", "ui.css.map"):
        assert (await ui.orchestrator.get(f"/ui/static/{name}")).status_code == 404


async def test_the_list_fragment_is_the_live_part_of_the_page(ui: FaultySuite) -> None:
    """The page polls a fragment with the same filter; it holds the counts, rows and pager only."""
    failed = (await ui.orchestrator.post("/checkouts", json=body("c-1", sku="SKU-SOLDOUT"))).json()
    await ui.orchestrator.post("/checkouts", json=body("c-1"))

    listed = Page((await ui.orchestrator.get("/ui?status=failed&q=c-1")).text)
    source = listed.attrs("div", id="live")[0]["data-src"]
    fragment = await ui.orchestrator.get("/" + source)

    assert source == "ui/fragments/list?status=failed&q=c-1"
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert Page(fragment.text).row_ids() == [failed["id"]]


async def test_the_dashboard_is_not_in_the_openapi_schema(ui: FaultySuite) -> None:
    """The /ui routes are pages for people, left out of the API's schema and /docs."""
    paths = (await ui.orchestrator.get("/openapi.json")).json()["paths"]

    assert "/checkouts" in paths
    assert [p for p in paths if p.startswith("/ui")] == []
