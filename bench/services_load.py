"""Load generator for one service endpoint: a separate process, so its CPU is never the service's.

``python -m bench.services_load --url http://127.0.0.1:PORT --scenario reserve --n 1000 --concurrency 16``

Each request is what the orchestrator sends for a fresh checkout (same body, same
``Idempotency-Key: {checkout}:{step}:{action}``, the bearer token). Scenarios that need state
first (a void needs a reservation or a credit to undo, a replay needs a first answer) make it in a
*prepare* phase that is not measured. The handshake is ``bench.load``'s: warm-up and prepare, then
``READY``; a line on stdin starts the measured run; ``DONE`` the moment the last answer arrives;
then one line of JSON (counts, statuses, latency percentiles, wall time).

A request counts only if answered with the scenario's status (and body check); anything else is
an error, with a few samples kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench import emit
from bench.load import _check_loopback, results, run_main

CUSTOMER = "c-bench"
ITEMS = [{"sku": "SKU-001", "quantity": 1, "unit_price": "19.99"}]
REQUEST_TIMEOUT_S = 30.0

Request = tuple[str, str, Any, str | None]  # method, path, JSON body (None: no body), key


def _reserve(cid: str) -> Request:
    body = {
        "checkout_id": cid,
        "items": [{"sku": i["sku"], "quantity": i["quantity"]} for i in ITEMS],
    }
    return "POST", "/reservations", body, f"{cid}:warehouse:reserve"


def _credit(cid: str) -> Request:
    body = {"checkout_id": cid, "points": 19}
    return "POST", f"/accounts/{CUSTOMER}/transactions", body, f"{cid}:rewards:credit"


def _email(cid: str) -> Request:
    body = {
        "to": "bench@example.com",
        "template": "order_confirmation",
        "checkout_id": cid,
        "context": {
            "customer_name": "Bench Member",
            "checkout_id": cid,
            "items": ITEMS,
            "total": "19.99",
            "currency": "USD",
            "points": 19,
        },
    }
    return "POST", "/emails", body, f"{cid}:email:confirmation"


def _void(step: str) -> Callable[[str], Request]:
    def void(cid: str) -> Request:
        return "POST", f"/checkouts/{cid}/void", None, f"{cid}:{step}:void"

    return void


def _hello(cid: str) -> Request:
    return "POST", "/hello", {"checkout_id": cid, "points": 19}, None


@dataclass(frozen=True)
class Scenario:
    """One endpoint under load: the request per checkout, what must come back, what comes first."""

    request: Callable[[str], Request]
    status: int
    prepare: Callable[[str], Request] | None = None
    check: Callable[[dict[str, Any]], bool] | None = None
    replayed: bool = False


SCENARIOS: dict[str, Scenario] = {
    "hello": Scenario(_hello, 201),
    "reserve": Scenario(_reserve, 201, check=lambda b: b.get("status") == "reserved"),
    # Compensation of a checkout that reserved: the reservation is released.
    "warehouse-void": Scenario(
        _void("warehouse"), 200, prepare=_reserve, check=lambda b: b.get("status") == "released"
    ),
    # Compensation of a checkout whose reservation never arrived: a voided row bars it.
    "warehouse-void-empty": Scenario(
        _void("warehouse"), 200, check=lambda b: b.get("status") == "voided"
    ),
    "reserve-replay": Scenario(_reserve, 201, prepare=_reserve, replayed=True),
    "credit": Scenario(_credit, 201, check=lambda b: b.get("points") == 19),
    "rewards-void": Scenario(
        _void("rewards"), 200, prepare=_credit, check=lambda b: len(b.get("reversals", ())) == 1
    ),
    "credit-replay": Scenario(_credit, 201, prepare=_credit, replayed=True),
    "email": Scenario(_email, 201, check=lambda b: b.get("status") == "logged"),
    "email-replay": Scenario(_email, 201, prepare=_email, replayed=True),
}


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.base = args.url.rstrip("/")
        self.scenario = SCENARIOS[args.scenario]
        self.bearer = args.bearer
        self.latencies: list[float] = []
        self.errors = 0
        self.error_samples: list[str] = []
        self.statuses: dict[str, int] = {}

    async def send(
        self, session: aiohttp.ClientSession, request: Request
    ) -> tuple[int, bytes, bool]:
        method, path, body, key = request
        headers = {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if key is not None:
            headers["Idempotency-Key"] = key
        if self.bearer:
            headers["Authorization"] = f"Bearer {self.bearer}"
        data = None if body is None else json.dumps(body).encode()
        async with session.request(method, self.base + path, data=data, headers=headers) as answer:
            raw = await answer.read()
            return answer.status, raw, answer.headers.get("Idempotent-Replayed") == "true"

    def problem(self, status: int, raw: bytes, replayed: bool) -> str | None:
        scenario = self.scenario
        if status != scenario.status:
            return f"HTTP {status}: {raw[:200]!r}"
        if replayed != scenario.replayed:
            return f"replayed={replayed}: {raw[:200]!r}"
        if scenario.check is not None and not scenario.check(json.loads(raw)):
            return f"unexpected body: {raw[:200]!r}"
        return None

    async def one(self, session: aiohttp.ClientSession, cid: str, measured: bool) -> None:
        started = time.perf_counter()
        try:
            status, raw, replayed = await self.send(session, self.scenario.request(cid))
            problem = self.problem(status, raw, replayed)
        except Exception as exc:
            status, problem = 0, f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - started
        if not measured:
            return
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        if problem is None:
            self.latencies.append(elapsed)
        else:
            self.errors += 1
            if len(self.error_samples) < 5:
                self.error_samples.append(problem)

    async def prepare(self, session: aiohttp.ClientSession, cid: str) -> None:
        assert self.scenario.prepare is not None
        status, raw, _ = await self.send(session, self.scenario.prepare(cid))
        if status >= 300:
            raise RuntimeError(f"prepare answered {status}: {raw[:200]!r}")


async def _pool(ids: list[str], concurrency: int, deadline: float, work: Any) -> int:
    """Run ``work(id)`` for each id from ``concurrency`` workers until ``deadline``; returns how many."""
    sent = 0

    async def worker() -> None:
        nonlocal sent
        while sent < len(ids) and time.monotonic() < deadline:
            cid = ids[sent]
            sent += 1
            await work(cid)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sent


async def main(args: argparse.Namespace) -> dict[str, Any]:
    _check_loopback(args.url)
    load = Load(args)
    warm = [str(uuid.uuid4()) for _ in range(args.warmup)]
    ids = [str(uuid.uuid4()) for _ in range(args.n)]
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        cap = time.monotonic() + args.time_limit
        if load.scenario.prepare is not None:
            await _pool(warm + ids, args.concurrency, cap, lambda c: load.prepare(session, c))
        await _pool(warm, args.concurrency, cap, lambda c: load.one(session, c, False))
        emit("READY")
        if args.wait_for_go:
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        started = time.perf_counter()
        deadline = time.monotonic() + args.time_limit
        sent = await _pool(ids, args.concurrency, deadline, lambda c: load.one(session, c, True))
        wall = time.perf_counter() - started
        emit("DONE")
    summary = results(load, requested=args.n, sent=sent, concurrency=args.concurrency, wall=wall)
    return {"scenario": args.scenario} | summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="base URL of the service (127.0.0.1 only)")
    parser.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    parser.add_argument("--n", type=int, required=True, help="measured requests")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=0, help="requests before measuring")
    parser.add_argument("--time-limit", type=float, default=30.0, help="cap per phase (s)")
    parser.add_argument("--bearer", help="send Authorization: Bearer BEARER")
    parser.add_argument(
        "--no-wait", dest="wait_for_go", action="store_false", help="do not wait for GO on stdin"
    )
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> None:
    run_main(main, parse_args(argv))


if __name__ == "__main__":
    run()
