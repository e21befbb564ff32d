"""Reading checkouts: by id, filtered lists with keyset pagination, and asynchronous mode."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from orchestrator.statuses import UNFINISHED_STATUSES
from tests.faults import faulty_suite
from tests.suite import Suite, checkout_body
from tests.support import step, wait_finished

pytestmark = pytest.mark.anyio


async def test_respond_async_answers_202_then_completes(database_url: Any) -> None:
    """Prefer: respond-async answers 202 before the saga ends; the saga still runs to completion.

    The warehouse is held for a second, so the answer, due at once, cannot see the saga ended.
    """
    async with faulty_suite(database_url) as (suite, faults):
        faults["warehouse"].add("POST", "/reservations", "delay", delay=1.0)
        with anyio.fail_after(0.9):
            response = await suite.orchestrator.post(
                "/checkouts", json=checkout_body(), headers={"Prefer": "respond-async"}
            )

        assert response.status_code == 202
        assert response.headers["preference-applied"] == "respond-async"
        answered = response.json()
        assert answered["status"] in UNFINISHED_STATUSES
        assert {s["status"] for s in answered["steps"]} <= {"pending", "running"}
        assert step(answered, "rewards")["status"] == step(answered, "email")["status"] == "pending"
        await wait_finished(suite.orchestrator, response.headers["location"], "completed")
        assert await suite.balance("c-42") == 39
        assert len(await suite.emails("ada@example.com")) == 1


async def test_past_the_sync_deadline_the_answer_is_202(database_url: Any) -> None:
    """A checkout not finished within CHECKOUT_SYNC_DEADLINE_S is answered 202 and finishes later.

    The email service is held for a second, so the saga cannot end within the deadline however
    fast the rest of it runs.
    """
    async with faulty_suite(database_url, checkout_sync_deadline_s=0.2) as (suite, faults):
        faults["email"].add("POST", "/emails", "delay", delay=1.0)
        response = await suite.orchestrator.post("/checkouts", json=checkout_body())

        assert response.status_code == 202
        answered = response.json()
        assert answered["status"] == "running"
        steps = {step["name"]: step["status"] for step in answered["steps"]}
        assert steps == {"warehouse": "succeeded", "rewards": "succeeded", "email": "running"}
        await wait_finished(suite.orchestrator, response.headers["location"], "completed")


async def test_unknown_or_malformed_id_is_404(suite: Suite) -> None:
    """Reading a checkout that does not exist, or an id that is not a UUID, is a 404 problem."""
    for path in ("/checkouts/3f0c2a9e-8a1c-4c7a-9a55-2f1d5f2b7c11", "/checkouts/not-a-uuid"):
        response = await suite.orchestrator.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"


async def test_pagination_returns_every_checkout_once_while_new_ones_arrive(suite: Suite) -> None:
    """Walking the cursors yields each existing checkout exactly once, newest first, despite new ones."""
    created = []
    for n in range(7):
        body = checkout_body(
            customer_id=f"c-{n}", items=[{"sku": "SKU-001", "quantity": 1, "unit_price": "1"}]
        )
        created.append((await suite.orchestrator.post("/checkouts", json=body)).json()["id"])

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await suite.orchestrator.get("/checkouts", params=params)).json()
        seen += [c["id"] for c in page["items"]]
        # A checkout created mid-walk is newer than the cursor, so it never disturbs later pages.
        await suite.orchestrator.post("/checkouts", json=checkout_body(customer_id="late"))
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen[-7:] == list(reversed(created))
    assert len(seen) == len(set(seen))
    assert set(created) <= set(seen)


async def test_filters_by_status_and_customer(suite: Suite) -> None:
    """status= and customer_id= narrow the list."""
    await suite.orchestrator.post("/checkouts", json=checkout_body(customer_id="a"))
    soldout = [{"sku": "SKU-SOLDOUT", "quantity": 1, "unit_price": "1"}]
    failed = (
        await suite.orchestrator.post(
            "/checkouts", json=checkout_body(customer_id="b", items=soldout)
        )
    ).json()

    by_status = (await suite.orchestrator.get("/checkouts", params={"status": "failed"})).json()
    by_customer = (await suite.orchestrator.get("/checkouts", params={"customer_id": "a"})).json()

    assert [c["id"] for c in by_status["items"]] == [failed["id"]]
    assert [c["customer"]["id"] for c in by_customer["items"]] == ["a"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "lost"}, "status"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "WyJ4Il0"}, "cursor"),
    ],
)
async def test_bad_list_parameters_are_422(
    suite: Suite, params: dict[str, Any], field: str
) -> None:
    """A bad limit, status or cursor is a 422 problem naming the parameter."""
    response = await suite.orchestrator.get("/checkouts", params=params)

    assert response.status_code == 422
    assert ["query", field] in [e["loc"] for e in response.json()["errors"]]


@pytest.mark.parametrize(
    ("faults_of", "settings", "status"),
    [
        pytest.param([], {}, "completed", id="completed"),
        pytest.param([("warehouse", "POST", "/reservations", 503)], {}, "completed", id="retried"),
        pytest.param(
            [("rewards", "POST", "/accounts/*/transactions", 422)], {}, "failed", id="failed"
        ),
        pytest.param(
            [("warehouse", "POST", "/reservations", 503)],
            {"step_max_attempts": 1, "resume_delay_s": 600},
            "running",
            id="parked",
        ),
    ],
)
async def test_the_answer_to_a_placed_checkout_is_what_reading_it_gives(
    database_url: Any, faults_of: list[tuple[str, str, str, int]], settings: Any, status: str
) -> None:
    """The POST's answer, built from the runner's rows rather than read back, equals a GET of it."""
    async with faulty_suite(database_url, **settings) as (suite, faults):
        for service, method, path, fault_status in faults_of:
            faults[service].add(method, path, "status", status=fault_status)
        placed = await suite.orchestrator.post("/checkouts", json=checkout_body())
        read = await suite.orchestrator.get(placed.headers["location"])

    answered = placed.json()
    assert answered["status"] == status
    assert placed.status_code == (202 if status == "running" else 201)
    assert answered == read.json()
    assert all(step["status"] != "pending" or status == "running" for step in answered["steps"])
