"""What the saga and its journal cost per checkout, without HTTP: CPU µs in one process.

``python -m bench.experiments.saga_cost [--n 3000] [--url sqlite:///…|postgresql://…] [--statements]
[--concurrency 32 [--group-commit on|off|both]]``

Creates checkouts as ``POST /checkouts`` does (``api._new_checkout``, ``Journal.create``) and drives
each to completion with the real ``SagaRunner``, journal, retry policy and telemetry (metrics on),
one after another on uvloop, but with steps that answer at once instead of calling a service. So
the figure is the orchestrator's own bookkeeping per checkout: the five journal transactions,
the runner, the telemetry. ``--statements`` (SQLite) also times each SQL statement the journal
runs, by kind (INSERT, UPDATE, COMMIT; a transaction's BEGIN counts with its first statement), per
checkout. ``--profile`` prints cProfile's top
functions (its overhead inflates Python-heavy code: read proportions, not times).

``--concurrency C`` drives C checkouts at once (each step's call yields to the loop once, as a
real call does), each drive marked as a concurrent writer as the supervisor marks its sagas;
``--group-commit off`` leaves them unmarked, so no journal write waits to share a transaction,
and ``both`` alternates the two, three rounds each, in this one process: an A/B of the group
commit with the machine's noise shared by both.

The default database is a fresh SQLite file; ``--url`` takes a PostgreSQL database (its tables
are created by the migrations if missing).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import cProfile
import pstats
import tempfile
import time
from typing import Any

import uvloop
from prometheus_client import CollectorRegistry

from bench import emit
from orchestrator.api import _new_checkout
from orchestrator.journal.journal import Journal
from orchestrator.migrations import HISTORY
from orchestrator.saga.metrics import SagaMetrics
from orchestrator.saga.retry import RetryPolicy
from orchestrator.saga.runner import SagaRunner
from orchestrator.saga.steps import Compensation, Outcome, SagaContext
from orchestrator.saga.telemetry import SagaTelemetry
from orchestrator.schemas import CHECKOUT_EXAMPLE, CheckoutCreate
from orchestrator.settings import Settings
from servicekit.db.database import Database, SqliteDatabase
from servicekit.db.statements import SQL, SqliteTransaction
from servicekit.migrations import upgrade


class InstantStep:
    """A step whose call succeeds at once, shaped like the real ones."""

    def __init__(self, name: str, *, yields: bool = False) -> None:
        self.name = name
        self.yields = yields

    def applies(self, _ctx: SagaContext) -> bool:
        return True

    async def execute(self, _ctx: SagaContext) -> Outcome:
        if self.yields:  # other checkouts run meanwhile, as during a call
            await asyncio.sleep(0)
        return 201, {"id": "0" * 32, "status": "ok"}

    async def compensate(self, _ctx: SagaContext, _result: dict[str, Any] | None) -> Compensation:
        raise AssertionError("an instant step never fails")


def _timed_statements(times: collections.Counter[str]) -> Any:
    """Time each SQLite statement of the kit's transactions by its first word, and each COMMIT;
    returns the undo."""
    run, end = SqliteTransaction._run, SqliteTransaction.end

    def timed_run(transaction: SqliteTransaction, statement: SQL, params: Any) -> Any:
        started = time.perf_counter()
        try:
            return run(transaction, statement, params)
        finally:
            times[statement.sqlite.split()[0].upper()] += time.perf_counter() - started

    def timed_end(transaction: SqliteTransaction, *, commit: bool) -> None:
        started = time.perf_counter()
        try:
            end(transaction, commit=commit)
        finally:
            times["COMMIT" if commit else "ROLLBACK"] += time.perf_counter() - started

    SqliteTransaction._run = timed_run  # type: ignore[method-assign]
    SqliteTransaction.end = timed_end  # type: ignore[method-assign]

    def undo() -> None:
        SqliteTransaction._run = run  # type: ignore[method-assign]
        SqliteTransaction.end = end  # type: ignore[method-assign]

    return undo


async def main(args: argparse.Namespace) -> None:
    url = args.url or f"sqlite:///{tempfile.mkdtemp()}/saga-cost.db"
    upgrade(url, HISTORY)
    times: collections.Counter[str] = collections.Counter()
    undo = _timed_statements(times) if args.statements else (lambda: None)
    database = Database.open(url)
    settings = Settings(database_url=url)
    journal = Journal(database, owner="saga-cost", lease_ttl_s=30)
    concurrent = args.concurrency > 1
    steps = {name: InstantStep(name, yields=concurrent) for name in settings.step_order}
    policy = RetryPolicy(
        max_attempts=3, deadline_s=10, initial_delay_s=0.1, max_delay_s=1, jitter_s=0
    )
    telemetry = SagaTelemetry(SagaMetrics(CollectorRegistry()))
    runner = SagaRunner(journal, steps, policy, telemetry=telemetry)  # type: ignore[arg-type]
    body = CheckoutCreate.model_validate(CHECKOUT_EXAMPLE)

    async def one(group_commit: bool) -> None:
        checkout = _new_checkout(body, settings, None, "")
        # As ``Supervisor.place`` records it (its first step started) and marks each saga it drives.
        recorded = await journal.create(checkout, settings.step_order, start=runner.first_start)
        with database.writer() if group_commit else contextlib.nullcontext():
            ended = await runner.drive(
                checkout.id, checkout.lease_token, recorded, first_started=True
            )
        # The runner's records, as the journal committed them.
        if ended is None or ended[0].status != "completed":
            raise RuntimeError(f"checkout {checkout.id} did not complete: {ended}")

    async def checkouts(n: int, group_commit: bool) -> float:
        """CPU seconds for ``n`` checkouts, ``args.concurrency`` at a time."""
        left = [n]

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                await one(group_commit)

        cpu = time.process_time()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        return time.process_time() - cpu

    await checkouts(min(300, args.n), True)  # warm-up: statement caches, pools
    times.clear()
    profile = cProfile.Profile() if args.profile else None
    if profile:
        profile.enable()
    modes = {"on": [True], "off": [False], "both": [True, False] * 3}[args.group_commit]
    spent: dict[bool, list[float]] = {True: [], False: []}
    for mode in modes:
        spent[mode].append(await checkouts(args.n, mode))
    if profile:
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    runs = len(modes)
    where = f"{url.split(':')[0]}, {args.concurrency} at a time"
    for mode, seconds in spent.items():
        if seconds:
            each = ", ".join(f"{1e6 * s / args.n:.0f}" for s in seconds)
            label = "group commit" if mode else "no group commit"
            emit(f"{where}, {label}: {each} µs CPU per checkout (saga and journal)")
    if concurrent and isinstance(database, SqliteDatabase):
        shared = database.group_commit.shared
        emit(f"{where}: {shared} journal transactions committed together with others")
    args.n *= runs  # the statements' times below are over every run
    for kind, seconds in sorted(times.items(), key=lambda item: -item[1]):
        emit(f"  {kind:15s} {1e6 * seconds / args.n:6.1f} µs per checkout")
    await database.close()
    undo()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--url", help="the journal's database (default: a new SQLite file)")
    parser.add_argument("--statements", action="store_true", help="time SQLite statements")
    parser.add_argument("--profile", action="store_true", help="cProfile's top functions")
    parser.add_argument("--concurrency", type=int, default=1, help="checkouts driven at once")
    parser.add_argument(
        "--group-commit",
        choices=["on", "off", "both"],
        default="on",
        help="mark the drives as concurrent writers (both: alternate, three rounds each)",
    )
    uvloop.run(main(parser.parse_args()))
