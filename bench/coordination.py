"""Orchestration and choreography side by side: the same checkouts, on one machine, in one run.

Each mode runs the orchestrator and the three real services (``COORDINATION`` the same on all
four) on fresh SQLite files in a directory of its own, under an events prefix of its own on the
broker (its queues and exchanges are deleted at the end), and is measured two ways:

- the bench's plan (N checkouts at C) through ``bench.load``, with the CPU of every process over
  the measured window: the four uvicorn processes and RabbitMQ's Erlang VM (``beam.smp``),
  whose CPU counts in choreography, which sends every event through it, and is only shown for
  orchestration, which leaves it idle (whatever else uses the broker shows up there);
- K sold-out checkouts one after another with CHECKOUT_STEPS=rewards,warehouse,email for a
  rewards member: rewards credits, warehouse refuses, rewards reverses. The time from the
  refusal (the warehouse step's ``finished_at``) to the last compensation (the rewards step's
  ``compensated_at``) is read from the journal, as ``GET /checkouts/{id}`` shows it.

``bench.coordination_faults`` then runs the same faults both ways; ``report_markdown`` and
``report_text`` render both tables.
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import httpx
import psutil

from bench.load import percentile
from bench.procs import Server, forget
from bench.runner import (
    API_KEY,
    ORCHESTRATOR_APP,
    ORCHESTRATOR_ENV,
    REAL_APPS,
    SERVICE_TOKEN,
    SERVICES,
    Bench,
    CpuSource,
)

MODES = ("orchestration", "choreography")
PROCESSES = ("orchestrator", *SERVICES)
DEFAULT_STEPS = "warehouse,rewards,email"
# Rewards first, so a refusal by the warehouse has something to compensate.
REFUSAL_STEPS = "rewards,warehouse,email"
# The load generator's checkout (bench.load.CHECKOUT) buys this sku.
LOAD_SKU = "SKU-001"
SOLD_OUT_SKU = "SKU-SOLD-OUT"
REFUSAL_WARMUP = 3
REQUEST_TIMEOUT_S = 15.0
TERMINAL = ("completed", "failed")
# Names of one events prefix on the broker, as servicekit.events.broker declares them.
BROKER_QUEUES = ("journal", "warehouse", "rewards", "email", "dead")
BROKER_EXCHANGES = ("events", "dead")
BROKER_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Sizes:
    """How many checkouts each part places, and how long faults last (``--quick``: tiny)."""

    refusals: int = 30
    killed: int = 60
    kill_after: int = 20
    down: int = 30
    down_s: float = 10.0
    broker: int = 30
    duplicated: int = 30
    # Every wait for checkouts to end is bounded by this; the orchestrator parks a checkout
    # whose step keeps failing for RESUME_DELAY_S (30 s by default), so it must exceed that.
    recovery_bound_s: float = 120.0

    @classmethod
    def quick(cls) -> Sizes:
        # An outage the orchestrator's retries (about 3 s) ride out: a parked checkout would add
        # RESUME_DELAY_S (30 s) to a smoke run.
        return cls(
            refusals=5,
            killed=12,
            kill_after=4,
            down=8,
            down_s=0.5,
            broker=8,
            duplicated=8,
            recovery_bound_s=60.0,
        )


# --- the broker -----------------------------------------------------------------------------


def broker_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5672


def broker_unavailable_reason(url: str) -> str | None:
    """None when something accepts TCP connections at the broker's address; else why not."""
    host, port = broker_address(url)
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return f"BROKER_URL points at {host}, not 127.0.0.0/8: the bench only uses local processes"
    try:
        socket.create_connection((host, port), 2).close()
    except OSError as exc:
        return f"no RabbitMQ answers at {host}:{port} ({type(exc).__name__}: {exc})"
    return None


def broker_pids() -> list[int]:
    """Pids of RabbitMQ's Erlang VM, by name from /proc: the bench did not start it."""
    found = []
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == "beam.smp":
            found.append(process.pid)
    return found


class BrokerCpu:
    """The broker's CPU so far, for ``Bench._load``'s watch list (like a ``Server``)."""

    def __init__(self) -> None:
        self.pids = broker_pids()

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.pids:
            try:
                process = psutil.Process(pid)
                for each in [process, *process.children(recursive=True)]:
                    times = each.cpu_times()
                    total += times.user + times.system
            except psutil.NoSuchProcess:
                continue
        return total


async def delete_broker_names(url: str, prefix: str) -> str | None:
    """Delete the queues and exchanges of ``prefix``; None, or why that failed."""

    async def delete() -> None:
        connection = await aio_pika.connect(url, timeout=5)
        try:
            channel = await connection.channel()
            for consumer in BROKER_QUEUES:
                await channel.queue_delete(f"{prefix}.{consumer}")
            for exchange in BROKER_EXCHANGES:
                await channel.exchange_delete(f"{prefix}.{exchange}")
        finally:
            await connection.close()

    try:
        await asyncio.wait_for(delete(), BROKER_TIMEOUT_S)
    except Exception as exc:
        return f"could not delete the broker names of {prefix}: {type(exc).__name__}: {exc}"
    return None


# --- the four processes of one mode -----------------------------------------------------------


@dataclass
class Suite:
    """The orchestrator and the three services in one mode, on fresh SQLite files in ``directory``."""

    mode: str
    directory: Path
    broker_url: str
    steps: str = DEFAULT_STEPS
    prefix: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:12]}")
    servers: dict[str, Server] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for name in SERVICES:
            self.servers[name] = Server(name, REAL_APPS[name], {}, self.directory)
        self.servers["orchestrator"] = Server("orchestrator", ORCHESTRATOR_APP, {}, self.directory)
        for name, server in self.servers.items():
            server.env = self.env_of(name)

    def env_of(self, name: str) -> dict[str, str]:
        # Set on every process, so the caller's shell never picks a mode or a prefix.
        env = {
            "COORDINATION": self.mode,
            "BROKER_URL": self.broker_url,
            "EVENTS_PREFIX": self.prefix,
            "DATABASE_URL": f"sqlite:///{self.directory / name}.db",
            "SERVICE_TOKEN": SERVICE_TOKEN,
        }
        if name == "orchestrator":
            env |= ORCHESTRATOR_ENV | {"CHECKOUT_STEPS": self.steps}
            env |= {f"{s.upper()}_URL": self.servers[s].url for s in SERVICES}
        return env

    def url(self, name: str) -> str:
        return self.servers[name].url

    def start(self) -> Suite:
        """Start the four at once (each waits for its /readyz), so a fresh suite costs one start."""
        with ThreadPoolExecutor(len(self.servers)) as pool:
            for started in [pool.submit(s.start) for s in self.servers.values()]:
                started.result()
        return self

    def start_one(self, name: str) -> None:
        """Start (again) on the same port, so the orchestrator's URLs still lead to it."""
        self.servers[name].start()

    def kill(self, name: str) -> None:
        """SIGKILL by pid, and reap."""
        popen = self.servers[name].popen
        assert popen is not None
        if popen.poll() is None:
            popen.send_signal(signal.SIGKILL)
        popen.wait(10)
        forget(popen)

    def restart_orchestrator(self, steps: str) -> None:
        """The orchestrator again, on the same database and port, with another step order."""
        server = self.servers["orchestrator"]
        server.stop()
        self.steps = steps
        server.env = self.env_of("orchestrator")
        server.start()

    def stop(self) -> None:
        with ThreadPoolExecutor(len(self.servers)) as pool:
            list(pool.map(lambda server: server.stop(), self.servers.values()))

    def client(self, name: str) -> httpx.AsyncClient:
        token = API_KEY if name == "orchestrator" else SERVICE_TOKEN
        return httpx.AsyncClient(
            base_url=self.url(name),
            headers={"Authorization": f"Bearer {token}"},
            timeout=REQUEST_TIMEOUT_S,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
        )

    async def stock(self, sku: str, on_hand: int) -> None:
        async with self.client("warehouse") as warehouse:
            answer = await warehouse.put(f"/inventory/{sku}", json={"on_hand": on_hand})
            answer.raise_for_status()

    async def forget_broker_names(self) -> str | None:
        if self.mode != "choreography":
            return None
        return await delete_broker_names(self.broker_url, self.prefix)


# --- side by side -----------------------------------------------------------------------------


def measure_mode(bench: Bench, mode: str, sizes: Sizes, broker: BrokerCpu | None) -> dict[str, Any]:
    """The plan's loads, then the refusals, on one fresh suite of ``mode``."""
    suite = Suite(
        mode, bench.workdir / "coordination" / mode / "side-by-side", bench.options.broker_url
    )
    loads: list[dict[str, Any]] = []
    try:
        suite.start()
        asyncio.run(suite.stock(LOAD_SKU, 1_000_000_000))
        bench.say(f"  {mode}: " + ", ".join(f"{n} {s.url}" for n, s in suite.servers.items()))
        watch: list[tuple[str, CpuSource]] = [(name, suite.servers[name]) for name in PROCESSES]
        if broker is not None:
            watch.append(("broker", broker))
        for n, concurrency in bench.options.plan:
            result = bench._load(
                suite.url("orchestrator"),
                n,
                concurrency,
                warmup=bench.warmup_for(n, concurrency),
                time_limit_s=bench.options.time_limit_s,
                watch=watch,
            )
            result["coordination"] = mode
            result["cpu_total_ms"] = cpu_total(result["cpu_ms"], mode)
            loads.append(result)
            bench.say(load_line(result))
        # Rewards first: the same journal and services, the orchestrator restarted with that order.
        suite.restart_orchestrator(REFUSAL_STEPS)
        refusal = asyncio.run(refusal_to_compensation(suite, sizes.refusals))
        refusal["coordination"] = mode
        bench.say(refusal_line(refusal))
    finally:
        suite.stop()
        problem = asyncio.run(suite.forget_broker_names())
        if problem:
            bench.say(f"  {problem}")
    return {"loads": loads, "refusal": refusal}


def cpu_total(cpu_ms: dict[str, float], mode: str) -> float:
    """CPU per checkout of every process the mode uses: the broker only in choreography."""
    return sum(v for k, v in cpu_ms.items() if k != "broker" or mode == "choreography")


def _refusal_body(index: int) -> dict[str, Any]:
    return {
        "customer": {
            "id": f"c-refusal-{index}",
            "email": f"refused{index}@example.com",
            "name": "Sold Out",
            "rewards_member": True,
        },
        "items": [{"sku": SOLD_OUT_SKU, "quantity": 1, "unit_price": "10.00"}],
        "currency": "USD",
    }


async def _until_terminal(
    client: httpx.AsyncClient, checkout_id: str, bound_s: float
) -> dict[str, Any] | None:
    """The checkout once terminal, polling at most ``bound_s``; None if it did not end."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound_s
    while True:
        answer = await client.get(f"/checkouts/{checkout_id}")
        if answer.status_code == 200 and answer.json()["status"] in TERMINAL:
            view: dict[str, Any] = answer.json()
            return view
        if loop.time() > deadline:
            return None
        await asyncio.sleep(0.05)


def _compensation_delay_ms(view: dict[str, Any]) -> float | None:
    """Rewards step ``compensated_at`` − warehouse step ``finished_at``, if both were recorded."""
    steps = {step["name"]: step for step in view["steps"]}
    refused_at = steps.get("warehouse", {}).get("finished_at")
    compensated_at = steps.get("rewards", {}).get("compensated_at")
    if view["status"] != "failed" or not refused_at or not compensated_at:
        return None
    delta = datetime.fromisoformat(compensated_at) - datetime.fromisoformat(refused_at)
    return delta.total_seconds() * 1000


async def refusal_to_compensation(suite: Suite, k: int) -> dict[str, Any]:
    """K sold-out checkouts one after another (after a few not counted); the delays, in ms."""
    await suite.stock(SOLD_OUT_SKU, 0)
    delays: list[float] = []
    problems: list[str] = []
    async with suite.client("orchestrator") as orchestrator:
        for index in range(REFUSAL_WARMUP + k):
            answer = await orchestrator.post("/checkouts", json=_refusal_body(index))
            if answer.status_code not in (201, 202):
                problems.append(f"HTTP {answer.status_code}: {answer.text[:200]}")
                continue
            checkout_id = answer.json()["id"]
            view = await _until_terminal(orchestrator, checkout_id, 30.0)
            delay = _compensation_delay_ms(view) if view is not None else None
            if index < REFUSAL_WARMUP:
                continue
            if delay is None:
                steps = view["steps"] if view else "not terminal in 30 s"
                problems.append(f"{checkout_id}: {view['status'] if view else '-'} {steps}")
            else:
                delays.append(delay)
    ordered = sorted(delays)
    return {
        "k": k,
        "steps": REFUSAL_STEPS,
        "ok": len(delays),
        "errors": k - len(delays),
        "error_samples": problems[:5],
        "p50_ms": percentile(ordered, 50),
        "p95_ms": percentile(ordered, 95),
        "p99_ms": percentile(ordered, 99),
        "max_ms": ordered[-1] if ordered else float("nan"),
        "delays_ms": delays,
    }


# --- the whole part ---------------------------------------------------------------------------


def run(bench: Bench) -> dict[str, Any]:
    """Both tables' numbers (``Bench.extras["coordination"]``): side by side, then the faults."""
    from bench import coordination_faults

    options = bench.options
    sizes = Sizes.quick() if options.quick else Sizes()
    reason = broker_unavailable_reason(options.broker_url)
    host, port = broker_address(options.broker_url)
    broker = None if reason else BrokerCpu()
    data: dict[str, Any] = {
        "sizes": asdict(sizes),
        "plan": options.plan,
        "broker": {
            "address": f"{host}:{port}",
            "pids": broker.pids if broker else [],
            "unavailable": reason,
        },
        "modes": {},
        "skipped": {},
        "errors": [],
    }
    if reason:
        bench.say(f"SKIPPED choreography: {reason}")
        data["skipped"]["choreography"] = reason
    elif not broker_pids():
        data["broker"]["note"] = "no beam.smp process found: the broker's CPU is not measured"
    for mode in MODES:
        if mode in data["skipped"]:
            continue
        bench.say(f"== coordination side by side: {mode}")
        try:
            data["modes"][mode] = measure_mode(bench, mode, sizes, broker)
        except Exception as exc:
            data["errors"].append(f"side by side, {mode}: {type(exc).__name__}: {exc}")
            bench.say(f"  FAILED: {type(exc).__name__}: {exc}")
    data["faults"] = coordination_faults.run_all(bench, sizes, data["skipped"].get("choreography"))
    return data


def failures(data: dict[str, Any]) -> int:
    """What should fail the bench's exit status: errors of the measured checkouts, or a crash."""
    count = len(data["errors"])
    for measured in data["modes"].values():
        count += sum(r["errors"] for r in measured["loads"]) + measured["refusal"]["errors"]
    return count


# --- the report -------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 2) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return f"{value:.{digits}f}"


def load_line(r: dict[str, Any]) -> str:
    cpu = r["cpu_ms"]
    split = " ".join(f"{k} {v:.2f}" for k, v in cpu.items())
    return (
        f"  C={r['concurrency']:<3} ok {r['ok']}/{r['requested']} errors {r['errors']}"
        f"{' (TIME LIMIT)' if r['timed_out'] else ''}  {r['throughput']:.0f}/s  "
        f"p50 {r['p50_ms']:.2f} p95 {r['p95_ms']:.2f} p99 {r['p99_ms']:.2f} ms  "
        f"CPU ms/checkout {r['cpu_total_ms']:.2f} ({split})"
        + (f"\n    errors: {r['error_samples']}" if r["errors"] else "")
    )


def refusal_line(r: dict[str, Any]) -> str:
    return (
        f"  refusal → last compensation ({r['steps']}): {r['ok']}/{r['k']}  "
        f"p50 {_f(r['p50_ms'])} p95 {_f(r['p95_ms'])} max {_f(r['max_ms'])} ms"
        + (f"\n    errors: {r['error_samples']}" if r["errors"] else "")
    )


SIDE_COLUMNS = [
    "coordination", "measure", "C", "ok/N", "err", "checkouts/s", "p50 ms", "p95 ms", "p99 ms",
    "CPU ms/co, all processes", "orchestrator", "warehouse", "rewards", "email", "broker (beam.smp)",
]  # fmt: skip


def side_rows(data: dict[str, Any]) -> list[list[str]]:
    out: list[list[str]] = []
    for mode in MODES:
        if mode in data["skipped"]:
            out.append([mode, f"skipped: {data['skipped'][mode]}"] + ["-"] * 13)
            continue
        if mode not in data["modes"]:
            out.append([mode, "failed (see the errors below)"] + ["-"] * 13)
            continue
        measured = data["modes"][mode]
        for r in measured["loads"]:
            cpu = r["cpu_ms"]
            broker = cpu.get("broker")
            shown = _f(broker) if mode == "choreography" else f"({_f(broker)})"
            out.append(
                [
                    mode,
                    "POST /checkouts → 201 completed",
                    str(r["concurrency"]),
                    f"{r['ok']}/{r['requested']}" + (" ⏱" if r["timed_out"] else ""),
                    str(r["errors"]),
                    _f(r["throughput"], 0),
                    _f(r["p50_ms"]),
                    _f(r["p95_ms"]),
                    _f(r["p99_ms"]),
                    _f(r["cpu_total_ms"]),
                    *(_f(cpu.get(name)) for name in PROCESSES),
                    shown if broker is not None else "-",
                ]
            )
        refusal = measured["refusal"]
        out.append(
            [
                mode,
                "refusal → last compensation",
                "1",
                f"{refusal['ok']}/{refusal['k']}",
                str(refusal["errors"]),
                "-",
                _f(refusal["p50_ms"]),
                _f(refusal["p95_ms"]),
                _f(refusal["p99_ms"]),
                *["-"] * 6,
            ]
        )
    return out


def _markdown(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _text(columns: list[str], rows: list[list[str]]) -> str:
    table = [columns, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def _side_notes(data: dict[str, Any]) -> list[str]:
    sizes = data["sizes"]
    broker = data["broker"]
    plan = ", ".join(f"N={n} at C={c}" for n, c in data["plan"])
    return [
        f"- **Setup**: per mode, the orchestrator and the three real services, one uvicorn process "
        f"each, on fresh SQLite files (a directory per mode), `COORDINATION` the same on all four; "
        f"RabbitMQ at {broker['address']} (already running: `beam.smp` pids "
        f"{', '.join(map(str, broker['pids'])) or '-'}), an events prefix of the run's own. "
        f"Loads by `bench.load` as above ({plan}, each after a warm-up); a checkout counts only "
        'if answered `201` with `"status": "completed"`: in choreography `POST /checkouts` '
        "waits for the journal to see the last event (up to `CHECKOUT_SYNC_DEADLINE_S`, 30 s).",
        "- **CPU ms/co, all processes**: user+system CPU per completed checkout over the measured "
        "window, summed over the orchestrator and the three services, plus the broker in "
        "choreography. The broker's CPU under orchestration (in parentheses) is not counted: "
        "nothing of the suite uses it then, so it is whatever else the broker did meanwhile "
        "(the broker is not the bench's own: other users of it are charged to choreography too).",
        f"- **Refusal → last compensation**: {sizes['refusals']} sold-out checkouts one after "
        f"another (after {REFUSAL_WARMUP} not counted) of a rewards member with "
        f"`CHECKOUT_STEPS={REFUSAL_STEPS}` (the orchestrator restarted with it): rewards credits, "
        "warehouse refuses, rewards reverses. The delay is the rewards step's `compensated_at` "
        "minus the warehouse step's `finished_at` in `GET /checkouts/{id}` (in choreography, "
        "the services' own clocks, on this one machine); p99 of so few is their maximum.",
    ]


FAULT_COLUMNS = [
    "fault", "coordination", "placed", "finished", "failed", "effects applied twice",
    "effects left behind", "time to recover s", "what happened",
]  # fmt: skip


def fault_rows(data: dict[str, Any]) -> list[list[str]]:
    out = []
    for row in data["faults"]:
        if row["state"] != "measured":
            out.append([row["fault"], row["coordination"], *["-"] * 6, row["note"]])
            continue
        recovery = row["recovery_s"]
        out.append(
            [
                row["fault"],
                row["coordination"],
                str(row["placed"]),
                str(row["finished"]),
                str(row["failed"]),
                str(row["twice"]),
                str(row["left_behind"]),
                _f(recovery, 1)
                if recovery is not None
                else f"> {row['bound_s']:.0f} (not all ended)",
                row["note"],
            ]
        )
    return out


def _fault_notes(data: dict[str, Any]) -> list[str]:
    from bench.coordination_faults import notes

    return notes(Sizes(**data["sizes"]))


def _errors(data: dict[str, Any]) -> list[str]:
    return [f"- **Error** {error}" for error in data["errors"]]


def report_markdown(data: dict[str, Any]) -> str:
    lines = [
        "### Orchestration and choreography side by side",
        "",
        *_side_notes(data),
        "",
        _markdown(SIDE_COLUMNS, side_rows(data)),
        "",
        "### The same faults, both ways",
        "",
        *_fault_notes(data),
        "",
        _markdown(FAULT_COLUMNS, fault_rows(data)),
    ]
    errors = _errors(data)
    return "\n".join(lines + (["", *errors] if errors else []))


def report_text(data: dict[str, Any]) -> str:
    lines = [
        "orchestration and choreography side by side:",
        _text(SIDE_COLUMNS, side_rows(data)),
        "",
        "the same faults, both ways:",
        _text(FAULT_COLUMNS, fault_rows(data)),
    ]
    return "\n".join(lines + _errors(data))
