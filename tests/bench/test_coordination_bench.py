"""The coordination part of the bench still runs: ``python -m bench --quick --coordination-only``.

It starts the orchestrator and the three real services in each mode (RabbitMQ for
choreography), sends tiny bounded loads and causes every fault once. No speed is asserted: only
what holds on any machine: both modes measured without errors, CPU charged to every process
(the broker's too, in choreography), a refusal compensated in each mode, and every fault row
present, each measured fault ending every checkout it placed with no effect applied twice or
left behind. Skipped with the reason when no RabbitMQ answers, unless ``REQUIRE_BROKER=1``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from bench.coordination import broker_unavailable_reason
from tests.bench.running import run_bench

BROKER_URL = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
REQUIRE_BROKER = os.environ.get("REQUIRE_BROKER") == "1"
QUICK_LEVELS = {1, 8}
PROCESSES = ("orchestrator", "warehouse", "rewards", "email")
# Nine fresh suites of four processes, each start about 4 s of CPU: about a minute on 2 cores.
TIMEOUT_S = 300


def run_coordination_bench(output: Path, raw: Path) -> tuple[int, str]:
    """The coordination part alone, bounded."""
    args = ["--quick", "--coordination-only", "--broker-url", BROKER_URL]
    args += ["--output", str(output), "--json", str(raw)]
    return run_bench(args, timeout_s=TIMEOUT_S, what="coordination bench")


def _fault(rows: list[dict[str, Any]], letter: str, mode: str) -> dict[str, Any]:
    found = [r for r in rows if r["fault"].startswith(f"({letter})") and r["coordination"] == mode]
    assert len(found) == 1, (letter, mode, rows)
    return found[0]


@pytest.mark.e2e
def test_quick_coordination_bench_measures_both_modes_and_every_fault(tmp_path: Path) -> None:
    reason = broker_unavailable_reason(BROKER_URL)
    if reason is not None:
        if REQUIRE_BROKER:
            pytest.fail(reason)
        pytest.skip(f"{reason}; set TEST_BROKER_URL to run the choreography side")
    output, raw = tmp_path / "BENCH.md", tmp_path / "bench.json"
    returncode, out = run_coordination_bench(output, raw)
    assert returncode == 0, f"bench failed:\n{out[-4000:]}"

    run = json.loads(raw.read_text())
    assert run["results"] == [], "--coordination-only runs no other target"
    coordination = run["extras"]["coordination"]
    assert coordination["errors"] == []
    assert coordination["skipped"] == {}
    assert set(coordination["modes"]) == {"orchestration", "choreography"}
    for mode, measured in coordination["modes"].items():
        loads = measured["loads"]
        assert {r["concurrency"] for r in loads} == QUICK_LEVELS, mode
        for r in loads:
            assert r["errors"] == 0, (mode, r["error_samples"])
            assert r["ok"] == r["requested"] > 0, mode
            assert not r["timed_out"], mode
            assert r["throughput"] > 0
            assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
            assert set(r["cpu_ms"]) == {*PROCESSES, "broker"}
            assert all(r["cpu_ms"][name] > 0 for name in PROCESSES), (mode, r["cpu_ms"])
            assert r["cpu_total_ms"] >= sum(r["cpu_ms"][name] for name in PROCESSES)
            if mode == "choreography":
                # Every event goes through the broker: it must have worked for them.
                assert r["cpu_ms"]["broker"] > 0, r["cpu_ms"]
        refusal = measured["refusal"]
        assert refusal["errors"] == 0, (mode, refusal["error_samples"])
        assert refusal["ok"] == refusal["k"] > 0
        assert all(delay >= 0 for delay in refusal["delays_ms"])
        assert refusal["p50_ms"] > 0

    faults = coordination["faults"]
    assert len(faults) == 10, faults
    measured_faults = [
        (letter, mode) for letter in "abd" for mode in ("orchestration", "choreography")
    ]
    if shutil.which("rabbitmqctl"):
        measured_faults.append(("c", "choreography"))
    else:
        assert _fault(faults, "c", "choreography")["state"] == "skipped"
    for letter, mode in measured_faults:
        row = _fault(faults, letter, mode)
        assert row["state"] == "measured", row
        assert row["placed"] > 0, row
        assert row["finished"] == row["placed"], row
        assert row["twice"] == 0, row["problems"]
        assert row["left_behind"] == 0, row["problems"]
        assert row["recovery_s"] is not None, row
        assert row["recovery_s"] >= 0, row
    assert _fault(faults, "c", "orchestration")["state"] == "not involved"
    for mode in ("orchestration", "choreography"):
        assert _fault(faults, "e", mode)["state"] == "n/a"

    report = output.read_text()
    assert "<!-- bench:begin -->" in report
    assert "<!-- bench:end -->" in report
    assert "### Orchestration and choreography side by side" in report
    assert "### The same faults, both ways" in report
    lines = report.splitlines()
    for mode in ("orchestration", "choreography"):
        assert sum(line.startswith(f"| {mode} | POST /checkouts") for line in lines) == 2
        assert sum(line.startswith(f"| {mode} | refusal") for line in lines) == 1
    assert sum(line.startswith("| (") for line in lines) == 10
