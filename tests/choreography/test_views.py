"""A choreographed checkout as the API and the dashboard show it: the same view as an orchestrated
one, a filter by coordination, and a checkout stuck past its deadline flagged with its last event."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import BrokerUnderTest
from tests.observability.conftest import metric
from tests.suite import checkout_body, running_suite
from tests.support import step
from tests.ui.pages import Page

pytestmark = pytest.mark.anyio


async def test_the_dashboard_filters_by_coordination_and_says_who_drove_a_checkout(
    database_url: Any, broker: BrokerUnderTest
) -> None:
    async with running_suite(database_url, everywhere=broker.settings) as suite:
        await suite.stock("SKU-001", 10)
        placed = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()

        listed = Page((await suite.orchestrator.get("/ui?coordination=choreography")).text)
        assert listed.row_ids() == [placed["id"]]
        assert "Only choreography." in listed.text
        current = [a["href"] for a in listed.attrs("a", class_="mode", aria_current="page")]
        assert current == ["ui?coordination=choreography"]
        empty = Page((await suite.orchestrator.get("/ui?coordination=orchestration")).text)
        assert empty.row_ids() == []
        # The status links keep the coordination filter.
        assert (
            empty.link(data_status="completed") == "ui?status=completed&coordination=orchestration"
        )

        detail = Page((await suite.orchestrator.get(f"/ui/checkouts/{placed['id']}")).text)
        assert "choreography (the services reacted to each other's events)" in detail.text
        assert not detail.attrs("button", data_action="retry")


async def test_a_checkout_with_no_terminal_event_by_its_deadline_is_flagged_stuck(
    database_url: Any, broker: BrokerUnderTest
) -> None:
    """The rewards service is not running (its queue fills, nobody consumes it): past the
    deadline the checkout says it is stuck, and which event it saw last."""
    async with running_suite(
        database_url,
        everywhere=broker.settings,
        # Rewards serves HTTP but consumes no event, as if its consumer were down.
        only={"rewards": {"coordination": "orchestration"}},
        checkout_deadline_s=0.5,
        checkout_sync_deadline_s=1.0,
    ) as suite:
        await suite.stock("SKU-001", 10)
        response = await suite.orchestrator.post("/checkouts", json=checkout_body())
        assert response.status_code == 202, response.text
        checkout = (await suite.orchestrator.get(response.headers["Location"])).json()
        assert checkout["status"] == "running"
        assert step(checkout, "warehouse")["status"] == "succeeded"
        assert step(checkout, "rewards")["status"] == "running"
        waiting = checkout["waiting"]
        assert waiting["stuck"] is True
        assert waiting["step"] == "rewards"
        assert waiting["last_event"]["type"] == "step.succeeded"
        assert waiting["last_event"]["source"] == "warehouse"
        assert waiting["reason"].startswith("stuck: no terminal event by its deadline")
        assert waiting["cancellable"] is False


async def test_the_saga_metrics_count_choreographed_checkouts_as_orchestrated_ones(
    database_url: Any, broker: BrokerUnderTest
) -> None:
    async with running_suite(
        database_url, everywhere=broker.settings, checkout_steps="rewards,warehouse,email"
    ) as suite:
        await suite.stock("SKU-001", 2)
        for _ in range(2):  # the first completes, the second is sold out: points reversed
            await suite.orchestrator.post("/checkouts", json=checkout_body())
        text = (await suite.orchestrator.get("/metrics")).text
    assert metric(text, "checkout_finished_total", status="completed") == 1
    assert metric(text, "checkout_finished_total", status="failed") == 1
    assert metric(text, "step_compensations_total", step="rewards") == 1
    assert metric(text, "step_duration_seconds_count", step="warehouse", outcome="refused") == 1
    assert metric(text, "step_duration_seconds_count", step="email", outcome="succeeded") == 1
    assert (
        metric(
            text,
            "checkout_events_consumed_total",
            consumer="journal",
            type="step.refused",
            outcome="applied",
        )
        == 1
    )
