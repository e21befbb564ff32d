"""The timeline's geometry and the texts that explain a checkout, from journal values."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.schemas import CheckoutPublic
from orchestrator.ui import present

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def step(name: str, status: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "status": status,
        "kind": "compensatable",
        "group": ("warehouse", "rewards", "email").index(name),
        "attempts": 1,
        "started_at": None,
        "finished_at": None,
        "http_status": None,
        "result": None,
        "error": None,
        "compensated_at": None,
    } | fields


def checkout(status: str, steps: list[dict[str, Any]], **fields: Any) -> CheckoutPublic:
    return CheckoutPublic.model_validate(
        {
            "id": uuid.uuid4(),
            "status": status,
            "customer": {"id": "c-1", "email": "a@example.com", "name": "Ada"},
            "items": [{"sku": "SKU-001", "quantity": 1, "unit_price": "1.00"}],
            "currency": "USD",
            "total": "1.00",
            "points": 0,
            "steps": steps,
            "error": None,
            "waiting": None,
            "created_at": T0,
            "updated_at": at(200),
        }
        | fields
    )


REFUSED = {"kind": "StepRefusedError", "detail": "injected fault", "http_status": 422}


def test_bars_are_drawn_to_scale_with_the_compensation_marked() -> None:
    """Bars span started_at→finished_at in percent of the checkout's time; compensation is a marker."""
    failed = checkout(
        "failed",
        [
            step(
                "warehouse",
                "compensated",
                started_at=at(0),
                finished_at=at(50),
                compensated_at=at(150),
            ),
            step(
                "rewards",
                "failed",
                started_at=at(60),
                finished_at=at(100),
                attempts=4,
                error=REFUSED,
            ),
            step("email", "skipped", attempts=0, finished_at=at(120)),
        ],
        error={"step": "rewards"} | REFUSED,
    )

    drawn = present.timeline(failed)
    warehouse, rewards, email = drawn.lanes

    assert warehouse.bar == present.Span(0.0, 25.0)
    assert warehouse.compensation == 75.0
    assert warehouse.link == present.Span(25.0, 50.0)
    assert rewards.bar == present.Span(30.0, 20.0)
    assert rewards.attempt_ticks == [25.0, 50.0, 75.0]  # four attempts, split evenly
    assert "error: injected fault (HTTP 422)" in rewards.hover
    assert email.bar is None
    assert email.point == 60.0
    assert drawn.now is None
    assert drawn.even_split
    assert drawn.total == "200 ms"
    assert [label for _, label in drawn.ticks] == [
        "+0 ms",
        "+50 ms",
        "+100 ms",
        "+150 ms",
        "+200 ms",
    ]
    assert present.reason(failed) == "rewards failed: injected fault (HTTP 422)"
    assert present.compensated_steps(failed) == ["warehouse"]


def test_a_parked_step_is_a_bar_then_a_wait_until_now() -> None:
    """A parked checkout's step ends when it was parked and waits from there until now."""
    waiting = {
        "reason": "parked after transient failures of step rewards; resumes at next_attempt_at",
        "step": "rewards",
        "attempts": 1,
        "last_error": None,
        "next_attempt_at": at(3_600_000),
        "deadline_at": at(900_000),
        "lease_owner": None,
        "lease_expires_at": None,
        "cancel_requested": False,
        "cancellable": True,
    }
    parked = checkout(
        "running",
        [
            step("warehouse", "succeeded", started_at=at(0), finished_at=at(100)),
            step("rewards", "running", started_at=at(100), error={"detail": "ConnectError"}),
            step("email", "pending", attempts=0),
        ],
        waiting=waiting,
        updated_at=at(200),
    )

    drawn = present.timeline(parked, now=at(1000))
    _, rewards, email = drawn.lanes

    assert rewards.bar == present.Span(10.0, 10.0)
    assert rewards.wait == present.Span(20.0, 80.0)
    assert rewards.took == "100 ms, then parked"
    assert email.bar is None
    assert email.point is None
    assert drawn.now == 100.0
    assert present.reason(parked) == (
        "parked after transient failures of step rewards; resumes at 2026-01-01 13:00:00.000 UTC"
    )


def test_durations_and_axis_labels_use_a_fitting_unit() -> None:
    """Durations read as ms, s, min or h; an axis of hours is labelled in hours."""
    assert [present.duration(s) for s in (0.0004, 0.024, 1.25, 192, 7500)] == [
        "0.4 ms",
        "24 ms",
        "1.2 s",
        "3 min 12 s",
        "2 h 05 min",
    ]
    long = checkout(
        "completed",
        [step("warehouse", "succeeded", started_at=at(0), finished_at=at(3 * 3_600_000))],
        updated_at=at(3 * 3_600_000),
    )
    assert [label for _, label in present.timeline(long).ticks] == [
        "+0 h",
        "+0.5 h",
        "+1 h",
        "+1.5 h",
        "+2 h",
        "+2.5 h",
        "+3 h",
    ]


def test_a_cancelled_checkout_says_so() -> None:
    """An operator's cancel reads as such, not as a step's failure."""
    cancelled = checkout(
        "failed", [], error={"kind": "cancelled", "detail": "Cancelled by an operator."}
    )

    assert present.reason(cancelled) == "Cancelled: Cancelled by an operator."
