"""Many checkouts at once, inserted with SQLAlchemy Core in batches (for index and load checks).

The rows look like the saga's own: mostly completed, some failed at the warehouse (out of stock)
or at rewards (warehouse compensated), a few running. Running ones are leased to ``seed`` far into
the future, so no replica's recovery loop tries to drive them.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from orchestrator.main import create_app
from orchestrator.models import Checkout, Step
from orchestrator.settings import Settings
from servicekit.db.engines import create_sync_engine
from tests.support import running

STEPS = ("warehouse", "rewards", "email")
CUSTOMERS = 5000


def _rows(
    index: int, created: datetime, rng: random.Random
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    checkout_id = uuid.uuid4()
    roll = rng.random()
    status = "completed" if roll < 0.8 else "failed" if roll < 0.96 else "running"
    customer_id = f"c-{index % CUSTOMERS}"
    t = created
    steps: list[dict[str, Any]] = []
    error = None
    for position, name in enumerate(STEPS):
        step: dict[str, Any] = {
            "checkout_id": checkout_id,
            "name": name,
            "position": position,
            "status": "succeeded",
            "attempts": 1,
            "started_at": t + timedelta(milliseconds=5),
            "finished_at": t + timedelta(milliseconds=40),
            "http_status": 201,
            "error": None,
            "compensated_at": None,
        }
        t += timedelta(milliseconds=45)
        steps.append(step)
    if status == "failed" and roll < 0.9:
        # Out of stock: the warehouse refuses, nothing to compensate.
        steps[0] |= {"status": "failed", "http_status": 409}
        error = {
            "step": "warehouse",
            "kind": "StepRefusedError",
            "detail": "Not enough stock for sku SKU-SOLDOUT.",
            "http_status": 409,
        }
        steps[0]["error"] = json.dumps(error)
        for later in steps[1:]:
            later |= {"status": "skipped", "attempts": 0, "started_at": None, "http_status": None}
    elif status == "failed":
        # Refused by rewards: the reservation is released.
        error = {
            "step": "rewards",
            "kind": "StepRefusedError",
            "detail": "Refused.",
            "http_status": 422,
        }
        steps[0] |= {"status": "compensated", "compensated_at": t + timedelta(milliseconds=20)}
        steps[1] |= {"status": "failed", "http_status": 422, "error": json.dumps(error)}
        steps[2] |= {"status": "skipped", "attempts": 0, "started_at": None, "http_status": None}
    elif status == "running":
        steps[1] |= {"status": "running", "finished_at": None, "http_status": None}
        steps[2] |= {
            "status": "pending",
            "attempts": 0,
            "started_at": None,
            "finished_at": None,
            "http_status": None,
        }
    checkout = {
        "id": checkout_id,
        "status": status,
        "customer_id": customer_id,
        "customer": json.dumps(
            {
                "id": customer_id,
                "email": f"{customer_id}@example.com",
                "name": f"Customer {index}",
                "rewards_member": True,
            }
        ),
        "items": json.dumps([{"sku": "SKU-001", "quantity": 1, "unit_price": "19.99"}]),
        "currency": "USD",
        "total_cents": 1999,
        "points": 19,
        "step_order": ",".join(STEPS),
        "error": json.dumps(error) if error else None,
        "created_at": created,
        "updated_at": t,
        "lease_owner": "seed" if status == "running" else None,
        "lease_expires_at": time.time() + 10**8 if status == "running" else None,
        "lease_token": 1,
        "deadline_at": time.time() + 10**8,
        "past_pivot": status == "completed",
    }
    return checkout, steps


def seed(url: str, count: int, *, batch: int = 5000, seed_value: int = 5) -> None:
    """Insert ``count`` checkouts (three steps each), one a second back from now, in batches."""
    rng = random.Random(seed_value)
    engine = create_sync_engine(url)
    newest = datetime.now(UTC) - timedelta(minutes=1)
    for start in range(0, count, batch):
        checkouts: list[dict[str, Any]] = []
        steps: list[dict[str, Any]] = []
        for index in range(start, min(start + batch, count)):
            checkout, its_steps = _rows(index, newest - timedelta(seconds=count - index), rng)
            checkouts.append(checkout)
            steps += its_steps
        with engine.begin() as connection:
            connection.execute(insert(Checkout), checkouts)
            connection.execute(insert(Step), steps)
    engine.dispose()


async def seeded_database(url: str, count: int) -> None:
    """Make the orchestrator's schema (by starting it once) and store ``count`` checkouts in it.

    Nothing else runs meanwhile: an orchestrator's recovery pass waiting for SQLite's write lock
    while the seed holds it, then cancelled at shutdown, leaves aiosqlite's close task hanging and
    the event loop never closes (SQLAlchemy 2.1, aiosqlite 0.22).
    """
    async with running(create_app(Settings(database_url=url, recovery_interval_s=3600))):
        pass
    seed(url, count)
