"""Render a run's ``--json`` file again as the report block (after a change to the report's format).

``python -m bench.render RUN.json --output BENCHMARKS.md`` replaces the generated block of the output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

from bench import emit, report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--command", help="the command that made the run (if the JSON lacks it)")
    args = parser.parse_args(argv)
    run = json.loads(args.run.read_text())
    stored = run.get("options", {})
    options = SimpleNamespace(
        command=args.command or stored.get("command", "python -m bench"),
        plan=[tuple(p) for p in stored.get("plan", [(300, 1), (3000, 32)])],
        time_limit_s=stored.get("time_limit_s", 60.0),
        idempotency_keys=stored.get("idempotency_keys", False),
    )
    text = report.render(
        run["results"], [tuple(s) for s in run["skipped"]], run["machine"], options, run["extras"]
    )
    report.write(args.output, text)
    emit(report.table(run["results"], markdown=False))
    emit(report.targets_text(run["results"]))


if __name__ == "__main__":
    main()
