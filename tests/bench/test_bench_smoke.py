"""The bench still runs: ``python -m bench --quick`` end to end, so it cannot rot unnoticed.

It starts real uvicorn processes (stand-ins, both baselines, the orchestrator on SQLite), sends
tiny bounded loads and writes the report. No speed is asserted: only that every target answered
every checkout and the report holds the table.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.running import run_bench

# The orchestrator as `checkout-suite serve` starts it (its defaults), and the tuned row.
TARGETS = (
    "baseline-httpx",
    "baseline-aiohttp",
    "orchestrator-sqlite",
    "orchestrator-sqlite tuned",
)
QUICK_LEVELS = {1, 8}
TIMEOUT_S = 240


def run_quick_bench(output: Path, raw: Path) -> tuple[int, str]:
    """The quick bench, targets only: plans and coordination have tests of their own."""
    args = ["--quick", "--no-plans", "--no-coordination", "--output", str(output)]
    return run_bench([*args, "--json", str(raw)], timeout_s=TIMEOUT_S, what="quick bench")


@pytest.mark.e2e
def test_quick_bench_runs_every_target_without_errors(tmp_path: Path) -> None:
    output, raw = tmp_path / "BENCH.md", tmp_path / "bench.json"
    returncode, out = run_quick_bench(output, raw)
    assert returncode == 0, f"bench failed:\n{out[-4000:]}"

    results = json.loads(raw.read_text())["results"]
    seen = {(r["target"], r["concurrency"]) for r in results}
    assert seen == {(t, c) for t in TARGETS for c in QUICK_LEVELS}
    for r in results:
        assert r["errors"] == 0, (r["target"], r["error_samples"])
        assert r["ok"] == r["requested"] > 0, r["target"]
        assert not r["timed_out"], r["target"]
        assert set(r["cpu_ms"]) == {"target", "warehouse", "rewards", "email"}
        assert all(v >= 0 for v in r["cpu_ms"].values())

    report = output.read_text()
    assert "<!-- bench:begin -->" in report
    assert "<!-- bench:end -->" in report
    assert "| target | services | C |" in report
    for target in TARGETS:
        assert sum(line.startswith(f"| {target} |") for line in report.splitlines()) == 2
    assert "(fastest)" in report
    assert "### Targets" in report
