"""The Restate target still runs: ``python -m bench --targets restate`` on a tiny plan.

restate-server 1.7.12 is installed with npm into the user's cache the first time (a few seconds;
a fresh clone finds it there after), then the bench starts it, the SDK service and the stand-ins,
and sends 20 checkouts at C=1 and 50 at C=4. No speed is asserted: only that every checkout was
answered completed, that each stand-in answered exactly one call per checkout (the three steps
ran once each, none replayed against a service), and that the target's CPU is restate-server's
plus the SDK process's. Skipped with the reason where npm or its registry is unavailable, unless
``REQUIRE_RESTATE=1``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import restate
from tests.bench.running import run_bench

REQUIRE_RESTATE = os.environ.get("REQUIRE_RESTATE") == "1"
PLAN = {1: 20, 4: 50}
# The run itself takes about 10 s; this only bounds a hang.
TIMEOUT_S = 120


def _restate_unavailable_reason() -> str | None:
    """None once restate-server is installed (installing it now if needed), else why not."""
    reason = restate.sdk_unavailable_reason("2")
    if reason is not None:
        return reason
    try:
        restate.install(restate.default_install_dir())
    except (restate.RestateUnavailable, OSError) as exc:
        return str(exc)
    return None


@pytest.mark.e2e
def test_the_restate_target_completes_every_checkout_with_three_calls_each(
    tmp_path: Path,
) -> None:
    reason = _restate_unavailable_reason()
    if reason is not None:
        if REQUIRE_RESTATE:
            pytest.fail(reason)
        pytest.skip(f"Restate cannot run here: {reason}")
    output, raw = tmp_path / "BENCH.md", tmp_path / "bench.json"
    plan = ",".join(f"{n}x{c}" for c, n in PLAN.items())
    args = ["--targets", "restate", "--plan", plan, "--warmup", "5", "--time-limit", "30"]
    args += ["--no-coordination", "--no-plans", "--output", str(output), "--json", str(raw)]
    returncode, out = run_bench(args, timeout_s=TIMEOUT_S, what="restate bench")
    assert returncode == 0, f"bench failed:\n{out[-4000:]}"

    run = json.loads(raw.read_text())
    assert run["skipped"] == []
    results = run["results"]
    assert [(r["target"], r["concurrency"]) for r in results] == [("restate", c) for c in PLAN]
    for r in results:
        n = PLAN[r["concurrency"]]
        assert (r["ok"], r["errors"], r["requested"]) == (n, 0, n), r["error_samples"]
        assert r["statuses"] == {"200": n}
        assert not r["timed_out"]
        assert r["posts_per_checkout"] == {"warehouse": 1.0, "rewards": 1.0, "email": 1.0}
        parts = r["target_cpu_ms"]
        assert set(parts) == {"restate-server", "SDK service"}
        assert all(ms > 0 for ms in parts.values())
        assert r["cpu_ms"]["target"] == pytest.approx(sum(parts.values()))

    report = output.read_text()
    assert sum(line.startswith("| restate | stand-ins |") for line in report.splitlines()) == 2
    assert "- **Restate**: `restate-server` 1.7.12" in report
