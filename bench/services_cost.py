"""CPU per request of the three services' hot endpoints, next to a FastAPI hello in the same run.

``python -m bench.services_cost [--n 1000] [--concurrency 1,16] [--time-limit 30] [--json PATH]``

Starts each real service (warehouse, rewards, email) as a uvicorn process on 127.0.0.1 with the
bench's server options (``bench.procs.UVICORN_OPTIONS``: uvloop, httptools, no access log) and the
service token on, on a fresh SQLite file and, if it answers, on fresh PostgreSQL databases
(``svc_bench_<service>``, recreated); and a FastAPI hello app (``POST /hello`` with a small
pydantic body, ``async def``) as the yardstick: this machine is shared, so a service's cost is
best read as a ratio to the hello's, measured minutes apart.

For every backend and concurrency, the hello first, then each scenario (``bench.services_load``:
the orchestrator's requests, one fresh checkout each; voids of a reserved or credited checkout,
prepared before the measured window): warm-up, then N requests from a separate load process,
capped at ``--time-limit`` seconds. **CPU ms/req** is user+system CPU of the service's process
(psutil) over exactly the measured window, divided by the requests answered as expected.

``--profile SCENARIO`` also records the service with py-spy (GIL holder, 250 Hz; every busy
thread with ``--profile-all-threads``) during that scenario's measured run at the highest
concurrency and prints where the time went;
``--compare A.json B.json`` puts two ``--json`` runs side by side.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from bench import emit
from bench.procs import Server, base_env, forget, stop
from bench.procs import stop_all as stop_everything

SERVICE_TOKEN = "bench-service-token"
APPS = {
    "hello": "bench.services_cost:create_hello_app",
    "warehouse": "warehouse_service.main:create_app",
    "rewards": "rewards_service.main:create_app",
    "email": "email_service.main:create_app",
}
SERVICE_OF = {
    "hello": "hello",
    "reserve": "warehouse",
    "warehouse-void": "warehouse",
    "warehouse-void-empty": "warehouse",
    "reserve-replay": "warehouse",
    "credit": "rewards",
    "rewards-void": "rewards",
    "credit-replay": "rewards",
    "email": "email",
    "email-replay": "email",
}
HOT = ["reserve", "warehouse-void", "credit", "rewards-void", "email"]
ALL = [name for name in SERVICE_OF if name != "hello"]


class Hello(BaseModel):
    checkout_id: str
    points: int


def create_hello_app() -> FastAPI:
    """The yardstick: FastAPI validating a small JSON body and answering 201 with JSON."""
    app = FastAPI()

    @app.post("/hello", status_code=201)
    async def hello(body: Hello) -> dict[str, Any]:
        return {"checkout_id": body.checkout_id, "points": body.points, "status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _fresh_postgres(admin_url: str, name: str) -> str:
    """Recreate database ``name``; returns its URL (raises if PostgreSQL does not answer)."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


class Run:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.results: list[dict[str, Any]] = []
        self.profiles: dict[str, Any] = {}

    def start_services(self, backend: str, names: set[str]) -> dict[str, Server]:
        servers: dict[str, Server] = {}
        for name in sorted(names):
            env = {"SERVICE_TOKEN": SERVICE_TOKEN}
            if backend == "sqlite":
                env["DATABASE_URL"] = f"sqlite:///{self.workdir / f'{backend}-{name}.db'}"
            else:
                env["DATABASE_URL"] = _fresh_postgres(self.args.postgres_url, f"svc_bench_{name}")
            if name == "warehouse":
                env["SEED_DEMO_CATALOG"] = "true"
            servers[name] = Server(f"{backend}-{name}", APPS[name], env, self.workdir).start()
        if "warehouse" in servers:
            httpx.put(
                f"{servers['warehouse'].url}/inventory/SKU-001",
                json={"on_hand": 1_000_000_000},
                headers={"Authorization": f"Bearer {SERVICE_TOKEN}"},
            ).raise_for_status()
        return servers

    def measure(
        self, server: Server, scenario: str, concurrency: int, *, profile: Path | None
    ) -> dict[str, Any]:
        """One bounded load of ``scenario``; CPU of ``server`` over exactly the measured window."""
        args = [
            sys.executable, "-m", "bench.services_load", "--url", server.url,
            "--scenario", scenario, "--n", str(self.args.n), "--concurrency", str(concurrency),
            "--warmup", str(self.args.warmup), "--time-limit", str(self.args.time_limit),
            "--bearer", SERVICE_TOKEN,
        ]  # fmt: skip
        with (self.workdir / "load.log").open("ab") as errors:
            load = subprocess.Popen(
                args,
                cwd=Path(__file__).resolve().parents[1],
                env=base_env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
            )
        watchdog = threading.Timer(3 * self.args.time_limit + 120, load.kill)
        watchdog.daemon = True
        watchdog.start()
        assert load.stdin is not None
        assert load.stdout is not None
        spy: subprocess.Popen[bytes] | None = None
        try:
            line = load.stdout.readline().decode().strip()
            if line != "READY":
                raise RuntimeError(f"load said {line!r}: see {self.workdir / 'load.log'}")
            if profile is not None:
                spy = _start_spy(
                    server.pid, profile, self.workdir, all_threads=self.args.profile_all_threads
                )
            before = server.cpu_seconds()
            load.stdin.write(b"GO\n")
            load.stdin.flush()
            line = load.stdout.readline().decode().strip()
            after = server.cpu_seconds()
            if line != "DONE":
                raise RuntimeError(f"load ended early: see {self.workdir / 'load.log'}")
            result: dict[str, Any] = json.loads(load.stdout.readline())
            load.wait(30)
        finally:
            watchdog.cancel()
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                try:
                    spy.wait(60)
                except subprocess.TimeoutExpired:
                    stop(spy, 5)
            stop(load, 5)
            forget(load)
        result["cpu_ms"] = (after - before) * 1000 / (result["ok"] or 1)
        return result

    def run_backend(self, backend: str, scenarios: list[str]) -> None:
        names = {SERVICE_OF[s] for s in scenarios}
        try:
            servers = self.start_services(backend, names)
        except Exception as exc:
            emit(f"SKIPPED {backend}: {type(exc).__name__}: {exc}")
            return
        servers["hello"] = self.hello
        try:
            for concurrency in self.args.concurrency:
                hello_ms = None
                for scenario in ["hello", *scenarios]:
                    profile = None
                    if scenario in self.args.profile and concurrency == max(self.args.concurrency):
                        profile = self.args.profile_dir / f"{backend}-{scenario}-c{concurrency}.txt"
                    result = self.measure(
                        servers[SERVICE_OF[scenario]], scenario, concurrency, profile=profile
                    )
                    result["backend"] = backend
                    if scenario == "hello":
                        hello_ms = result["cpu_ms"]
                    result["hello_ms"] = hello_ms
                    self.results.append(result)
                    emit(_line(result))
                    if profile is not None and profile.exists():
                        self.profiles[profile.name] = _summary(profile)
        finally:
            for name, server in servers.items():
                if name != "hello":
                    server.stop()

    def run(self) -> None:
        self.hello = Server("hello", APPS["hello"], {}, self.workdir).start()
        try:
            for backend in self.args.backends:
                self.run_backend(backend, self.args.scenarios)
        finally:
            self.hello.stop()


def _start_spy(
    pid: int, output: Path, workdir: Path, *, all_threads: bool
) -> subprocess.Popen[bytes]:
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--rate", "250",
        "--format", "raw", "--nonblocking", "--output", str(output),
    ]  # fmt: skip
    if not all_threads:
        # Only the thread holding the GIL: Python's own CPU. Time spent in C with the GIL
        # released (sqlite3 executing, libpq waiting) is then not sampled.
        command.append("--gil")
    with (workdir / "py-spy.log").open("ab") as log:
        spy = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    time.sleep(0.5)  # attached before the first measured request
    return spy


def _summary(raw: Path) -> dict[str, Any]:
    from bench.profile_summary import render, summarize

    summary = summarize(raw.read_text())
    emit(f"\nprofile {raw}:\n{render(summary, top=30)}\n")
    return summary


HEADER = (
    f"{'backend':9} {'C':>3} {'scenario':22} {'ok/N':>11} {'err':>4} {'req/s':>7} "
    f"{'p50 ms':>7} {'p95 ms':>7} {'CPU ms/req':>10} {'× hello':>8}"
)


def _line(r: dict[str, Any]) -> str:
    ratio = r["cpu_ms"] / r["hello_ms"] if r.get("hello_ms") else float("nan")
    capped = "⏱" if r["timed_out"] else " "
    return (
        f"{r['backend']:9} {r['concurrency']:>3} {r['scenario']:22} "
        f"{r['ok']:>5}/{r['requested']:<5}{capped}{r['errors']:>4} {r['throughput']:>7.0f} "
        f"{r['p50_ms']:>7.2f} {r['p95_ms']:>7.2f} {r['cpu_ms']:>10.2f} {ratio:>8.1f}"
        + (f"  errors: {r['error_samples'][:2]}" if r["errors"] else "")
    )


def compare(paths: list[Path]) -> None:
    """CPU ms/req (and × hello) of the same rows in several ``--json`` runs, side by side."""
    runs = [json.loads(p.read_text())["results"] for p in paths]
    keys: list[tuple[str, int, str]] = []
    for results in runs:
        for r in results:
            key = (r["backend"], r["concurrency"], r["scenario"])
            if key not in keys:
                keys.append(key)
    names = " | ".join(f"{p.stem} CPU ms (× hello)" for p in paths)
    emit(f"| backend | C | scenario | {names} |")
    emit("|---|---|---|" + "---|" * len(paths))
    for key in keys:
        cells = []
        for results in runs:
            row = next(
                (r for r in results if (r["backend"], r["concurrency"], r["scenario"]) == key),
                None,
            )
            if row is None:
                cells.append("-")
            else:
                ratio = row["cpu_ms"] / row["hello_ms"] if row.get("hello_ms") else float("nan")
                cells.append(f"{row['cpu_ms']:.2f} ({ratio:.1f}×)")
        emit(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.services_cost", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--n", type=int, default=1000, help="measured requests per run")
    parser.add_argument(
        "--concurrency",
        type=lambda t: [int(c) for c in t.split(",")],
        default=[1, 16],
        help="comma-separated, default 1,16",
    )
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--time-limit", type=float, default=30.0, help="cap per run (s)")
    parser.add_argument(
        "--scenarios",
        type=lambda t: ALL if t == "all" else t.split(","),
        default=HOT,
        help=f"comma-separated, or all; default {','.join(HOT)}; all: {','.join(ALL)}",
    )
    parser.add_argument("--backends", type=lambda t: t.split(","), default=["sqlite", "postgres"])
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--profile",
        type=lambda t: t.split(","),
        default=[],
        help="scenarios to record with py-spy (at the highest concurrency)",
    )
    parser.add_argument(
        "--profile-all-threads",
        action="store_true",
        help="sample every busy thread, not only the GIL holder (SQLite and libpq time included)",
    )
    parser.add_argument(
        "--profile-dir", type=Path, default=Path(tempfile.gettempdir()) / "svc-prof"
    )
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument("--compare", type=Path, nargs="+", help="compare --json runs and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.compare:
        compare(args.compare)
        return
    unknown = sorted(set(args.scenarios) - set(SERVICE_OF))
    if unknown:
        raise SystemExit(f"unknown scenarios {unknown}: choose from {', '.join(ALL)}")
    workdir = Path(tempfile.mkdtemp(prefix="svc-cost-"))
    run = Run(args, workdir)
    emit(f"workdir {workdir}; N={args.n}, C={args.concurrency}, cap {args.time_limit:.0f} s")
    emit(HEADER)
    try:
        run.run()
    finally:
        stop_everything()
    if args.json:
        payload = {"command": " ".join(sys.argv), "at": time.time(), "results": run.results}
        args.json.write_text(json.dumps(payload, indent=1))
        emit(f"wrote {args.json}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
