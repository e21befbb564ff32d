"""``python -m bench ARGS`` from a test, bounded: on a hang its whole process group is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_bench(args: list[str], *, timeout_s: float, what: str) -> tuple[int, str]:
    """Run the bench in a process group of its own; its exit code and output.

    On a hang, the group (the bench and every server it started) is killed and the test fails,
    naming ``what`` and showing the end of the output.
    """
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = bench.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(bench.pid, signal.SIGKILL)
        out, _ = bench.communicate()
        pytest.fail(f"the {what} did not finish within {timeout_s} s:\n{out[-4000:]}")
    return bench.returncode, out
