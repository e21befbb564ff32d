"""Runs the bench: services, targets, bounded loads, CPU per checkout per process, the report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from bench import emit, report
from bench.procs import Server, cpu_seconds, forget, spawn_load, stop
from bench.procs import stop_all as stop_everything
from bench.standins import POSTS_PATH

ORCHESTRATOR_APP = "orchestrator.main:create_app"
STANDIN_APP = "bench.standins:create_app"
REAL_APPS = {
    "warehouse": "warehouse_service.main:create_app",
    "rewards": "rewards_service.main:create_app",
    "email": "email_service.main:create_app",
}
SERVICES = ("warehouse", "rewards", "email")
# Production-like: clients and the orchestrator present bearer keys (the stand-ins ignore them);
# everything else as shipped (rate limit, metrics). The tuned rows change what TUNED names.
API_KEY = "bench-api-key"
SERVICE_TOKEN = "bench-service-token"
ORCHESTRATOR_ENV = {"API_KEYS": API_KEY, "SERVICE_TOKEN": SERVICE_TOKEN}
TUNED_ENV = {"RATE_LIMIT": ""}
# Also ``checkout-suite serve`` (so that ``--orchestrator-workers`` spreads connections alike).
TUNED_ARGS = ["--log-level", "warning"]
TUNED = "tuned: serve --log-level warning, RATE_LIMIT off"
STANDINS, REAL = "stand-ins", "real services"
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"


class CpuSource(Protocol):
    """A process whose CPU a load watches: a ``Server``, or the broker the bench did not start."""

    def cpu_seconds(self) -> float: ...


class Launched(Protocol):
    """A target's processes, started and ready for a load: one ``Server``, or Restate's two."""

    @property
    def url(self) -> str: ...

    def cpu_parts(self) -> Sequence[tuple[str, CpuSource]]: ...

    def rss_bytes(self) -> int: ...

    def stop(self) -> None: ...


@dataclass
class Options:
    plan: list[tuple[int, int]]  # (N, C) pairs
    time_limit_s: float = 60.0
    warmup: int | None = None  # None: by concurrency
    targets: list[str] | None = None  # None: all of the default ones
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    postgres_db: str = "checkout_bench"
    postgres: bool = True
    real_services: bool = False
    idempotency_keys: bool = False
    prefill: int = 0
    prefill_cache: Path | None = None
    memory: int = 0
    memory_time_limit_s: float = 900.0
    profile_s: float = 0.0
    profile_dir: Path | None = None
    profile_concurrency: int = 32
    profile_database: str = "SQLite"
    profile_native: bool = False
    profile_all_threads: bool = False
    output: Path | None = None
    json_output: Path | None = None
    command: str = ""
    quick: bool = False
    keep_workdir: bool = False
    skip_targets: bool = False
    orchestrator_workers: int = 1
    # Orchestration and choreography side by side, and the same faults both ways
    # (bench.coordination); ``coordination_only`` skips everything else.
    coordination: bool = True
    coordination_only: bool = False
    broker_url: str = DEFAULT_BROKER_URL
    # Extra settings of the orchestrator targets (``--orchestrator-env NAME=VALUE``), for A/Bs.
    orchestrator_env: dict[str, str] = field(default_factory=dict)
    # Steps in sequence or at once (bench.plans); ``plans_only`` skips everything else.
    plans: bool = True
    plans_only: bool = False
    # Restate 1.7 and its Python SDK (bench.restate): installed with npm into ``restate_dir``
    # (None: the user's cache) on first use; the SDK process served over HTTP/2 or HTTP/1.1.
    restate: bool = True
    restate_dir: Path | None = None
    restate_http: str = "2"


@dataclass
class Target:
    name: str
    app: str
    kind: str  # baseline | durable
    group: str  # stand-ins | real services
    database: str = "-"
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[Target], str | None] | None = None  # returns a reason to skip, or None
    # The orchestrator as a user starts it (``checkout-suite serve orchestrator``, its defaults);
    # else uvicorn with the bench's options (``bench.procs.UVICORN_OPTIONS``).
    serve: bool = False
    serve_args: list[str] = field(default_factory=list)  # more options of ``serve``
    tuning: str = ""  # what a tuned row changes from the defaults
    # Where the load posts a checkout and what answer means it was placed: ``POST /checkouts``
    # answered 201 everywhere but Restate's ingress (``POST /Checkout/create``, 200).
    path: str = "/checkouts"
    ok_status: int = 201
    # Starts a target that is not one ``Server`` (given the target and its environment).
    launch: Callable[[Target, dict[str, str]], Launched] | None = None


@dataclass
class Bench:
    options: Options
    workdir: Path
    services: dict[str, dict[str, Server]] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    def say(self, text: str) -> None:
        emit(text)

    # --- services ---------------------------------------------------------------------------

    def start_standins(self) -> None:
        self.services[STANDINS] = {
            name: Server(
                f"standin-{name}", STANDIN_APP, {"STANDIN_NAME": name}, self.workdir
            ).start()
            for name in SERVICES
        }
        self.say(
            "stand-ins: " + ", ".join(f"{n} {s.url}" for n, s in self.services[STANDINS].items())
        )

    def start_real_services(self) -> None:
        started = {}
        for name in SERVICES:
            env = {
                "DATABASE_URL": f"sqlite:///{self.workdir / f'real-{name}.db'}",
                "SERVICE_TOKEN": SERVICE_TOKEN,
            }
            if name == "warehouse":
                env["SEED_DEMO_CATALOG"] = "true"
            started[name] = Server(f"real-{name}", REAL_APPS[name], env, self.workdir).start()
        # Enough stock for every checkout the bench can place.
        answer = httpx.put(
            f"{started['warehouse'].url}/inventory/SKU-001",
            json={"on_hand": 1_000_000_000},
            headers={"Authorization": f"Bearer {SERVICE_TOKEN}"},
        )
        answer.raise_for_status()
        self.services[REAL] = started
        self.say("real services: " + ", ".join(f"{n} {s.url}" for n, s in started.items()))

    def service_env(self, group: str) -> dict[str, str]:
        urls = self.services[group]
        return {f"{name.upper()}_URL": urls[name].url for name in SERVICES}

    # --- targets ----------------------------------------------------------------------------

    def targets(self) -> list[Target]:
        groups = [STANDINS] + ([REAL] if self.options.real_services else [])
        found: list[Target] = []
        for group in groups:
            suffix = "" if group == STANDINS else " +real"
            found += [
                Target(
                    f"baseline-httpx{suffix}", "bench.baselines:create_httpx_app", "baseline", group
                ),
                Target(
                    f"baseline-aiohttp{suffix}",
                    "bench.baselines:create_aiohttp_app",
                    "baseline",
                    group,
                ),
                *self._orchestrator_targets(f"orchestrator-sqlite{suffix}", group, "SQLite"),
            ]
            if group == STANDINS and self.options.postgres:
                found += self._orchestrator_targets("orchestrator-postgres", group, "PostgreSQL")
            if group == STANDINS and self.options.restate:
                found.append(self._restate_target())
            if group == STANDINS and self.options.prefill:
                found.append(
                    Target(
                        f"orchestrator-sqlite {report.count(self.options.prefill)} stored",
                        ORCHESTRATOR_APP,
                        "durable",
                        group,
                        f"SQLite, {self.options.prefill:,} checkouts stored",
                        prepare=self._prefilled_sqlite,
                    )
                )
        if self.options.targets:
            wanted = set(self.options.targets)
            found = [t for t in found if t.name.split(" ")[0] in wanted or t.name in wanted]
        return found

    def _orchestrator_targets(self, name: str, group: str, database: str) -> list[Target]:
        """The orchestrator with the defaults of ``checkout-suite serve``, and the tuned row."""
        prepare = self._fresh_sqlite if database == "SQLite" else self._fresh_postgres
        return [
            Target(name, "orchestrator", "durable", group, database, prepare=prepare, serve=True),
            Target(
                f"{name} tuned",
                "orchestrator",
                "durable",
                group,
                database,
                env=dict(TUNED_ENV),
                prepare=prepare,
                serve=True,
                serve_args=TUNED_ARGS,
                tuning=TUNED,
            ),
        ]

    def _restate_target(self) -> Target:
        """Restate 1.7 + its Python SDK running the baselines' checkout, each step journaled."""
        from bench import restate

        pair = restate.Restate(
            self.options.restate_dir or restate.default_install_dir(),
            self.workdir,
            http=self.options.restate_http,
        )
        return Target(
            "restate",
            restate.APP_MODULE,
            "restate",
            STANDINS,
            f"Restate {restate.VERSION}",
            prepare=lambda _target: pair.prepare(),
            tuning=restate.SERVING[self.options.restate_http],
            path=restate.INGRESS_PATH,
            ok_status=restate.INGRESS_OK_STATUS,
            launch=lambda _target, env: pair.start(env),
        )

    def _fresh_sqlite(self, target: Target) -> str | None:
        path = self.workdir / f"{target.name.replace(' ', '_').replace('+', '')}.db"
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)
        target.env["DATABASE_URL"] = f"sqlite:///{path}"
        return None

    def _fresh_postgres(self, target: Target) -> str | None:
        try:
            import psycopg
            from psycopg import sql

            with psycopg.connect(
                self.options.postgres_url, autocommit=True, connect_timeout=3
            ) as admin:
                name = self.options.postgres_db
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except Exception as exc:
            return f"PostgreSQL is not reachable at {self.options.postgres_url} ({type(exc).__name__}: {exc})"
        from sqlalchemy.engine import make_url

        target.env["DATABASE_URL"] = (
            make_url(self.options.postgres_url)
            .set(database=self.options.postgres_db)
            .render_as_string(hide_password=False)
        )
        return None

    def _prefilled_sqlite(self, target: Target) -> str | None:
        from bench.prefill import prefill

        self._fresh_sqlite(target)
        path = Path(target.env["DATABASE_URL"].removeprefix("sqlite:///"))
        cache = self.options.prefill_cache
        if cache is not None and cache.exists():
            self.say(f"  prefill: copying {cache} ({cache.stat().st_size / 1e9:.2f} GB)")
            shutil.copyfile(cache, path)
            self._flush_to_disk(path)
            return None
        # The orchestrator creates its schema and one real checkout to clone; then bulk SQL.
        server = Server(
            f"{target.name}-schema", target.app, self._env_of(target), self.workdir
        ).start()
        try:
            self._load(server.url, 1, 1, warmup=0, time_limit_s=30)
        finally:
            server.stop()
        seconds = prefill(path, self.options.prefill, progress=self.say)
        self.extras["prefill"] = {
            "checkouts": self.options.prefill,
            "seconds": seconds,
            "bytes": path.stat().st_size,
        }
        if cache is not None:
            shutil.copyfile(path, cache)
        self._flush_to_disk(path)
        return None

    def _flush_to_disk(self, path: Path) -> None:
        """Write the pre-filled file's dirty pages out before the target starts.

        Otherwise the orchestrator's first WAL checkpoint, whose fsync flushes every dirty page of
        the file, writes out the whole pre-fill (1.6 GB) inside the measured window, charged to
        the orchestrator's CPU: +27-34 % per checkout at C=1, +7 % at C=32.
        """
        self.say("  prefill: flushing the file to disk")
        with path.open("rb+") as handle:
            os.fsync(handle.fileno())

    def _env_of(self, target: Target) -> dict[str, str]:
        durable = target.kind == "durable"
        auth = ORCHESTRATOR_ENV if durable else {"SERVICE_TOKEN": SERVICE_TOKEN}
        extra = self.options.orchestrator_env if durable else {}
        return self.service_env(target.group) | auth | target.env | extra

    # --- measuring --------------------------------------------------------------------------

    def _load(
        self,
        url: str,
        n: int,
        concurrency: int,
        *,
        warmup: int,
        time_limit_s: float,
        watch: Sequence[tuple[str, CpuSource]] | None = None,
        progress_every: int = 0,
        on_progress: Callable[[int], None] | None = None,
        on_go: Callable[[], None] | None = None,
        path: str = "/checkouts",
        ok_status: int = 201,
        count_posts: Sequence[tuple[str, str]] = (),
    ) -> dict[str, Any]:
        """One bounded load; CPU of every watched process over exactly the measured window.

        ``count_posts``: stand-ins (name, URL) whose ``POST``s in that window are counted too,
        reported per checkout completed.
        """
        args = [
            "--url", url, "--n", str(n), "--concurrency", str(concurrency),
            "--warmup", str(warmup), "--time-limit", str(time_limit_s), "--bearer", API_KEY,
            "--path", path, "--ok-status", str(ok_status),
        ]  # fmt: skip
        if self.options.idempotency_keys:
            args.append("--idempotency-keys")
        if progress_every:
            args += ["--progress-every", str(progress_every)]
        load = spawn_load(args, self.workdir)
        # The load generator bounds itself (warm-up and run each capped, 60 s per request); should
        # it hang anyway, the watchdog kills it by pid and the readline below sees the end.
        watchdog = threading.Timer(2 * time_limit_s + 180, load.kill)
        watchdog.daemon = True
        watchdog.start()
        assert load.stdin is not None
        assert load.stdout is not None
        try:
            line = load.stdout.readline().decode().strip()
            if line != "READY":
                raise RuntimeError(f"load generator said {line!r}: see {self.workdir / 'load.log'}")
            watch = watch or []
            posts_before = {name: _posts(base) for name, base in count_posts}
            before = {name: server.cpu_seconds() for name, server in watch}
            loadgen_before = cpu_seconds(load.pid)
            load.stdin.write(b"GO\n")
            load.stdin.flush()
            if on_go is not None:
                on_go()
            while True:
                line = load.stdout.readline().decode().strip()
                if line.startswith("PROGRESS") and on_progress is not None:
                    on_progress(int(line.split()[1]))
                elif line == "DONE":
                    break
                elif not line:
                    raise RuntimeError(
                        f"load generator ended early: see {self.workdir / 'load.log'}"
                    )
            after = {name: server.cpu_seconds() for name, server in watch}
            loadgen_after = cpu_seconds(load.pid)
            posts_after = {name: _posts(base) for name, base in count_posts}
            result: dict[str, Any] = json.loads(load.stdout.readline())
            load.wait(30)
        finally:
            watchdog.cancel()
            stop(load, 5)
            forget(load)
        ok = result["ok"] or 1
        result["cpu_ms"] = {name: (after[name] - before[name]) * 1000 / ok for name, _ in watch}
        result["loadgen_process_cpu_ms"] = (loadgen_after - loadgen_before) * 1000 / ok
        if count_posts:
            result["posts_per_checkout"] = {
                name: (posts_after[name] - posts_before[name]) / ok for name, _ in count_posts
            }
        return result

    def warmup_for(self, n: int, concurrency: int) -> int:
        if self.options.warmup is not None:
            return self.options.warmup
        return max(10, min(200, n // 10, concurrency * 10))

    def run_target(self, target: Target) -> None:
        if target.prepare is not None:
            reason = target.prepare(target)
            if reason:
                self.say(f"SKIPPED {target.name}: {reason}")
                self.skipped.append((target.name, reason))
                return
        running = self._start(target)
        try:
            parts = list(running.cpu_parts())
            watch = [*parts, *self.services[target.group].items()]
            # Calls per checkout, as each stand-in counted them (the real services do not count).
            count_posts = (
                [(name, server.url) for name, server in self.services[STANDINS].items()]
                if target.group == STANDINS
                else []
            )
            for n, concurrency in self.options.plan:
                result = self._load(
                    running.url,
                    n,
                    concurrency,
                    warmup=self.warmup_for(n, concurrency),
                    time_limit_s=self.options.time_limit_s,
                    watch=watch,
                    path=target.path,
                    ok_status=target.ok_status,
                    count_posts=count_posts,
                )
                if len(parts) > 1:
                    charge_parts_to_target(result, [name for name, _ in parts])
                result |= {
                    "target": target.name,
                    "kind": target.kind,
                    "group": target.group,
                    "database": target.database,
                    "tuning": target.tuning,
                    "rss_mb": running.rss_bytes() / 2**20,
                }
                self.results.append(result)
                self.say(report.one_line(result))
        finally:
            running.stop()

    def _start(self, target: Target) -> Launched:
        """The target's processes, ready for a load: one ``Server`` unless it says otherwise."""
        if target.launch is not None:
            return target.launch(target, self._env_of(target))
        server = Server(
            target.name.replace(" ", "_").replace("+", ""),
            target.app,
            self._env_of(target),
            self.workdir,
            serve=target.serve,
            extra_args=list(target.serve_args),
        )
        if target.kind == "durable" and self.options.orchestrator_workers > 1:
            server.extra_args += ["--workers", str(self.options.orchestrator_workers)]
        return _OneServer(server.start())

    # --- memory and profile -------------------------------------------------------------------

    def run_memory(self) -> None:
        target = Target("orchestrator-sqlite", ORCHESTRATOR_APP, "durable", STANDINS, "SQLite")
        self._fresh_sqlite(target)
        server = Server(
            "memory-orchestrator", target.app, self._env_of(target), self.workdir
        ).start()
        n = self.options.memory
        samples: list[tuple[int, float]] = [(0, server.rss_bytes() / 2**20)]
        self.say(f"memory: {n:,} checkouts at C=32 on SQLite, RSS sampled every {n // 20:,}")
        started = time.monotonic()
        try:
            result = self._load(
                server.url,
                n,
                32,
                warmup=200,
                time_limit_s=self.options.memory_time_limit_s,
                watch=[("target", server)],
                progress_every=max(1, n // 20),
                on_progress=lambda done: samples.append((done, server.rss_bytes() / 2**20)),
            )
            time.sleep(1)
            samples.append((result["ok"] + result["errors"], server.rss_bytes() / 2**20))
        finally:
            server.stop()
        self.extras["memory"] = {
            "requested": n,
            "ok": result["ok"],
            "errors": result["errors"],
            "seconds": time.monotonic() - started,
            "samples": samples,
            "cpu_ms": result["cpu_ms"]["target"],
            "throughput": result["throughput"],
        }
        self.say(f"memory: RSS {' → '.join(f'{mb:.0f}' for _, mb in samples)} MB")

    def run_profile(self) -> None:
        from bench.profile_summary import summarize

        database = self.options.profile_database
        concurrency = self.options.profile_concurrency
        target = Target(
            f"orchestrator-{database.lower()}", ORCHESTRATOR_APP, "durable", STANDINS, database
        )
        refused = (
            self._fresh_sqlite(target) if database == "SQLite" else self._fresh_postgres(target)
        )
        if refused:
            self.say(f"profile: {refused}")
            return
        server = Server(
            "profile-orchestrator", target.app, self._env_of(target), self.workdir
        ).start()
        out_dir = self.options.profile_dir or self.workdir
        out_dir.mkdir(parents=True, exist_ok=True)
        raw = out_dir / f"profile-orchestrator-{database.lower()}-c{concurrency}.txt"
        seconds = self.options.profile_s
        spy: list[subprocess.Popen[bytes]] = []

        def start_spy() -> None:
            command = [
                str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(server.pid),
                "--duration", str(int(seconds)), "--rate", "250", "--format", "raw",
                "--threads", "--output", str(raw), "--nonblocking",
            ]  # fmt: skip
            if not self.options.profile_all_threads:
                # Only the thread holding the GIL: Python's own CPU. Without it, threads blocked in C
                # (aiosqlite's queue, uvloop's poll) are sampled as if busy.
                command.append("--gil")
            if self.options.profile_native:
                command.append("--native")
            with (self.workdir / "py-spy.log").open("ab") as log:
                spy.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))

        self.say(
            f"profile: py-spy on the orchestrator ({database}, C={concurrency}) for {seconds:.0f} s"
        )
        try:
            result = self._load(
                server.url,
                100_000,
                concurrency,
                warmup=200,
                time_limit_s=seconds + 3,
                watch=[("target", server)],
                on_go=start_spy,
            )
            if spy:
                spy[0].wait(seconds + 60)
        finally:
            for each in spy:
                stop(each, 5)
            server.stop()
        if not raw.exists():
            self.say(f"profile: py-spy wrote nothing; see {self.workdir / 'py-spy.log'}")
            return
        summary = summarize(raw.read_text())
        self.extras["profile"] = {
            "raw": str(raw),
            "seconds": seconds,
            "concurrency": concurrency,
            "database": database,
            "checkouts": result["ok"],
            "throughput": result["throughput"],
            "cpu_ms": result["cpu_ms"]["target"],
            "summary": summary,
            "mode": "all threads"
            if self.options.profile_all_threads
            else "GIL holder only (--gil)",
        }
        self.say(report.profile_text(self.extras["profile"]))

    # --- coordination -----------------------------------------------------------------------

    def run_coordination(self) -> int:
        """Both coordination tables (bench.coordination); how many failures they counted."""
        from bench import coordination

        self.extras["coordination"] = coordination.run(self)
        return coordination.failures(self.extras["coordination"])

    def run_plans(self) -> int:
        """Sequential and concurrent CHECKOUT_STEPS side by side (bench.plans); failures counted."""
        from bench import plans

        self.extras["plans"] = plans.run(self)
        return plans.failures(self.extras["plans"])

    # --- the whole run ----------------------------------------------------------------------

    def run(self) -> int:
        machine = report.machine_facts()
        self.say(report.machine_line(machine))
        only = self.options.coordination_only or self.options.plans_only
        if not only:
            self.start_standins()
        if self.options.real_services and not only:
            self.start_real_services()
        for target in [] if self.options.skip_targets or only else self.targets():
            self.say(f"== {target.name} ({target.group})")
            self.run_target(target)
        coordination_failures = 0
        if self.options.plans_only or (
            self.options.plans and not self.options.skip_targets and not only
        ):
            coordination_failures += self.run_plans()
        if self.options.coordination_only or (
            self.options.coordination and not self.options.skip_targets and not only
        ):
            coordination_failures += self.run_coordination()
        if self.options.memory and not only:
            self.run_memory()
        if self.options.profile_s and not only:
            self.run_profile()
        machine["load_average_end"] = report.load_average()
        text = report.render(self.results, self.skipped, machine, self.options, self.extras)
        if self.results:
            self.say("")
            self.say(report.table(self.results, markdown=False))
            self.say("")
            self.say(report.targets_text(self.results))
        if "plans" in self.extras:
            from bench import plans

            self.say("")
            self.say(plans.report_text(self.extras["plans"]))
        if "coordination" in self.extras:
            from bench import coordination

            self.say("")
            self.say(coordination.report_text(self.extras["coordination"]))
        if self.options.output is not None:
            self.options.output.parent.mkdir(parents=True, exist_ok=True)
            report.write(self.options.output, text)
            self.say(f"wrote {self.options.output}")
        if self.options.json_output is not None:
            self.options.json_output.write_text(
                json.dumps(
                    {
                        "machine": machine,
                        "results": self.results,
                        "skipped": self.skipped,
                        "extras": self.extras,
                        "options": {
                            "command": self.options.command,
                            "plan": self.options.plan,
                            "time_limit_s": self.options.time_limit_s,
                            "idempotency_keys": self.options.idempotency_keys,
                        },
                    },
                    indent=1,
                    default=str,
                )
            )
            self.say(f"wrote {self.options.json_output}")
        errors = sum(r["errors"] for r in self.results) + coordination_failures
        return 1 if errors or not (self.results or self.options.skip_targets or only) else 0


@dataclass
class _OneServer:
    """A target that is one ``Server``: its CPU is the target's."""

    server: Server

    @property
    def url(self) -> str:
        return self.server.url

    def cpu_parts(self) -> list[tuple[str, CpuSource]]:
        return [("target", self.server)]

    def rss_bytes(self) -> int:
        return self.server.rss_bytes()

    def stop(self) -> None:
        self.server.stop()


def charge_parts_to_target(result: dict[str, Any], parts: list[str]) -> None:
    """A target of several processes: their CPU summed as the target's, each kept apart too."""
    cpu = result["cpu_ms"]
    result["target_cpu_ms"] = {name: cpu.pop(name) for name in parts}
    result["cpu_ms"] = {"target": sum(result["target_cpu_ms"].values()), **cpu}


def _posts(url: str) -> int:
    """How many ``POST``s a stand-in has answered so far."""
    answer = httpx.get(f"{url}{POSTS_PATH}", timeout=5)
    answer.raise_for_status()
    posts: int = answer.json()["posts"]
    return posts


def run(options: Options) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="checkout-bench-"))
    bench = Bench(options, workdir)
    try:
        return bench.run()
    finally:
        for group in bench.services.values():
            for server in group.values():
                server.stop()
        stop_everything()
        if options.keep_workdir:
            emit(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
