"""The process supervisor behind ``up`` and ``serve``.

``up`` starts the four services as child processes, each with its own environment as in a
container (SQLite files under ``--data-dir``, a demo catalog in the warehouse): the three
downstream services first, then the orchestrator, each phase waiting until every child answers
``/readyz``. It stops them all, orchestrator first, on Ctrl-C or SIGTERM or when one exits.
The children load the services by uvicorn import string; this process never imports them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import httpx
from rich.markup import escape

from checkout_suite import workers as workers_module
from checkout_suite.console import console
from checkout_suite.credentials import credentials
from checkout_suite.services import DOWNSTREAM, SERVICES, Service
from checkout_suite.summary import print_summary
from servicekit.events import DEFAULT_BROKER_URL


class SuiteError(Exception):
    """``up`` cannot go on: a child exited, did not get ready, or a port is taken."""


@dataclass
class Child:
    """A service process started by ``up``."""

    name: str
    url: str
    process: subprocess.Popen[bytes]


@dataclass
class SignalLatch:
    """Records SIGINT/SIGTERM; the loops of ``up`` poll it, so no handler interrupts a spawn."""

    received: list[int] = field(default_factory=list)
    _previous: dict[int, Any] = field(default_factory=dict)

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """On Linux, have the kernel send SIGTERM to the child if ``up`` itself is killed (-9)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _client_host(host: str) -> str:
    """The address clients use to reach a server bound to ``host``."""
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)


def _url(host: str, port: int) -> str:
    address = _client_host(host)
    return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"


def _check_port_free(name: str, host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Same option as uvicorn, so a port left in TIME_WAIT counts as free, as it is for it.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SuiteError(
                f"{name} cannot use {host}:{port}: {exc.strerror}. Is another suite running? "
                f"Choose another port with --{name}-port."
            ) from exc


def _child_env(
    name: str,
    host: str,
    port: int,
    data_dir: Path,
    urls: dict[str, str],
    suite_credentials: tuple[str, str],
    coordination: dict[str, str],
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DATABASE_URL=f"sqlite:///{data_dir / name}.db", HOST=host, PORT=str(port))
    env.update(coordination)
    api_key, service_token = suite_credentials
    env.setdefault("API_KEYS", api_key)
    env.setdefault("SERVICE_TOKEN", service_token)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if name == "warehouse":
        env["SEED_DEMO_CATALOG"] = "true"
    if name == "orchestrator":
        env.update(
            EMAIL_URL=urls["email"], WAREHOUSE_URL=urls["warehouse"], REWARDS_URL=urls["rewards"]
        )
    return env


def broker_missing(url: str) -> str | None:
    """None when RabbitMQ accepts a connection at ``url``; else what to do about it."""
    parsed = urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 5672
    try:
        socket.create_connection((host, port), timeout=2.0).close()
    except OSError as exc:
        return (
            f"--coordination choreography needs RabbitMQ, and nothing answers at {host}:{port} "
            f"({exc.strerror or type(exc).__name__}). Start one: `docker compose up -d rabbitmq` "
            "(or `rabbitmq-server -detached` where it is installed), or point --broker-url "
            "(BROKER_URL) at yours."
        )
    return None


def _spawn(
    name: str, host: str, port: int, env: dict[str, str], log_level: str, access_log: bool
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", SERVICES[name].app, "--factory"]
    command += ["--host", host, "--port", str(port), "--log-level", log_level.lower()]
    command += ["--access-log" if access_log else "--no-access-log"]
    # A process group of its own: a terminal's Ctrl-C reaches only `up`, which then stops the
    # children in order (orchestrator first) instead of all four racing to exit at once.
    return subprocess.Popen(command, env=env, process_group=0, preexec_fn=_die_with_parent)


def _wait_ready(children: list[Child], latch: SignalLatch, timeout: float) -> None:
    """Return once every child answers ``/readyz`` with 200; raise ``SuiteError`` otherwise."""
    deadline = time.monotonic() + timeout
    pending = list(children)
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while pending and not latch.received:
            for child in list(pending):
                code = child.process.poll()
                if code is not None:
                    raise SuiteError(f"{child.name} exited with code {code} before it was ready")
                try:
                    ready = client.get(f"{child.url}/readyz").status_code == 200
                except httpx.HTTPError:
                    ready = False
                if ready:
                    pending.remove(child)
                    console.print(f"[green]✓[/] {child.name} is ready at {child.url}")
            if pending and time.monotonic() > deadline:
                names = ", ".join(child.name for child in pending)
                raise SuiteError(f"{names} did not answer /readyz within {timeout:g} s")
            if pending:
                time.sleep(0.2)


def _wait_exit(
    children: list[Child], latch: SignalLatch, deadline: float, signals_seen: int
) -> None:
    """Wait for ``children`` to exit until ``deadline`` or until another signal arrives."""
    while any(c.process.poll() is None for c in children):
        if time.monotonic() >= deadline or len(latch.received) > signals_seen:
            return
        time.sleep(0.1)


def _stop(children: list[Child], latch: SignalLatch, grace: float) -> None:
    """SIGTERM the orchestrator, then the services; SIGKILL what is left after ``grace`` seconds.

    A second Ctrl-C (or SIGTERM) while waiting skips the rest of the grace period.
    """
    deadline = time.monotonic() + grace
    seen = len(latch.received)
    first = [c for c in children if c.name not in DOWNSTREAM]
    for group in (first, [c for c in children if c.name in DOWNSTREAM]):
        for child in group:
            if child.process.poll() is None:
                child.process.terminate()
        _wait_exit(group, latch, deadline, seen)
    for child in children:
        if child.process.poll() is None:
            console.print(f"[red]{child.name} did not stop within {grace:g} s: killing it[/]")
            child.process.kill()
        child.process.wait()


def run_suite(
    ports: dict[str, int],
    *,
    data_dir: Path,
    host: str,
    ready_timeout: float,
    grace_period: float,
    log_level: str,
    access_log: bool = False,
    coordination: str = "orchestration",
    broker_url: str = DEFAULT_BROKER_URL,
) -> int:
    """Run the four services until a signal or a failure; the exit code of ``up``.

    0: stopped on a signal; 1: a child failed (the others are stopped); 2: ports collide, a
    setting is invalid (``CHECKOUT_STEPS``…), or choreography was asked for and no broker answers.
    """
    if len(set(ports.values())) != len(ports):
        console.print(f"[red]Each service needs a port of its own; got {ports}[/]")
        return 2
    mode = {"COORDINATION": coordination}
    if coordination == "choreography":
        missing = broker_missing(broker_url)
        if missing is not None:
            console.print(f"[bold red]✗ {escape(missing)}[/]")
            return 2
        mode["BROKER_URL"] = broker_url
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    urls = {name: _url(host, port) for name, port in ports.items()}
    suite_credentials = credentials()
    children: list[Child] = []
    latch = SignalLatch()
    latch.install()
    code = 0
    invalid = [
        line
        for name in ports
        for line in settings_errors(
            name,
            SERVICES[name],
            _child_env(name, host, ports[name], data_dir, urls, suite_credentials, mode),
        )
    ]
    if invalid:
        for line in invalid:
            console.print(f"[bold red]✗ {escape(line)}[/]")
        return 2
    try:
        for name, port in ports.items():
            _check_port_free(name, host, port)
        for phase in (list(DOWNSTREAM), ["orchestrator"]):
            if latch.received:
                break
            started = []
            for name in phase:
                env = _child_env(name, host, ports[name], data_dir, urls, suite_credentials, mode)
                process = _spawn(name, host, ports[name], env, log_level, access_log)
                started.append(Child(name, urls[name], process))
            children += started
            _wait_ready(started, latch, ready_timeout)
        if not latch.received:
            print_summary(children, data_dir, suite_credentials, coordination)
        while not latch.received:
            for child in children:
                exit_code = child.process.poll()
                if exit_code is not None:
                    raise SuiteError(f"{child.name} exited unexpectedly with code {exit_code}")
            time.sleep(0.2)
        console.print(
            f"\n{signal.Signals(latch.received[0]).name} received: stopping the services…"
        )
    except SuiteError as exc:
        console.print(f"[bold red]✗ {escape(str(exc))}[/]; stopping the other services.")
        code = 1
    finally:
        _stop(children, latch, grace_period)
        latch.restore()
    if code == 0:
        console.print("[green]All services stopped.[/]")
    return code


def serve(
    name: str,
    *,
    host: str,
    port: int | None,
    log_level: str = "info",
    access_log: bool = False,
    workers: int = 1,
) -> None:
    """Run one service in the foreground with uvicorn until it stops."""
    import uvicorn

    service = SERVICES[name]
    port = port or service.port
    # The service's own Settings read HOST/PORT too; keep them in line with where it listens.
    os.environ["HOST"], os.environ["PORT"] = host, str(port)
    refuse_invalid_settings(name, service)
    if workers > 1 and workers_module.supported():
        # Each worker on a socket of its own, so that connections spread (``checkout_suite.workers``).
        code = workers_module.serve_workers(
            service.app,
            workers,
            host=host,
            port=port,
            log_level=log_level.lower(),
            access_log=access_log,
        )
        if code:
            raise SystemExit(code)
        return
    uvicorn.run(
        service.app,
        factory=True,
        host=host,
        port=port,
        log_level=log_level.lower(),
        access_log=access_log,
        workers=workers,
    )


def refuse_invalid_settings(name: str, service: Service) -> None:
    """Exit with code 2 and one line per invalid setting, rather than a traceback from the app."""
    errors = settings_errors(name, service, os.environ)
    for line in errors:
        print(line, file=sys.stderr)
    if errors:
        raise SystemExit(2)


def settings_errors(name: str, service: Service, env: Mapping[str, str]) -> list[str]:
    """One line per invalid setting the service would read from ``env`` (none: it can start)."""
    from pydantic import ValidationError

    wanted, saved = dict(env), dict(os.environ)
    os.environ.clear()
    os.environ.update(wanted)
    try:
        service.default_database_url()  # reads, and so validates, the service's settings
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            setting = "_".join(str(part) for part in error["loc"]).upper() or "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"{name}: invalid {setting}: {message}")
        return lines
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return []
