"""The same faults under orchestration and choreography, each on fresh processes and databases.

Every fault places checkouts with ``Prefer: respond-async``, each under an Idempotency-Key of
its own (so a POST retried after a transport error cannot place a second checkout), breaks
something while they are in flight, puts it back, waits (bounded) until every checkout is
terminal, and reads what the three services hold for each one:

- **applied twice**: a checkout with more than one reservation, credit, reversal or
  order_confirmation; and, since unique constraints already forbid most of those rows, the
  sums they feed: stock reserved beyond the reservations held, a balance above the ledger;
- **left behind**: a failed checkout still holding a ``reserved`` reservation or a credit
  without its reversal; a completed one without its reservation, its credit or its
  confirmation;
- **time to recover**: from the end of the fault (the process, or the broker, answering again;
  for duplicates, the last one sent) to the moment every checkout was seen terminal.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage
from prometheus_client.parser import text_string_to_metric_families

from bench.coordination import MODES, TERMINAL, Sizes, Suite, broker_unavailable_reason
from bench.runner import Bench

FAULT_SKU = "SKU-FAULT"
POST_ATTEMPTS = 5
POSTERS = 4
RABBITMQCTL_TIMEOUT_S = 90.0
BROKER_DOWN_S = 2.0
CONSUMERS = ("journal", "warehouse", "rewards", "email")
SETTLE_BOUND_S = 30.0


class FaultUnavailableError(Exception):
    """The fault cannot be caused here (say, no rabbitmqctl): the row says why."""


@dataclass
class FaultRow:
    fault: str
    coordination: str
    state: str = "measured"  # measured | skipped | not involved | n/a | error
    note: str = ""
    placed: int = 0
    finished: int = 0
    failed: int = 0
    twice: int = 0
    left_behind: int = 0
    recovery_s: float | None = None
    bound_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def labels(sizes: Sizes) -> dict[str, str]:
    return {
        "killed": "(a) a service killed mid-flight",
        "down": f"(b) a service down for {sizes.down_s:g} s",
        "broker": "(c) the broker restarted",
        "duplicated": "(d) a duplicated message",
        "database": "(e) the database restarted",
    }


def notes(sizes: Sizes) -> list[str]:
    """What each fault does, for the report."""
    return [
        "- **Setup**: each fault on fresh processes and SQLite files, the orchestrator at its defaults (a step "
        "failing transiently is retried 5 times over about 3 s, then the checkout is parked for "
        "`RESUME_DELAY_S`, 30 s); checkouts placed with `Prefer: respond-async` and an "
        f"Idempotency-Key each, by {POSTERS} posters at most, every wait bounded "
        f"({sizes.recovery_bound_s:.0f} s for the checkouts to end).",
        f"- (a) {sizes.killed} checkouts, unpaced; `kill -9` of the warehouse once "
        f"{sizes.kill_after} are placed, started again on its port 1 s later.",
        f"- (b) {sizes.down} checkouts placed over about {sizes.down_s / 2:g} s; the rewards "
        f"process SIGKILLed after the first 3, started again {sizes.down_s:g} s later.",
        f"- (c) {sizes.broker} checkouts placed over about {BROKER_DOWN_S + 2:g} s; "
        "`rabbitmqctl stop_app` once a third are placed, "
        f"`start_app` {BROKER_DOWN_S:g} s after it returned (each with a "
        f"{RABBITMQCTL_TIMEOUT_S:.0f} s timeout); other users of that broker see it too.",
        f"- (d) {sizes.duplicated} checkouts, each message sent twice while they run: under "
        "orchestration every `POST /checkouts` is repeated with its Idempotency-Key as soon as "
        "the first is answered; under choreography a queue bound to the events exchange with "
        "`#` catches every event, which is published again (same body and message id, "
        "persistent, with publisher confirms); the effects are read once every consumer's "
        "queue is empty and their consumed counters stop moving.",
        "- (e) SQLite is a file, with no server to restart.",
        "- **finished**: terminal (completed or failed) within the bound; **effects** count "
        "(checkout, effect) pairs, plus units of stock or points out of line with the rows.",
    ]


# --- placing and reading checkouts ------------------------------------------------------------


class Placer:
    """Places checkouts of one fault, each under its own Idempotency-Key."""

    def __init__(self, client: httpx.AsyncClient, tag: str) -> None:
        self.client = client
        self.tag = tag
        self.ids: list[str] = []
        self.failures: list[str] = []

    def body(self, index: int) -> dict[str, Any]:
        # A customer per checkout: its balance must equal its own checkout's ledger.
        return {
            "customer": {
                "id": f"c-{self.tag}-{index}",
                "email": f"buyer{index}@example.com",
                "name": "Fault Buyer",
                "rewards_member": True,
            },
            "items": [{"sku": FAULT_SKU, "quantity": 1, "unit_price": "10.00"}],
            "currency": "USD",
        }

    async def post(self, index: int) -> str | None:
        """The checkout's id; a transport error or an in-flight key is retried (same key)."""
        problem = ""
        for _ in range(POST_ATTEMPTS):
            try:
                answer = await self.client.post(
                    "/checkouts",
                    json=self.body(index),
                    headers={"Prefer": "respond-async", "Idempotency-Key": f"{self.tag}-{index}"},
                )
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(0.5)
                continue
            if answer.status_code == 409 and "Retry-After" in answer.headers:
                problem = f"HTTP 409: {answer.text[:200]}"
                await asyncio.sleep(1.0)
                continue
            if answer.status_code in (201, 202):
                checkout_id: str = answer.json()["id"]
                return checkout_id
            problem = f"HTTP {answer.status_code}: {answer.text[:200]}"
            break
        self.failures.append(problem)
        return None

    async def place_all(
        self,
        n: int,
        *,
        interval_s: float = 0.0,
        posters: int = POSTERS,
        then: Callable[[int, str], Awaitable[None]] | None = None,
    ) -> None:
        """``n`` checkouts from ``posters`` workers, about one per ``interval_s`` in all."""
        indexes = iter(range(n))

        async def worker() -> None:
            for index in indexes:
                checkout_id = await self.post(index)
                if checkout_id is not None:
                    self.ids.append(checkout_id)
                    if then is not None:
                        await then(index, checkout_id)
                if interval_s:
                    await asyncio.sleep(interval_s * posters)

        await asyncio.gather(*(worker() for _ in range(posters)))


async def _until(check: Callable[[], bool], bound_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound_s
    while not check() and loop.time() < deadline:
        await asyncio.sleep(0.01)


async def _read_views(
    client: httpx.AsyncClient, ids: list[str], views: dict[str, dict[str, Any]]
) -> None:
    gate = asyncio.Semaphore(16)

    async def read(checkout_id: str) -> None:
        async with gate:
            try:
                answer = await client.get(f"/checkouts/{checkout_id}")
            except httpx.TransportError:
                return
            if answer.status_code == 200:
                views[checkout_id] = answer.json()

    await asyncio.gather(*(read(i) for i in ids))


def _terminal(view: dict[str, Any] | None) -> bool:
    return view is not None and view["status"] in TERMINAL


async def wait_all_terminal(
    client: httpx.AsyncClient, ids: list[str], bound_s: float
) -> tuple[dict[str, dict[str, Any]], float | None]:
    """The last view of each checkout, and when all were first seen terminal (None: not within
    ``bound_s``), on the event loop's clock."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound_s
    views: dict[str, dict[str, Any]] = {}
    while True:
        pending = [i for i in ids if not _terminal(views.get(i))]
        if pending:
            await _read_views(client, pending, views)
        if all(_terminal(views.get(i)) for i in ids):
            return views, loop.time()
        if loop.time() > deadline:
            return views, None
        await asyncio.sleep(0.1)


async def _unfinished(client: httpx.AsyncClient) -> int:
    """How many listed checkouts are not terminal yet (a fault's suite holds only its own)."""
    try:
        page = (await client.get("/checkouts", params={"limit": 200})).json()
    except (httpx.TransportError, ValueError):
        return -1
    return sum(1 for view in page.get("items", []) if view["status"] not in TERMINAL)


# --- judging the effects ----------------------------------------------------------------------


def judge(
    view: dict[str, Any],
    reservations: list[dict[str, Any]],
    transactions: list[dict[str, Any]],
    emails: list[dict[str, Any]],
) -> tuple[list[str], list[str]]:
    """(effects applied twice, effects left behind) of one terminal checkout, by name."""
    credits = [t for t in transactions if t["kind"] == "credit"]
    reversals = [t for t in transactions if t["kind"] == "reversal"]
    confirmations = [m for m in emails if m["template"] == "order_confirmation"]
    held = [r for r in reservations if r["status"] == "reserved"]
    twice = [
        name
        for name, found in (
            ("reservation", reservations),
            ("credit", credits),
            ("reversal", reversals),
            ("order_confirmation", confirmations),
        )
        if len(found) > 1
    ]
    left: list[str] = []
    if view["status"] == "failed":
        if held:
            left.append("reservation still reserved")
        if len(credits) > len(reversals):
            left.append("credit not reversed")
    else:
        if not held:
            left.append("no reservation")
        if view["customer"].get("rewards_member") and not credits:
            left.append("no credit")
        if not confirmations:
            left.append("no confirmation")
    return twice, left


async def _items(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    answer = await client.get(path, params=params)
    answer.raise_for_status()
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def judge_effects(suite: Suite, views: dict[str, dict[str, Any]], row: FaultRow) -> None:
    """Fill ``row``'s twice and left-behind counts from what the services hold."""
    gate = asyncio.Semaphore(16)
    reserved_units = 0
    async with (
        suite.client("warehouse") as warehouse,
        suite.client("rewards") as rewards,
        suite.client("email") as email,
    ):

        async def one(view: dict[str, Any]) -> None:
            nonlocal reserved_units
            cid = view["id"]
            async with gate:
                reservations = await _items(warehouse, "/reservations", checkout_id=cid)
                transactions = await _items(rewards, "/transactions", checkout_id=cid)
                emails = await _items(email, "/emails", checkout_id=cid, limit=200)
                customer = view["customer"]["id"]
                account = await rewards.get(f"/accounts/{customer}")
            twice, left = judge(view, reservations, transactions, emails)
            ledger = sum(int(t["points"]) for t in transactions)
            balance = account.json()["balance"] if account.status_code == 200 else 0
            if balance > ledger:
                twice.append(f"balance {balance} > ledger {ledger}")
            elif balance < ledger:
                left.append(f"balance {balance} < ledger {ledger}")
            reserved_units += sum(
                int(line["quantity"])
                for r in reservations
                if r["status"] == "reserved"
                for line in r["items"]
            )
            row.twice += len(twice)
            row.left_behind += len(left)
            row.problems += [f"{cid}: {view['status']}, {what}" for what in twice + left]

        await asyncio.gather(*(one(v) for v in views.values() if _terminal(v)))
        stock = (await warehouse.get(f"/inventory/{FAULT_SKU}")).json()
    # Units reserved in stock that no reservation holds were reserved twice (or never released).
    extra = int(stock["reserved"]) - reserved_units
    row.details["stock"] = stock
    if extra > 0:
        row.twice += extra
        row.problems.append(
            f"{FAULT_SKU}: {stock['reserved']} reserved, reservations hold {reserved_units}"
        )
    elif extra < 0:
        row.left_behind += -extra
        row.problems.append(
            f"{FAULT_SKU}: {stock['reserved']} reserved, reservations hold {reserved_units}"
        )


async def finish(
    suite: Suite,
    orchestrator: httpx.AsyncClient,
    placer: Placer,
    row: FaultRow,
    fault_end: float,
    bound_s: float,
) -> None:
    """Wait for every checkout to end, then count what ended and judge the effects."""
    views, done_at = await wait_all_terminal(orchestrator, placer.ids, bound_s)
    await record(suite, placer, row, views, done_at, fault_end, bound_s)


async def record(
    suite: Suite,
    placer: Placer,
    row: FaultRow,
    views: dict[str, dict[str, Any]],
    done_at: float | None,
    fault_end: float,
    bound_s: float,
) -> None:
    """Count what ended, how long after ``fault_end``, and judge the effects."""
    row.bound_s = bound_s
    row.placed = len(placer.ids)
    row.finished = sum(1 for v in views.values() if _terminal(v))
    row.failed = sum(1 for v in views.values() if v["status"] == "failed")
    row.recovery_s = None if done_at is None else max(0.0, done_at - fault_end)
    if placer.failures:
        row.details["not_placed"] = placer.failures[:5]
    await judge_effects(suite, views, row)
    # What the coordination itself says of the fault: parked sagas, or messages given up on.
    if suite.mode == "orchestration":
        parked = (await counter(suite, "orchestrator", "checkout_parked")).get("total", 0.0)
        row.details["parked"] = int(parked)
    else:
        row.details["dead_letters"] = await dead_letters(suite)


def consequences(row: FaultRow) -> str:
    """The note's tail: checkouts parked (orchestration), dead letters (choreography)."""
    said = []
    if row.details.get("parked"):
        said.append(f"{row.details['parked']} times a checkout was parked for RESUME_DELAY_S")
    if row.details.get("dead_letters"):
        said.append(f"{row.details['dead_letters']} dead letters")
    if row.details.get("not_placed"):
        said.append(f"{len(row.details['not_placed'])} POSTs failed")
    return "".join(f"; {part}" for part in said)


# --- the faults -------------------------------------------------------------------------------


async def service_killed(suite: Suite, sizes: Sizes, row: FaultRow) -> None:
    """(a) ``kill -9`` of the warehouse with checkouts in flight; back on its port 1 s later."""
    loop = asyncio.get_running_loop()
    async with suite.client("orchestrator") as orchestrator:
        placer = Placer(orchestrator, f"killed-{uuid.uuid4().hex[:6]}")
        # Unpaced: placing outruns finishing, so the kill finds work in hand.
        posting = asyncio.create_task(placer.place_all(sizes.killed))
        await _until(lambda: len(placer.ids) >= sizes.kill_after or posting.done(), 30)
        await asyncio.to_thread(suite.kill, "warehouse")
        killed_at, placed = loop.time(), len(placer.ids)
        unfinished = await _unfinished(orchestrator)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(suite.start_one, "warehouse")
        back_at = loop.time()
        await posting
        await finish(suite, orchestrator, placer, row, back_at, sizes.recovery_bound_s)
    row.note = (
        f"warehouse SIGKILLed with {placed} placed, {unfinished} unfinished just after; "
        f"answering again {back_at - killed_at:.1f} s after the kill"
    )


async def service_down(suite: Suite, sizes: Sizes, row: FaultRow) -> None:
    """(b) The rewards process gone for ``down_s`` while checkouts keep coming."""
    loop = asyncio.get_running_loop()
    async with suite.client("orchestrator") as orchestrator:
        placer = Placer(orchestrator, f"down-{uuid.uuid4().hex[:6]}")
        spread = sizes.down_s / 2 / sizes.down
        posting = asyncio.create_task(placer.place_all(sizes.down, interval_s=spread, posters=2))
        await _until(lambda: len(placer.ids) >= 3 or posting.done(), 30)
        await asyncio.to_thread(suite.kill, "rewards")
        killed_at, placed = loop.time(), len(placer.ids)
        unfinished = await _unfinished(orchestrator)
        await asyncio.sleep(max(0.0, sizes.down_s - (loop.time() - killed_at)))
        during = len(placer.ids)
        await asyncio.to_thread(suite.start_one, "rewards")
        back_at = loop.time()
        await posting
        await finish(suite, orchestrator, placer, row, back_at, sizes.recovery_bound_s)
    row.note = (
        f"rewards SIGKILLed with {placed} placed, {unfinished} unfinished just after; "
        f"{during} placed by the end of its {sizes.down_s:g} s down; "
        f"answering again {back_at - killed_at:.1f} s after the kill"
    )


def rabbitmqctl(command: str) -> tuple[bool, str]:
    """Run ``rabbitmqctl COMMAND`` (bounded); whether it succeeded, and what it said."""
    try:
        done = subprocess.run(
            ["rabbitmqctl", command],
            capture_output=True,
            text=True,
            timeout=RABBITMQCTL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    said = " ".join((done.stdout + done.stderr).split())[-300:]
    return done.returncode == 0, said


def rabbitmqctl_missing_reason() -> str | None:
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not on PATH: the broker cannot be restarted from here"
    return None


async def _broker_answers(url: str, bound_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound_s
    while broker_unavailable_reason(url) is not None:
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def broker_restarted(suite: Suite, sizes: Sizes, row: FaultRow) -> None:
    """(c) RabbitMQ's app stopped and started again (the Erlang VM stays up)."""
    loop = asyncio.get_running_loop()
    async with suite.client("orchestrator") as orchestrator:
        placer = Placer(orchestrator, f"broker-{uuid.uuid4().hex[:6]}")
        # Spread over the outage, so checkouts are placed while the broker stops and is away.
        spread = (BROKER_DOWN_S + 2.0) / sizes.broker
        posting = asyncio.create_task(placer.place_all(sizes.broker, interval_s=spread, posters=2))
        await _until(lambda: len(placer.ids) >= sizes.broker // 3 or posting.done(), 30)
        stopping_at = loop.time()
        stopped, said = await asyncio.to_thread(rabbitmqctl, "stop_app")
        stopped_at, placed = loop.time(), len(placer.ids)
        unfinished = await _unfinished(orchestrator)
        if stopped:
            await asyncio.sleep(BROKER_DOWN_S)
        # Started again whatever stop_app said: never leave the broker down.
        started, said_start = await asyncio.to_thread(rabbitmqctl, "start_app")
        if not started:
            await asyncio.sleep(2)
            started, said_start = await asyncio.to_thread(rabbitmqctl, "start_app")
        if not stopped:
            await posting
            raise FaultUnavailableError(f"rabbitmqctl stop_app failed: {said}")
        if not started or not await _broker_answers(suite.broker_url, 30):
            raise RuntimeError(f"the broker did not come back: rabbitmqctl start_app: {said_start}")
        back_at = loop.time()
        await posting
        await finish(suite, orchestrator, placer, row, back_at, sizes.recovery_bound_s)
    row.details["stop_app_s"] = stopped_at - stopping_at
    row.note = (
        f"stop_app took {stopped_at - stopping_at:.1f} s, returning with {placed} placed, "
        f"{unfinished} unfinished just after; broker answering again "
        f"{back_at - stopping_at:.1f} s after it began"
    )


async def reposted(suite: Suite, sizes: Sizes, row: FaultRow) -> None:
    """(d) under orchestration: every POST sent again with its Idempotency-Key."""
    loop = asyncio.get_running_loop()
    replayed = 0
    async with suite.client("orchestrator") as orchestrator:
        placer = Placer(orchestrator, f"dup-{uuid.uuid4().hex[:6]}")

        async def again(index: int, first_id: str) -> None:
            nonlocal replayed
            second_id = await placer.post(index)
            if second_id == first_id:
                replayed += 1
            elif second_id is not None:
                row.twice += 1
                row.problems.append(f"the repeated POST #{index} placed {second_id}")
                placer.ids.append(second_id)

        await placer.place_all(sizes.duplicated, interval_s=0.02, then=again)
        sent_at = loop.time()
        await finish(suite, orchestrator, placer, row, sent_at, sizes.recovery_bound_s)
    row.note = f"{replayed} of {sizes.duplicated} repeated POSTs answered with the first checkout"


async def counter(suite: Suite, name: str, family: str, by: str | None = None) -> dict[str, float]:
    """The ``family`` counter of process ``name`` (its /metrics), summed by label ``by``."""
    async with suite.client(name) as client:
        text = (await client.get("/metrics")).text
    totals: dict[str, float] = {}
    for found in text_string_to_metric_families(text):
        if found.name != family:
            continue
        for sample in found.samples:
            if sample.name.endswith("_total"):
                key = sample.labels.get(by, "?") if by else "total"
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


async def _consumed(suite: Suite) -> dict[str, float]:
    """The four processes' ``checkout_events_consumed_total``, summed by outcome."""
    totals: dict[str, float] = {}
    for name in ("orchestrator", "warehouse", "rewards", "email"):
        for outcome, value in (
            await counter(suite, name, "checkout_events_consumed", by="outcome")
        ).items():
            totals[outcome] = totals.get(outcome, 0.0) + value
    return totals


async def dead_letters(suite: Suite) -> int:
    """Messages waiting in the prefix's dead-letter queue."""
    connection = await aio_pika.connect(suite.broker_url, timeout=5)
    try:
        return await _queued(await connection.channel(), suite.prefix, ("dead",))
    finally:
        await connection.close()


async def _queued(
    channel: aio_pika.abc.AbstractChannel, prefix: str, names: tuple[str, ...]
) -> int:
    total = 0
    for name in names:
        queue = await channel.declare_queue(f"{prefix}.{name}", passive=True)
        total += int(queue.declaration_result.message_count or 0)
    return total


async def republished(suite: Suite, sizes: Sizes, row: FaultRow) -> None:
    """(d) under choreography: every event published a second time while the checkouts run."""
    loop = asyncio.get_running_loop()
    connection = await aio_pika.connect(suite.broker_url, timeout=5)
    copies = 0
    last_copy_at = loop.time()
    try:
        tapping = await connection.channel()
        publishing = await connection.channel(publisher_confirms=True)
        exchange = await publishing.get_exchange(f"{suite.prefix}.events")
        tap = await tapping.declare_queue(exclusive=True, auto_delete=True)
        await tap.bind(f"{suite.prefix}.events", routing_key="#")
        seen: set[str] = set()

        async def twin(message: AbstractIncomingMessage) -> None:
            nonlocal copies, last_copy_at
            async with message.process():
                # The tap hears its own copies too: each message id is sent again once.
                if message.message_id is None or message.message_id in seen:
                    return
                seen.add(message.message_id)
                copy = aio_pika.Message(
                    message.body,
                    message_id=message.message_id,
                    content_type=message.content_type,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )
                await exchange.publish(copy, routing_key=message.routing_key or "")
                copies += 1
                last_copy_at = loop.time()

        await tap.consume(twin)
        async with suite.client("orchestrator") as orchestrator:
            placer = Placer(orchestrator, f"dup-{uuid.uuid4().hex[:6]}")
            await placer.place_all(sizes.duplicated, interval_s=0.02)
            bound_s = sizes.recovery_bound_s
            views, done_at = await wait_all_terminal(orchestrator, placer.ids, bound_s)
            # The effects are read once the copies sent last were consumed too.
            settled = await _settle(suite, tapping)
            await record(suite, placer, row, views, done_at, last_copy_at, bound_s)
    finally:
        await connection.close()
    consumed = await _consumed(suite)
    row.details |= {"republished": copies, "consumed": consumed}
    row.note = (
        f"{copies} events published twice; consumers skipped {consumed.get('duplicate', 0):.0f} "
        "deliveries as duplicates"
        + ("" if settled else f"; queues not drained in {SETTLE_BOUND_S:.0f} s")
    )


async def _settle(suite: Suite, channel: aio_pika.abc.AbstractChannel) -> bool:
    """Until every consumer's queue is empty and their counters stop moving (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_BOUND_S
    last: dict[str, float] | None = None
    while loop.time() < deadline:
        queued = await _queued(channel, suite.prefix, CONSUMERS)
        consumed = await _consumed(suite)
        if queued == 0 and consumed == last:
            return True
        last = consumed
        await asyncio.sleep(0.5)
    return False


Scenario = Callable[[Suite, Sizes, FaultRow], Awaitable[None]]


def scenario(key: str, mode: str) -> Scenario:
    if key == "duplicated":
        return reposted if mode == "orchestration" else republished
    return {"killed": service_killed, "down": service_down, "broker": broker_restarted}[key]


async def run_fault(bench: Bench, mode: str, key: str, sizes: Sizes, row: FaultRow) -> FaultRow:
    """One fault on a fresh suite of ``mode``; whatever happens, the suite is stopped after."""
    suite = Suite(
        mode, bench.workdir / "coordination" / mode / f"fault-{key}", bench.options.broker_url
    )
    try:
        await asyncio.to_thread(suite.start)
        await suite.stock(FAULT_SKU, 1_000_000)
        await scenario(key, mode)(suite, sizes, row)
        row.note += consequences(row)
    except FaultUnavailableError as exc:
        row.state, row.note = "skipped", str(exc)
    except Exception as exc:
        row.state, row.note = "error", f"failed: {type(exc).__name__}: {exc}"
    finally:
        await asyncio.to_thread(suite.stop)
        problem = await suite.forget_broker_names()
        if problem:
            bench.say(f"  {problem}")
    return row


def run_all(bench: Bench, sizes: Sizes, choreography_skipped: str | None) -> list[dict[str, Any]]:
    """Every fault in both modes (the broker's last, so a broker left broken spoils nothing else)."""
    names = labels(sizes)
    rows: list[FaultRow] = []
    for mode in MODES:
        for key in ("killed", "down", "duplicated", "broker"):
            row = FaultRow(names[key], mode)
            if mode == "choreography" and choreography_skipped:
                row.state, row.note = "skipped", f"skipped: {choreography_skipped}"
            elif key == "broker" and mode == "orchestration":
                row.state, row.note = "not involved", "not involved (no broker)"
            elif key == "broker" and (reason := rabbitmqctl_missing_reason()):
                row.state, row.note = "skipped", f"skipped: {reason}"
            elif mode == "choreography" and (
                reason := broker_unavailable_reason(bench.options.broker_url)
            ):
                row.state, row.note = "skipped", f"skipped: {reason}"
            else:
                bench.say(f"== fault {names[key]}: {mode}")
                asyncio.run(run_fault(bench, mode, key, sizes, row))
                bench.say(fault_line(row))
            rows.append(row)
        rows.append(
            FaultRow(names["database"], mode, "n/a", "n/a on SQLite (no server to restart)")
        )
    order = list(names.values())
    rows.sort(key=lambda r: (order.index(r.fault), MODES.index(r.coordination)))
    return [asdict(row) for row in rows]


def fault_line(row: FaultRow) -> str:
    if row.state != "measured":
        return f"  {row.state}: {row.note}"
    recovery = "-" if row.recovery_s is None else f"{row.recovery_s:.1f} s"
    line = (
        f"  placed {row.placed} finished {row.finished} failed {row.failed} twice {row.twice} "
        f"left behind {row.left_behind} recovered in {recovery}: {row.note}"
    )
    return line + (f"\n    problems: {row.problems[:5]}" if row.problems else "")
