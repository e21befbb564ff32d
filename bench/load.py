"""The load generator: a separate process, so its own CPU is never charged to the target.

``python -m bench.load --url http://127.0.0.1:PORT --n 3000 --concurrency 32 --warmup 200``

It talks to its parent on stdin/stdout so the parent can sample the targets' CPU exactly around
the measured window:

1. sends ``--warmup`` checkouts (not measured), then prints ``READY`` and waits for a line on stdin;
2. on that line, sends ``--n`` checkouts from ``--concurrency`` workers on keep-alive connections,
   stopping early (and saying so) at ``--time-limit`` seconds; prints ``PROGRESS <done>`` every
   ``--progress-every`` completions if asked, then ``DONE`` the moment the last answer arrives;
3. prints one line of JSON: counts, latency percentiles, wall time, its own CPU.

A checkout counts as an error unless it is answered 201 (``--ok-status``) with
``"status": "completed"``. Checkouts go to ``POST {url}/checkouts`` (``--path``: Restate's ingress
takes them at ``/Checkout/create`` and answers 200 with the handler's result). Only addresses on
127.0.0.0/8 are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bench import emit

try:
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover - orjson is a dependency of the suite
    _loads = json.loads

CHECKOUT = {
    "customer": {
        "id": "c-bench",
        "email": "bench@example.com",
        "name": "Bench Member",
        "rewards_member": True,
    },
    "items": [{"sku": "SKU-001", "quantity": 1, "unit_price": "19.99"}],
    "currency": "USD",
}
REQUEST_TIMEOUT_S = 60.0


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100); NaN when empty."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def results(
    load: Any, *, requested: int, sent: int, concurrency: int, wall: float
) -> dict[str, Any]:
    """What a measured run reports: counts, errors and latency percentiles (``load`` recorded them)."""
    latencies = sorted(load.latencies)
    ok = len(latencies)
    return {
        "requested": requested,
        "sent": sent,
        "ok": ok,
        "errors": load.errors,
        "error_samples": load.error_samples,
        "statuses": load.statuses,
        "timed_out": sent < requested,
        "concurrency": concurrency,
        "wall_s": wall,
        "throughput": ok / wall if wall > 0 else 0.0,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "mean_ms": (sum(latencies) / ok * 1000) if ok else float("nan"),
        "max_ms": (latencies[-1] * 1000) if ok else float("nan"),
    }


def run_main(
    main: Callable[[argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]],
    args: argparse.Namespace,
) -> None:
    """Run a load generator's ``main`` on uvloop (asyncio without it) and print its JSON result."""
    try:
        import uvloop

        result: dict[str, Any] = uvloop.run(main(args))
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        result = asyncio.run(main(args))
    emit(json.dumps(result))


def _check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"refusing to load {host}: the bench only targets 127.0.0.0/8")


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.url = args.url.rstrip("/") + args.path
        self.ok_status = args.ok_status
        self.keys = args.idempotency_keys
        self.bearer = args.bearer
        self.body = json.dumps(CHECKOUT).encode()
        self.latencies: list[float] = []
        self.errors = 0
        self.error_samples: list[str] = []
        self.statuses: dict[str, int] = {}

    async def one(self, session: aiohttp.ClientSession, measured: bool) -> None:
        headers = {"Content-Type": "application/json"}
        if self.bearer:
            headers["Authorization"] = f"Bearer {self.bearer}"
        if self.keys:
            headers["Idempotency-Key"] = f"bench-{uuid.uuid4()}"
        started = time.perf_counter()
        problem = None
        try:
            async with session.post(self.url, data=self.body, headers=headers) as response:
                raw = await response.read()
                status = response.status
            if status != self.ok_status:
                problem = f"HTTP {status}: {raw[:200]!r}"
            else:
                answer = _loads(raw)
                if answer.get("status") != "completed":
                    problem = f"checkout {answer.get('status')!r}: {raw[:200]!r}"
        except Exception as exc:
            status = 0
            problem = f"{type(exc).__name__}: {exc}"
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

    async def batch(
        self,
        session: aiohttp.ClientSession,
        n: int,
        concurrency: int,
        *,
        measured: bool,
        deadline: float,
        progress_every: int = 0,
    ) -> int:
        """Send ``n`` checkouts from ``concurrency`` workers; returns how many were sent."""
        sent = 0
        done = 0

        async def worker() -> None:
            nonlocal sent, done
            while sent < n and time.monotonic() < deadline:
                sent += 1
                await self.one(session, measured)
                done += 1
                if progress_every and done % progress_every == 0:
                    emit(f"PROGRESS {done}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return sent


async def main(args: argparse.Namespace) -> dict[str, Any]:
    _check_loopback(args.url)
    load = Load(args)
    connector = aiohttp.TCPConnector(limit=args.concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if args.warmup:
            await load.batch(
                session,
                args.warmup,
                args.concurrency,
                measured=False,
                deadline=time.monotonic() + args.time_limit,
            )
        emit("READY")
        if args.wait_for_go:
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        cpu0 = time.process_time()
        started = time.perf_counter()
        deadline = time.monotonic() + args.time_limit
        sent = await load.batch(
            session,
            args.n,
            args.concurrency,
            measured=True,
            deadline=deadline,
            progress_every=args.progress_every,
        )
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        emit("DONE")
    summary = results(load, requested=args.n, sent=sent, concurrency=args.concurrency, wall=wall)
    ok = summary["ok"]
    summary["loadgen_cpu_ms_per_checkout"] = (cpu * 1000 / ok) if ok else float("nan")
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="base URL of the target (127.0.0.1 only)")
    parser.add_argument("--n", type=int, required=True, help="measured checkouts")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument(
        "--path", default="/checkouts", help="where checkouts are posted (default %(default)s)"
    )
    parser.add_argument(
        "--ok-status",
        type=int,
        default=201,
        help="the status of a placed checkout (default %(default)s)",
    )
    parser.add_argument("--warmup", type=int, default=0, help="checkouts before measuring")
    parser.add_argument(
        "--time-limit", type=float, default=60.0, help="cap on the measured run (s)"
    )
    parser.add_argument("--idempotency-keys", action="store_true", help="a fresh key per checkout")
    parser.add_argument("--bearer", help="send Authorization: Bearer BEARER")
    parser.add_argument("--progress-every", type=int, default=0)
    parser.add_argument(
        "--no-wait", dest="wait_for_go", action="store_false", help="do not wait for GO on stdin"
    )
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> None:
    run_main(main, parse_args(argv))


if __name__ == "__main__":
    run()
