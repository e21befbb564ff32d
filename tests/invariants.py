"""Invariants of the whole suite, checked only through the services' public HTTP endpoints.

Works the same over in-process clients (``tests.suite.Suite``) and over real processes: every
function takes the four ``httpx.AsyncClient`` (orchestrator, warehouse, rewards, email), each with
its ``base_url`` set. ``check_invariants`` returns a list of violations, one readable string each;
a test asserts the list is empty.

What must hold, per checkout:
- every checkout ends terminal (``completed`` or ``failed``) within the deadline;
- completed: exactly one reservation, ``reserved``, with the checkout's quantities per sku; for a
  member exactly one credit of ``floor(total)`` points and no reversal (a non-member: no
  transaction at all); exactly one ``order_confirmation`` and no ``order_cancelled`` email;
- failed: no ``reserved`` reservation; the checkout's points net to zero; an
  ``order_confirmation`` only if the email step ran before the failing step, and then exactly one
  ``order_cancelled`` as well (never a cancellation without a confirmation);
and across checkouts: no sku's ``available`` is negative, and, when the caller owns every sku and
customer the checkouts touch (``exclusive``), each sku's ``reserved`` equals the units of the
active reservations of these checkouts and each customer's balance equals their credited points.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from decimal import ROUND_FLOOR, Decimal
from typing import Any
from urllib.parse import quote

import anyio
import httpx

TERMINAL = ("completed", "failed")
PAGE_LIMIT = 200


class ReadError(Exception):
    """A read endpoint did not answer as the contract says."""


async def _get(client: httpx.AsyncClient, path: str, **params: Any) -> tuple[int, Any]:
    """GET ``path``; returns (status, JSON body); retries transport errors a few times."""
    for attempt in range(5):
        try:
            response = await client.get(path, params=params or None)
        except httpx.TransportError:
            if attempt == 4:
                raise
            await anyio.sleep(0.2 * (attempt + 1))
            continue
        try:
            body = response.json()
        except ValueError:
            body = response.text
        return response.status_code, body
    raise AssertionError("unreachable")  # pragma: no cover


async def _get_ok(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    status, body = await _get(client, path, **params)
    if status != 200:
        raise ReadError(f"GET {path} {params or ''} answered {status}: {body}")
    return body


async def list_checkouts(orchestrator: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every checkout, walking ``GET /checkouts`` page by page (newest first)."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": PAGE_LIMIT}
        if cursor:
            params["cursor"] = cursor
        page = await _get_ok(orchestrator, "/checkouts", **params)
        found.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return found


async def _gather(limit: int, jobs: Iterable[Any]) -> None:
    """Run the awaitable factories in ``jobs`` with at most ``limit`` at a time."""
    semaphore = anyio.Semaphore(limit)

    async def run(job: Any) -> None:
        async with semaphore:
            await job()

    async with anyio.create_task_group() as group:
        for job in jobs:
            group.start_soon(run, job)


async def read_checkouts(
    orchestrator: httpx.AsyncClient, ids: Iterable[str], *, concurrency: int = 20
) -> dict[str, dict[str, Any] | None]:
    """``GET /checkouts/{id}`` for each id; None for a 404."""
    result: dict[str, dict[str, Any] | None] = {}

    def job(checkout_id: str) -> Any:
        async def read() -> None:
            status, body = await _get(orchestrator, f"/checkouts/{checkout_id}")
            if status == 404:
                result[checkout_id] = None
            elif status == 200:
                result[checkout_id] = body
            else:
                raise ReadError(f"GET /checkouts/{checkout_id} answered {status}: {body}")

        return read

    await _gather(concurrency, [job(i) for i in ids])
    return result


async def wait_until_terminal(
    orchestrator: httpx.AsyncClient,
    ids: Iterable[str] | None = None,
    *,
    timeout_s: float = 30.0,
    interval_s: float = 0.1,
) -> dict[str, dict[str, Any] | None]:
    """Poll until every checkout (``ids``, or every listed one) is terminal or ``timeout_s`` passes.

    Returns the last view of each checkout (None if it does not exist); never raises on timeout.
    """
    wanted = list(ids) if ids is not None else None
    views: dict[str, dict[str, Any] | None] = {}
    with anyio.move_on_after(timeout_s):
        while True:
            if wanted is None:
                views = {c["id"]: c for c in await list_checkouts(orchestrator)}
            else:
                pending = [i for i in wanted if not _terminal(views.get(i))]
                views |= await read_checkouts(orchestrator, pending)
            if all(_terminal(view) for view in views.values()):
                break
            await anyio.sleep(interval_s)
    if wanted is not None:
        views = {i: views.get(i) for i in wanted}
    return views


def _terminal(view: dict[str, Any] | None) -> bool:
    return view is not None and view["status"] in TERMINAL


def floor_points(total: str) -> int:
    """Points a member earns for ``total``: floor(total)."""
    return int(Decimal(total).to_integral_value(rounding=ROUND_FLOOR))


def _quantities(lines: Iterable[dict[str, Any]]) -> Counter[str]:
    totals: Counter[str] = Counter()
    for line in lines:
        totals[line["sku"]] += int(line["quantity"])
    return totals


def _steps(checkout: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in checkout["steps"]}


def _failing_step(checkout: dict[str, Any]) -> str | None:
    """The step whose failure failed the checkout (the journal's error), if recorded."""
    error = checkout.get("error")
    if isinstance(error, dict) and error.get("step"):
        return str(error["step"])
    failed = [s["name"] for s in checkout["steps"] if s["status"] == "failed"]
    return failed[0] if failed else None


class _Effects:
    """What the three services hold for one checkout."""

    def __init__(
        self,
        reservations: list[dict[str, Any]],
        transactions: list[dict[str, Any]],
        emails: list[dict[str, Any]],
    ) -> None:
        self.reservations = reservations
        self.transactions = transactions
        self.emails = emails

    def templates(self, template: str) -> list[dict[str, Any]]:
        return [m for m in self.emails if m["template"] == template]

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [t for t in self.transactions if t["kind"] == kind]

    @property
    def active(self) -> list[dict[str, Any]]:
        return [r for r in self.reservations if r["status"] == "reserved"]


async def _effects(
    warehouse: httpx.AsyncClient,
    rewards: httpx.AsyncClient,
    email: httpx.AsyncClient,
    checkout_id: str,
) -> _Effects:
    reservations = await _get_ok(warehouse, "/reservations", checkout_id=checkout_id)
    transactions = await _get_ok(rewards, "/transactions", checkout_id=checkout_id)
    emails = await _get_ok(email, "/emails", checkout_id=checkout_id, limit=200)
    return _Effects(reservations["items"], transactions["items"], emails["items"])


def _check_completed(checkout: dict[str, Any], effects: _Effects) -> list[str]:
    cid, problems = checkout["id"], []
    member = bool(checkout["customer"].get("rewards_member"))
    steps = _steps(checkout)
    for name, step in steps.items():
        allowed = {"succeeded", "skipped"} if name == "rewards" else {"succeeded"}
        if step["status"] not in allowed:
            problems.append(f"completed checkout {cid}: step {name} is {step['status']}")
    if (steps.get("rewards", {}).get("status") == "skipped") == member:
        problems.append(
            f"completed checkout {cid}: rewards step {steps.get('rewards', {}).get('status')} "
            f"for a {'member' if member else 'non-member'}"
        )
    if len(effects.reservations) != 1:
        problems.append(
            f"completed checkout {cid}: {len(effects.reservations)} reservations, expected 1"
        )
    for reservation in effects.reservations:
        if reservation["status"] != "reserved":
            problems.append(
                f"completed checkout {cid}: reservation {reservation['id']} is {reservation['status']}"
            )
        if _quantities(reservation["items"]) != _quantities(checkout["items"]):
            problems.append(
                f"completed checkout {cid}: reservation lines {reservation['items']} "
                f"do not match the checkout's items {checkout['items']}"
            )
    credits, reversals = effects.kind("credit"), effects.kind("reversal")
    expected_points = floor_points(checkout["total"]) if member else 0
    if checkout["points"] != expected_points:
        problems.append(
            f"completed checkout {cid}: points {checkout['points']}, expected {expected_points}"
        )
    if member:
        if len(credits) != 1:
            problems.append(f"completed checkout {cid}: {len(credits)} credits, expected 1")
        for credit in credits:
            if credit["points"] != expected_points:
                problems.append(
                    f"completed checkout {cid}: credit of {credit['points']} points, expected {expected_points}"
                )
            if credit["customer_id"] != checkout["customer"]["id"]:
                problems.append(
                    f"completed checkout {cid}: credit to {credit['customer_id']!r}, "
                    f"expected {checkout['customer']['id']!r}"
                )
    elif credits:
        problems.append(f"completed checkout {cid}: a non-member was credited {credits}")
    if reversals:
        problems.append(f"completed checkout {cid}: {len(reversals)} reversals, expected none")
    confirmations = effects.templates("order_confirmation")
    if len(confirmations) != 1:
        problems.append(
            f"completed checkout {cid}: {len(confirmations)} order_confirmation emails, expected 1"
        )
    for message in confirmations:
        if message["to"] != checkout["customer"]["email"]:
            problems.append(
                f"completed checkout {cid}: confirmation sent to {message['to']!r}, "
                f"expected {checkout['customer']['email']!r}"
            )
    if effects.templates("order_cancelled"):
        problems.append(f"completed checkout {cid}: an order_cancelled email was sent")
    return problems


def _check_failed(checkout: dict[str, Any], effects: _Effects) -> list[str]:
    cid, problems = checkout["id"], []
    if effects.active:
        problems.append(
            f"failed checkout {cid}: {len(effects.active)} reservations still reserved "
            f"({[r['id'] for r in effects.active]})"
        )
    if len(effects.reservations) > 1:
        problems.append(f"failed checkout {cid}: {len(effects.reservations)} reservations")
    net = sum(int(t["points"]) for t in effects.transactions)
    if net != 0:
        problems.append(f"failed checkout {cid}: points net to {net}, expected 0")
    credits, reversals = effects.kind("credit"), effects.kind("reversal")
    if len(credits) > 1 or len(reversals) > 1:
        problems.append(
            f"failed checkout {cid}: {len(credits)} credits and {len(reversals)} reversals"
        )
    confirmations = effects.templates("order_confirmation")
    cancellations = effects.templates("order_cancelled")
    if len(confirmations) > 1 or len(cancellations) > 1:
        problems.append(
            f"failed checkout {cid}: {len(confirmations)} confirmations and "
            f"{len(cancellations)} cancellations, expected at most one of each"
        )
    if confirmations:
        order = [s["name"] for s in checkout["steps"]]
        failing = _failing_step(checkout)
        if failing is None or "email" not in order or failing not in order:
            problems.append(f"failed checkout {cid}: a confirmation was sent, failing step unknown")
        elif order.index("email") > order.index(failing):
            problems.append(
                f"failed checkout {cid}: a confirmation was sent although step {failing} "
                f"failed before the email step"
            )
        if not cancellations:
            problems.append(
                f"failed checkout {cid}: a confirmation was sent but no order_cancelled"
            )
    elif cancellations:
        problems.append(f"failed checkout {cid}: order_cancelled sent without a confirmation")
    for name, step in _steps(checkout).items():
        if step["status"] in ("pending", "running"):
            problems.append(f"failed checkout {cid}: step {name} left {step['status']}")
    return problems


async def check_invariants(
    orchestrator: httpx.AsyncClient,
    warehouse: httpx.AsyncClient,
    rewards: httpx.AsyncClient,
    email: httpx.AsyncClient,
    *,
    checkout_ids: Iterable[str] | None = None,
    wait_s: float = 30.0,
    exclusive: bool = True,
    concurrency: int = 20,
) -> list[str]:
    """Every violation of the suite's invariants, as readable strings (empty when all hold).

    Checks ``checkout_ids`` (each must exist), or every checkout the orchestrator lists, after
    waiting up to ``wait_s`` for all of them to be terminal. ``exclusive``: the checked checkouts
    are the only users of their skus and customers, so stock and balances must add up exactly.
    """
    problems: list[str] = []
    wanted = list(checkout_ids) if checkout_ids is not None else None
    views = await wait_until_terminal(orchestrator, wanted, timeout_s=wait_s)
    if wanted is None:
        listed = await list_checkouts(orchestrator)
        ids = [c["id"] for c in listed]
        if len(ids) != len(set(ids)):
            duplicates = [i for i, n in Counter(ids).items() if n > 1]
            problems.append(f"GET /checkouts listed checkouts more than once: {duplicates}")
        # The listing is a snapshot: anything created meanwhile is read on its own.
        views |= await read_checkouts(orchestrator, [i for i in ids if i not in views])
    checkouts: list[dict[str, Any]] = []
    for checkout_id, view in views.items():
        if view is None:
            problems.append(f"checkout {checkout_id} does not exist (GET answered 404)")
        elif view["status"] not in TERMINAL:
            steps = ", ".join(f"{s['name']}={s['status']}" for s in view["steps"])
            problems.append(
                f"checkout {checkout_id} is still {view['status']} after {wait_s} s ({steps})"
            )
        else:
            checkouts.append(view)

    effects: dict[str, _Effects] = {}

    def job(checkout_id: str) -> Any:
        async def read() -> None:
            effects[checkout_id] = await _effects(warehouse, rewards, email, checkout_id)

        return read

    every = [v for v in views.values() if v is not None]
    await _gather(concurrency, [job(v["id"]) for v in every])
    for checkout in checkouts:
        found = effects[checkout["id"]]
        if checkout["status"] == "completed":
            problems.extend(_check_completed(checkout, found))
        else:
            problems.extend(_check_failed(checkout, found))

    skus = sorted({line["sku"] for v in every for line in v["items"]})
    held: Counter[str] = Counter()
    for view in every:
        for reservation in effects[view["id"]].active:
            held.update(_quantities(reservation["items"]))
    for sku in skus:
        status, level = await _get(warehouse, f"/inventory/{sku}")
        if status == 404:
            if held[sku]:
                problems.append(f"sku {sku}: {held[sku]} units reserved but never stocked")
            continue
        if status != 200:
            problems.append(f"GET /inventory/{sku} answered {status}: {level}")
            continue
        if level["available"] < 0 or level["reserved"] < 0:
            problems.append(f"sku {sku}: negative stock {level}")
        if level["available"] != level["on_hand"] - level["reserved"]:
            problems.append(f"sku {sku}: available != on_hand - reserved in {level}")
        if exclusive and level["reserved"] != held[sku]:
            problems.append(
                f"sku {sku}: {level['reserved']} units reserved, but the active reservations "
                f"of these checkouts hold {held[sku]}"
            )

    if exclusive:
        expected: defaultdict[str, int] = defaultdict(int)
        for view in every:
            customer = view["customer"]["id"]
            expected[customer] += sum(int(t["points"]) for t in effects[view["id"]].transactions)
        for checkout in checkouts:
            if checkout["status"] == "completed" and checkout["customer"].get("rewards_member"):
                expected.setdefault(checkout["customer"]["id"], 0)
        for customer, points in sorted(expected.items()):
            status, account = await _get(rewards, f"/accounts/{quote(customer, safe='')}")
            balance = account["balance"] if status == 200 else None
            if status == 404 and points == 0:
                continue
            if balance != points:
                problems.append(
                    f"customer {customer}: balance {balance} (GET answered {status}), "
                    f"but the ledger of these checkouts sums to {points}"
                )
    return problems


def describe(checkouts: Iterable[dict[str, Any] | None]) -> str:
    """A compact summary of checkouts for assertion messages."""
    counts = Counter(view["status"] if view else "missing" for view in checkouts)
    return json.dumps(dict(sorted(counts.items())))


__all__ = [
    "ReadError",
    "check_invariants",
    "describe",
    "floor_points",
    "list_checkouts",
    "read_checkouts",
    "wait_until_terminal",
]
