"""Compare runs of the bench (their ``--json`` files): how much the numbers move between runs.

``python -m bench.compare run1.json run2.json [...]`` prints a markdown table per target and
concurrency: the target process's CPU ms/checkout, throughput and p50 of each run, and the spread
((max − min) / mean).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench import emit


def _spread(values: list[float]) -> str:
    if len(values) < 2 or not all(v == v for v in values):
        return "-"
    mean = sum(values) / len(values)
    return f"{(max(values) - min(values)) / mean:.0%}" if mean else "-"


def compare(runs: list[dict[str, Any]]) -> str:
    keys: list[tuple[str, int]] = []
    by_run: list[dict[tuple[str, int], dict[str, Any]]] = []
    for run in runs:
        rows = {(r["target"], r["concurrency"]): r for r in run["results"]}
        by_run.append(rows)
        keys += [k for k in rows if k not in keys]
    n = len(runs)
    names = " | ".join(f"run {i + 1}" for i in range(n))
    head = f"| target | C | CPU ms/co: {names} | spread | checkouts/s: {names} | spread | p50 ms: {names} | spread |"
    lines = [head, "|" + "---|" * (2 + 3 * (n + 1))]
    for key in keys:
        found = [rows.get(key) for rows in by_run]
        cells = [key[0], str(key[1])]
        for metric in ("cpu", "throughput", "p50_ms"):
            values = [
                (r["cpu_ms"]["target"] if metric == "cpu" else r[metric])
                if r and r["ok"]
                else float("nan")
                for r in found
            ]
            digits = 0 if metric == "throughput" else 2
            cells += [f"{v:.{digits}f}" if v == v else "-" for v in values] + [_spread(values)]
        lines.append("| " + " | ".join(cells) + " |")
    load = ", ".join(
        f"run {i + 1}: {run['machine'].get('load_average_start', '?')} → {run['machine'].get('load_average_end', '?')}"
        for i, run in enumerate(runs)
    )
    return "\n".join(lines) + f"\n\nLoad average (1, 5, 15 min) at start → end: {load}."


def main(argv: list[str] | None = None) -> None:
    paths = argv if argv is not None else sys.argv[1:]
    if len(paths) < 2:
        raise SystemExit("usage: python -m bench.compare RUN1.json RUN2.json [...]")
    emit(compare([json.loads(Path(p).read_text()) for p in paths]))


if __name__ == "__main__":
    main()
