"""What the pieces of one checkout's hot path cost, each against what it replaced, in one process.

``python -m bench.experiments.hot_path [--n 3000]``

CPU of this process (``time.process_time``) per operation, microseconds, for:

- the checkout row ``POST /checkouts`` records: ``Checkout(**values)`` (SQLModel validates every
  field) against ``records.new_checkout`` (a plain record, no validation);
- one step attempt that succeeds at once under the retry policy: stamina's loop entered for it
  against ``RetryPolicy.attempts`` (the first attempt outside the loop);
- the answer's view of a completed checkout: ``views.to_public`` with the customer validated again
  (the contract's ``Customer``, an email check) against the recorded one (``CustomerRecorded``);
- one fenced journal write (a step's update) on a SQLite file: in the database's worker thread
  against on the event loop (``servicekit.db.database``). A checkout that completes at once was eleven journal
  transactions (insert, load, eight fenced writes, the answer's read) and is six now (insert,
  four fenced writes, the answer's read).

Every figure is a ratio's numerator and denominator from the same run; the machine's speed
varies, so compare within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import stamina

from bench import emit
from orchestrator import api, views
from orchestrator.journal.journal import Journal
from orchestrator.journal.records import StepRecord, Transition, new_checkout, utcnow
from orchestrator.migrations import HISTORY
from orchestrator.models import Checkout
from orchestrator.saga.retry import RetryPolicy
from orchestrator.schemas import CHECKOUT_EXAMPLE, CheckoutCreate, Customer
from orchestrator.settings import Settings
from servicekit.db.database import Database, SqliteDatabase
from servicekit.migrations import upgrade


def per_op_us(n: int, operation: Callable[[], Any]) -> float:
    operation()
    started = time.process_time()
    for _ in range(n):
        operation()
    return (time.process_time() - started) / n * 1e6


async def per_op_async_us(n: int, operation: Callable[[], Awaitable[Any]]) -> float:
    await operation()
    started = time.process_time()
    for _ in range(n):
        await operation()
    return (time.process_time() - started) / n * 1e6


def row_values() -> dict[str, Any]:
    body = CheckoutCreate.model_validate(CHECKOUT_EXAMPLE)
    row = api._new_checkout(body, Settings(), None, "")
    return {name: getattr(row, name) for name in ("customer_id", "customer", "items")} | {
        "currency": "USD",
        "total_cents": 3998,
        "points": 39,
        "step_order": "warehouse,rewards,email",
        "deadline_at": time.time() + 60,
    }


async def stamina_first_success() -> None:
    async for attempt in stamina.retry_context(
        on=Exception, attempts=5, timeout=60, wait_initial=0.2, wait_max=10, wait_jitter=0.2
    ):
        with attempt:
            return


async def policy_first_success(policy: RetryPolicy) -> None:
    async for attempt in policy.attempts():
        with attempt:
            return


def completed_view(validate_customer: bool) -> Callable[[], Any]:
    """The answer's view of a completed checkout; ``validate_customer``: plus the validation of
    the recorded customer that the view's schema used to make (``Customer``, with its email)."""
    checkout = new_checkout(**row_values())
    checkout.status = "completed"
    now = utcnow()
    result = json.dumps({"id": "8801a88d-ee5b-4061-9ef1-f3864f30092c"})
    steps = [
        StepRecord(
            None, checkout.id, name, position, "succeeded", 1, 201, result, None, now, now, None
        )
        for position, name in enumerate(("warehouse", "rewards", "email"))
    ]
    customer = json.loads(checkout.customer)
    if validate_customer:
        return lambda: (views.to_public(checkout, steps), Customer.model_validate(customer))
    return lambda: views.to_public(checkout, steps)


async def journal_writes(n: int) -> dict[str, float]:
    """One fenced step update per call, in the thread (the database held busy) and on the loop."""
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'journal.db'}"
        await asyncio.to_thread(upgrade, url, HISTORY)
        database = Database.open(url)
        assert isinstance(database, SqliteDatabase)
        try:
            journal = Journal(database, owner="bench", lease_ttl_s=30)
            checkout = new_checkout(**row_values())
            await journal.create(checkout, ["warehouse", "rewards", "email"])
            attempts = iter(range(1, 10 * n))

            async def write() -> None:
                step = Transition.of_step("warehouse", attempts=next(attempts))
                await journal.commit(checkout.id, 1, step)

            on_loop = await per_op_async_us(n, write)
            in_loop = database._on_loop
            database._on_loop = lambda _work, _kind: (False, None)  # type: ignore[method-assign,assignment,return-value]
            in_thread = await per_op_async_us(n, write)
            database._on_loop = in_loop  # type: ignore[method-assign]
        finally:
            await database.close()
    return {"thread": in_thread, "loop": on_loop}


async def main(n: int) -> None:
    values = row_values()
    emit(
        f"checkout row, Checkout(**values)        {per_op_us(n, lambda: Checkout(**values)):8.1f} µs"
    )
    emit(
        f"checkout row, records.new_checkout(...) {per_op_us(n, lambda: new_checkout(**values)):8.1f} µs"
    )
    policy = RetryPolicy(5, 60, 0.2, 10, 0.2)
    stamina_us = await per_op_async_us(n, stamina_first_success)
    policy_us = await per_op_async_us(n, lambda: policy_first_success(policy))
    emit(f"step attempt, stamina's loop            {stamina_us:8.1f} µs")
    emit(f"step attempt, RetryPolicy.attempts      {policy_us:8.1f} µs")
    emit(f"answer view, customer validated again   {per_op_us(n, completed_view(True)):8.1f} µs")
    emit(f"answer view, views.to_public            {per_op_us(n, completed_view(False)):8.1f} µs")
    writes = await journal_writes(n)
    emit(f"journal write, in the worker thread     {writes['thread']:8.1f} µs")
    emit(f"journal write, on the event loop        {writes['loop']:8.1f} µs")


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000)
    asyncio.run(main(parser.parse_args().n))


if __name__ == "__main__":
    run()
