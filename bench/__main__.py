"""``python -m bench``: the benchmark (``make bench``). See BENCHMARKS.md and ``--help``."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from bench.runner import DEFAULT_BROKER_URL, Options, run

FULL_PLAN = [(300, 1), (3000, 32)]
QUICK_PLAN = [(20, 1), (50, 8)]


def _plan(text: str) -> list[tuple[int, int]]:
    """``300x1,3000x32`` → [(300, 1), (3000, 32)]."""
    plan = []
    for part in text.split(","):
        n, _, c = part.strip().partition("x")
        plan.append((int(n), int(c)))
    return plan


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Start stand-in services, two non-durable baselines, Restate 1.7 with its Python SDK "
            "and the orchestrator (SQLite, PostgreSQL) as processes on 127.0.0.1; send bounded loads "
            "of checkouts; report throughput, latency, errors and CPU ms per checkout per process."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: N=20 at C=1, N=50 at C=8, SQLite only (no Restate unless in --targets)",
    )
    parser.add_argument("--plan", type=_plan, help="NxC pairs, default 300x1,3000x32")
    parser.add_argument(
        "--time-limit", type=float, help="cap on each measured run in s (default 60; quick 20)"
    )
    parser.add_argument(
        "--warmup", type=int, help="warm-up checkouts before each run (default: by N and C)"
    )
    parser.add_argument(
        "--targets",
        help="comma-separated subset: baseline-httpx, baseline-aiohttp, restate, orchestrator-sqlite, orchestrator-postgres",
    )
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL target")
    parser.add_argument("--no-restate", action="store_true", help="skip the Restate target")
    parser.add_argument(
        "--restate-dir",
        type=Path,
        help="where restate-server is installed with npm on first use, and found after "
        "(default ~/.cache/checkout-suite/restate-VERSION)",
    )
    parser.add_argument(
        "--restate-http",
        choices=("2", "1.1"),
        default="2",
        help="how restate-server calls the SDK process: HTTP/2 (hypercorn, default) or HTTP/1.1 "
        "(uvicorn; the SDK then answers in request-response mode)",
    )
    parser.add_argument(
        "--postgres-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="an admin connection; the bench (re)creates --postgres-db there",
    )
    parser.add_argument("--postgres-db", default="checkout_bench")
    parser.add_argument(
        "--real-services", action="store_true", help="also run against our real services (SQLite)"
    )
    parser.add_argument(
        "--idempotency-keys", action="store_true", help="send a fresh Idempotency-Key per checkout"
    )
    parser.add_argument(
        "--prefill",
        type=int,
        default=0,
        help="add a target whose SQLite journal holds this many checkouts",
    )
    parser.add_argument(
        "--prefill-cache", type=Path, help="reuse (or keep) the pre-filled journal at this path"
    )
    parser.add_argument(
        "--memory", type=int, default=0, help="then run this many checkouts at C=32 sampling RSS"
    )
    parser.add_argument("--memory-time-limit", type=float, default=900.0)
    parser.add_argument(
        "--profile",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="then py-spy the orchestrator (C=32 on SQLite unless told otherwise)",
    )
    parser.add_argument(
        "--profile-concurrency", type=int, default=32, help="checkouts in flight while profiling"
    )
    parser.add_argument(
        "--profile-database",
        choices=["SQLite", "PostgreSQL"],
        default="SQLite",
        help="the journal's database while profiling",
    )
    parser.add_argument("--profile-dir", type=Path, help="where the raw py-spy profile goes")
    parser.add_argument("--profile-all-threads", action="store_true", help="py-spy without --gil")
    parser.add_argument("--profile-native", action="store_true", help="py-spy --native")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("BENCHMARKS.md"),
        help="markdown report (its generated block is replaced)",
    )
    parser.add_argument("--json", type=Path, help="also write every number as JSON here")
    parser.add_argument(
        "--orchestrator-workers", type=int, default=1, help="uvicorn --workers for the orchestrator"
    )
    parser.add_argument(
        "--orchestrator-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of every orchestrator target (repeatable), e.g. RATE_LIMIT= or LOG_LEVEL=debug",
    )
    parser.add_argument(
        "--skip-targets", action="store_true", help="only the --memory / --profile runs"
    )
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs and databases")
    coordination = parser.add_mutually_exclusive_group()
    coordination.add_argument(
        "--no-coordination",
        action="store_true",
        help="skip orchestration vs choreography (side by side, and the same faults both ways)",
    )
    coordination.add_argument(
        "--coordination-only",
        action="store_true",
        help="run only those two tables (real services on SQLite, RabbitMQ for choreography)",
    )
    plans = parser.add_mutually_exclusive_group()
    plans.add_argument(
        "--no-plans",
        action="store_true",
        help="skip steps in sequence vs at once (CHECKOUT_STEPS=warehouse,rewards+email)",
    )
    plans.add_argument(
        "--plans-only",
        action="store_true",
        help="run only that table (stand-ins with 20 ms per call, and the real services)",
    )
    parser.add_argument(
        "--broker-url",
        default=os.environ.get("BROKER_URL", DEFAULT_BROKER_URL),
        help="RabbitMQ on 127.0.0.1 for choreography (default $BROKER_URL or %(default)s); "
        "choreography is skipped with the reason if nothing answers there",
    )
    args = parser.parse_args(argv)
    plan = args.plan or (QUICK_PLAN if args.quick else FULL_PLAN)
    targets = [t.strip() for t in args.targets.split(",")] if args.targets else None
    return Options(
        plan=plan,
        time_limit_s=args.time_limit or (20.0 if args.quick else 60.0),
        warmup=args.warmup if args.warmup is not None else (5 if args.quick else None),
        targets=targets,
        postgres_url=args.postgres_url,
        postgres_db=args.postgres_db,
        postgres=not (args.no_postgres or args.quick),
        real_services=args.real_services,
        idempotency_keys=args.idempotency_keys,
        prefill=args.prefill,
        prefill_cache=args.prefill_cache,
        memory=args.memory,
        memory_time_limit_s=args.memory_time_limit,
        profile_s=args.profile,
        profile_dir=args.profile_dir,
        profile_concurrency=args.profile_concurrency,
        profile_database=args.profile_database,
        profile_native=args.profile_native,
        profile_all_threads=args.profile_all_threads,
        output=args.output,
        json_output=args.json,
        command=shlex.join(["python", "-m", "bench", *argv]),
        quick=args.quick,
        keep_workdir=args.keep_workdir,
        skip_targets=args.skip_targets,
        orchestrator_workers=args.orchestrator_workers,
        coordination=not args.no_coordination,
        coordination_only=args.coordination_only,
        broker_url=args.broker_url,
        orchestrator_env={
            name: value
            for name, _, value in (item.partition("=") for item in args.orchestrator_env)
        },
        plans=not args.no_plans,
        plans_only=args.plans_only,
        restate=not args.no_restate and (not args.quick or "restate" in (targets or [])),
        restate_dir=args.restate_dir,
        restate_http=args.restate_http,
    )


def main(argv: list[str] | None = None) -> int:
    return run(parse(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    raise SystemExit(main())
