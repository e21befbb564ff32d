"""Steps in sequence or at once: the same checkouts under two ``CHECKOUT_STEPS``, in one run.

``warehouse,rewards,email`` (the default: each step waits for the one before it) against
``warehouse,rewards+email`` (rewards and email at once, after the reservation), each on a fresh
orchestrator (SQLite journal) against two kinds of services:

- the stand-ins with ``STANDIN_DELAY_MS`` (20 ms) added to every call: services slower than
  the orchestrator, as real ones over a network are; running two of the three calls at once
  should save about one call's latency per checkout;
- the real services on fresh SQLite files (``bench.coordination.Suite``), no added latency:
  what running steps at once costs or saves when the services answer in a millisecond.

Each pair is measured back to back under the bench's plan (N at C): p50 at C=1 and throughput
at C=32 are the figures to compare, with the CPU per checkout of the orchestrator and of all
processes. Every checkout is a rewards member's, so all three steps run.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.procs import Server
from bench.runner import (
    ORCHESTRATOR_APP,
    ORCHESTRATOR_ENV,
    SERVICE_TOKEN,
    SERVICES,
    STANDIN_APP,
    Bench,
    CpuSource,
)

PLANS = ("warehouse,rewards,email", "warehouse,rewards+email")
DELAY_MS = 20
SETTINGS = (f"stand-ins +{DELAY_MS} ms per call", "real services (SQLite)")
LOAD_SKU = "SKU-001"


def _measure(bench: Bench, url: str, watch: list[tuple[str, CpuSource]]) -> list[dict[str, Any]]:
    loads = []
    for n, concurrency in bench.options.plan:
        result = bench._load(
            url,
            n,
            concurrency,
            warmup=bench.warmup_for(n, concurrency),
            time_limit_s=bench.options.time_limit_s,
            watch=watch,
        )
        result["cpu_total_ms"] = sum(result["cpu_ms"].values())
        loads.append(result)
        bench.say(
            f"    C={concurrency:<3} ok {result['ok']}/{result['requested']} errors "
            f"{result['errors']}  {result['throughput']:.0f}/s  p50 {result['p50_ms']:.2f} ms  "
            f"CPU ms/checkout orchestrator {result['cpu_ms']['orchestrator']:.2f}, "
            f"all {result['cpu_total_ms']:.2f}"
        )
    return loads


def _on_standins(bench: Bench, steps: str, standins: dict[str, Server]) -> list[dict[str, Any]]:
    directory = bench.workdir / "plans" / f"standins-{steps.replace('+', '_').replace(',', '-')}"
    directory.mkdir(parents=True, exist_ok=True)
    env = ORCHESTRATOR_ENV | {
        "CHECKOUT_STEPS": steps,
        "DATABASE_URL": f"sqlite:///{directory / 'orchestrator.db'}",
    }
    env |= {f"{name.upper()}_URL": standins[name].url for name in SERVICES}
    orchestrator = Server("plans-orchestrator", ORCHESTRATOR_APP, env, directory).start()
    try:
        watch: list[tuple[str, CpuSource]] = [("orchestrator", orchestrator)]
        watch += list(standins.items())
        return _measure(bench, orchestrator.url, watch)
    finally:
        orchestrator.stop()


def _on_real_services(bench: Bench, steps: str) -> list[dict[str, Any]]:
    from bench.coordination import PROCESSES, Suite

    directory = bench.workdir / "plans" / f"real-{steps.replace('+', '_').replace(',', '-')}"
    suite = Suite("orchestration", directory, bench.options.broker_url, steps=steps)
    try:
        suite.start()
        asyncio.run(suite.stock(LOAD_SKU, 1_000_000_000))
        watch: list[tuple[str, CpuSource]] = [(name, suite.servers[name]) for name in PROCESSES]
        return _measure(bench, suite.url("orchestrator"), watch)
    finally:
        suite.stop()


def run(bench: Bench) -> dict[str, Any]:
    """Both plans on both kinds of services (``Bench.extras["plans"]``)."""
    data: dict[str, Any] = {"delay_ms": DELAY_MS, "plan": bench.options.plan, "rows": []}
    standins = {
        name: Server(
            f"plans-standin-{name}",
            STANDIN_APP,
            {
                "STANDIN_NAME": name,
                "STANDIN_DELAY_MS": str(DELAY_MS),
                "SERVICE_TOKEN": SERVICE_TOKEN,
            },
            bench.workdir,
        )
        for name in SERVICES
    }
    try:
        for server in standins.values():
            server.start()
        for setting in SETTINGS:
            for steps in PLANS:
                bench.say(f"== steps {steps} against {setting}")
                if setting == SETTINGS[0]:
                    loads = _on_standins(bench, steps, standins)
                else:
                    loads = _on_real_services(bench, steps)
                data["rows"].append({"setting": setting, "steps": steps, "loads": loads})
    finally:
        for server in standins.values():
            server.stop()
    return data


def failures(data: dict[str, Any]) -> int:
    return sum(load["errors"] for row in data["rows"] for load in row["loads"])


def columns(data: dict[str, Any]) -> list[str]:
    """The table's header, naming the lowest and the highest concurrency of the plan."""
    low, high = min(c for _, c in data["plan"]), max(c for _, c in data["plan"])
    return [
        "services", "CHECKOUT_STEPS", f"C={low} p50 ms", f"C={low} checkouts/s",
        f"C={high} checkouts/s", f"C={high} p50 ms",
        f"orchestrator CPU ms/co C={low} / C={high}", f"all CPU ms/co C={low} / C={high}",
        f"vs in sequence: C={low} p50 / C={high} thr",
    ]  # fmt: skip


def _by_concurrency(loads: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The lowest-concurrency and the highest-concurrency load of a row."""
    ordered = sorted(loads, key=lambda load: load["concurrency"])
    return ordered[0], ordered[-1]


def rows(data: dict[str, Any]) -> list[list[str]]:
    out = []
    sequential: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for row in data["rows"]:
        low, high = _by_concurrency(row["loads"])
        if row["steps"] == PLANS[0]:
            sequential[row["setting"]] = (low, high)
            versus = "1 / 1"
        else:
            base_low, base_high = sequential[row["setting"]]
            versus = (
                f"{low['p50_ms'] / base_low['p50_ms']:.2f}× / "
                f"{high['throughput'] / base_high['throughput']:.2f}×"
            )
        out.append(
            [
                row["setting"],
                f"`{row['steps']}`",
                f"{low['p50_ms']:.2f}",
                f"{low['throughput']:.0f}",
                f"{high['throughput']:.0f}",
                f"{high['p50_ms']:.1f}",
                f"{low['cpu_ms']['orchestrator']:.2f} / {high['cpu_ms']['orchestrator']:.2f}",
                f"{low['cpu_total_ms']:.2f} / {high['cpu_total_ms']:.2f}",
                versus,
            ]
        )
    return out


def report_markdown(data: dict[str, Any]) -> str:
    plan = ", ".join(f"N={n} at C={c}" for n, c in data["plan"])
    lines = [
        "### Steps in sequence or at once",
        "",
        f"- **Setup**: per row a fresh orchestrator (SQLite journal) with that `CHECKOUT_STEPS`, "
        f"against the stand-ins with {data['delay_ms']} ms added to every call, or against the "
        f"three real services on fresh SQLite files; {plan}, every checkout a rewards member's "
        "(all three steps run). The two plans of a kind of services are measured back to back.",
        "- **vs in sequence**: p50 at the lowest concurrency and throughput at the highest of the "
        "concurrent plan over the sequential one on the same services (below 1 is faster for p50, above 1 for throughput).",
        "",
        "| " + " | ".join(columns(data)) + " |",
        "|" + "---|" * len(columns(data)),
        *("| " + " | ".join(row) + " |" for row in rows(data)),
    ]
    return "\n".join(lines)


def report_text(data: dict[str, Any]) -> str:
    header = columns(data)
    table = [header, *rows(data)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["steps in sequence or at once:"]
    lines += [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    return "\n".join(lines)
