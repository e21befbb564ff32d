"""The plans part of the bench still runs: ``python -m bench --quick --plans-only``.

Both plans (in sequence, and rewards+email at once) against the stand-ins with 20 ms per call
and against the real services, tiny bounded loads. Only what holds on any machine is asserted:
every checkout completed, all four rows and their CPU present, and with 20 ms in front of each
call the concurrent plan's median at C=1 well below the sequential one's (it saves one call of
20 ms out of three, far more than this machine's noise at C=1).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.running import run_bench

TIMEOUT_S = 300


@pytest.mark.e2e
def test_quick_plans_bench_measures_both_plans_on_both_kinds_of_services(tmp_path: Path) -> None:
    """Four rows, no errors, and the 20 ms saved per checkout visible at C=1."""
    output, raw = tmp_path / "BENCH.md", tmp_path / "bench.json"
    returncode, out = run_bench(
        ["--quick", "--plans-only", "--output", str(output), "--json", str(raw)],
        timeout_s=TIMEOUT_S,
        what="plans bench",
    )
    assert returncode == 0, f"bench failed:\n{out[-4000:]}"

    run = json.loads(raw.read_text())
    assert run["results"] == [], "--plans-only runs no other target"
    assert "coordination" not in run["extras"]
    rows = run["extras"]["plans"]["rows"]
    assert [(r["setting"].split()[0], r["steps"]) for r in rows] == [
        ("stand-ins", "warehouse,rewards,email"),
        ("stand-ins", "warehouse,rewards+email"),
        ("real", "warehouse,rewards,email"),
        ("real", "warehouse,rewards+email"),
    ]
    for row in rows:
        assert {load["concurrency"] for load in row["loads"]} == {1, 8}
        for load in row["loads"]:
            assert (load["errors"], load["ok"]) == (0, load["requested"]), load
            assert load["cpu_ms"]["orchestrator"] > 0
    at_one = [
        next(load for load in row["loads"] if load["concurrency"] == 1)["p50_ms"]
        for row in rows[:2]
    ]
    # 3 x 20 ms in sequence, 2 x 20 ms at once: about 60+ against 40+ ms.
    assert at_one[1] < at_one[0] - 10, at_one
    assert "### Steps in sequence or at once" in output.read_text()
