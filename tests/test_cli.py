"""The ``checkout-suite`` command line: argument errors, an unreachable suite, and ``up`` for real.

The ``e2e`` tests run ``python -m checkout_suite.cli up`` as a subprocess on free ports, exactly as a
user would, and stop it with a signal.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from checkout_suite.cli import app
from checkout_suite.services import SERVICES, ServiceName

ROOT = Path(__file__).resolve().parent.parent
READY_MARK = "Checkout suite is ready."
runner = CliRunner()


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on right now (the sockets are closed before returning)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class RunningUp:
    """A ``checkout-suite up`` subprocess and what it has printed so far."""

    process: subprocess.Popen[str]
    ports: dict[str, int]
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if READY_MARK in line:
                self.ready.set()

    def wait_ready(self, timeout: float = 60) -> None:
        if not self.ready.wait(timeout):
            raise AssertionError(
                f"`up` printed no {READY_MARK!r} within {timeout} s:\n{self.output}"
            )

    def child_pids(self) -> dict[str, int]:
        """The pid column of the services table ``up`` prints."""
        found = re.findall(r"│ (\w+)\s+│ http://\S+\s+│ \S+\s+│ (\d+) │", self.output)
        return {name: int(pid) for name, pid in found}


@contextmanager
def run_up(tmp_path: Path, *, cwd: Path = ROOT, pythonpath: str = str(ROOT)) -> Iterator[RunningUp]:
    """Start ``up`` on free ports with its SQLite files under ``tmp_path/data``."""
    ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    command = [
        sys.executable,
        "-m",
        "checkout_suite.cli",
        "up",
        "--data-dir",
        str(tmp_path / "data"),
    ]
    for name, port in ports.items():
        command += [f"--{name}-port", str(port)]
    env = {**os.environ, "PYTHONPATH": pythonpath, "COLUMNS": "200"}
    with (
        (tmp_path / "up.stderr").open("w") as stderr,
        subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        ) as process,
    ):
        suite = RunningUp(process, ports)
        reader = threading.Thread(target=suite.read, daemon=True)
        reader.start()
        try:
            yield suite
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            reader.join(timeout=5)


def test_serve_names_every_service_of_up() -> None:
    """`serve` accepts exactly the services `up` starts."""
    assert {name.value for name in ServiceName} == set(SERVICES)


def test_serve_with_an_unknown_name_fails_clearly() -> None:
    """`serve bogus` exits 2 naming the bad value and every valid service, starting nothing."""
    result = runner.invoke(app, ["serve", "bogus"])
    assert result.exit_code == 2
    assert "'bogus' is not one of" in result.output
    for name in SERVICES:
        assert name in result.output


def test_demo_against_an_unreachable_suite_exits_1() -> None:
    """`demo` with nothing listening at --url says it cannot reach the suite and exits 1."""
    (port,) = free_ports(1)
    result = runner.invoke(app, ["demo", "--url", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert f"Cannot reach the checkout suite at http://127.0.0.1:{port}" in result.output
    assert "checkout-suite up" in result.output


def test_up_in_choreography_without_a_broker_says_what_to_start(tmp_path: Path) -> None:
    """`up --coordination choreography` with no RabbitMQ at --broker-url exits 2 at once, naming
    the address and how to start one, and starts no service (no database file appears)."""
    (port,) = free_ports(1)
    result = runner.invoke(
        app,
        [
            "up",
            "--data-dir",
            str(tmp_path),
            "--coordination",
            "choreography",
            "--broker-url",
            f"amqp://guest:guest@127.0.0.1:{port}/",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 2, result.output
    assert f"nothing answers at 127.0.0.1:{port}" in result.output
    assert "docker compose up -d rabbitmq" in result.output
    assert list(tmp_path.iterdir()) == []


def test_dead_letters_without_a_broker_exits_1() -> None:
    (port,) = free_ports(1)
    result = runner.invoke(
        app, ["dead-letters", "--broker-url", f"amqp://guest:guest@127.0.0.1:{port}/"]
    )
    assert result.exit_code == 1
    assert "no broker answers" in result.output


def test_up_refuses_a_port_already_in_use(tmp_path: Path) -> None:
    """`up` exits 1 before starting anything when a port it needs is taken."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "checkout_suite.cli", "up", "--data-dir", str(tmp_path)]
        command += ["--orchestrator-port", str(port)]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
        result = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=False
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"orchestrator cannot use 127.0.0.1:{port}" in result.stdout
    assert "is ready" not in result.stdout


@contextmanager
def fake_suite(readyz_status: int, checkout_status: int) -> Iterator[str]:
    """A stand-in orchestrator answering /readyz and POST /checkouts with fixed statuses."""

    class Handler(BaseHTTPRequestHandler):
        def answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/problem+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self.answer(readyz_status, b'{"status": "ok"}')

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.answer(checkout_status, b'{"title": "Internal Server Error", "status": 500}')

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_demo_exits_1_when_the_suite_refuses_its_checkouts() -> None:
    """`demo` lists checkouts the suite refused (here with a 500) and exits 1."""
    with fake_suite(200, 500) as url:
        result = runner.invoke(app, ["demo", "--url", url])
    assert result.exit_code == 1
    assert "refused" in result.output
    assert "Ada Lovelace: HTTP 500" in result.output


def test_demo_exits_1_when_the_suite_is_not_ready() -> None:
    """`demo` against a suite whose /readyz is 503 says so and places no checkout."""
    with fake_suite(503, 201) as url:
        result = runner.invoke(app, ["demo", "--url", url])
    assert result.exit_code == 1
    assert "is not ready (GET /readyz → 503)" in result.output


@pytest.mark.e2e
def test_up_stops_the_services_when_one_fails_to_start(tmp_path: Path) -> None:
    """When a service exits during start-up, `up` names it, stops the others and exits 1."""
    broken = tmp_path / "broken" / "email_service"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("")
    (broken / "main.py").write_text("raise RuntimeError('email cannot start')\n")
    # The children import email_service from `broken` first; the CLI itself comes from ROOT.
    pythonpath = os.pathsep.join([str(broken.parent), str(ROOT)])
    with run_up(tmp_path, cwd=tmp_path, pythonpath=pythonpath) as suite:
        code = suite.process.wait(timeout=60)
    assert code == 1, suite.output
    assert "email exited with code 1 before it was ready" in suite.output
    assert not any(listening(port) for port in suite.ports.values())


@pytest.mark.e2e
def test_up_serves_all_four_and_stops_them_on_sigterm(tmp_path: Path) -> None:
    """`up` gets every service ready on its own SQLite file, and SIGTERM stops them all, exit 0."""
    with run_up(tmp_path) as suite:
        suite.wait_ready()
        with httpx.Client(trust_env=False, timeout=5) as client:
            for port in suite.ports.values():
                assert client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        pids = suite.child_pids()
        assert set(pids) == set(SERVICES), suite.output
        assert all(alive(pid) for pid in pids.values())
        suite.process.send_signal(signal.SIGTERM)
        code = suite.process.wait(timeout=15)
    assert code == 0, suite.output
    assert "All services stopped." in suite.output
    assert not any(alive(pid) for pid in pids.values())
    assert not any(listening(port) for port in suite.ports.values())
    databases = sorted(path.name for path in (tmp_path / "data").glob("*.db"))
    assert databases == sorted(f"{name}.db" for name in SERVICES)
    for sku in ("SKU-001", "SKU-002", "SKU-003", "SKU-LAST", "SKU-SOLDOUT"):
        assert sku in suite.output, "the demo catalog is printed"


@pytest.mark.e2e
def test_demo_on_a_running_suite_prints_each_checkout(tmp_path: Path) -> None:
    """`demo` completes two checkouts, fails the sold-out one, exits 0; Ctrl-C then stops `up`."""
    with run_up(tmp_path) as suite:
        suite.wait_ready()
        url = f"http://127.0.0.1:{suite.ports['orchestrator']}"
        result = subprocess.run(
            [sys.executable, "-m", "checkout_suite.cli", "demo", "--url", url],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        suite.process.send_signal(signal.SIGINT)
        code = suite.process.wait(timeout=15)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {
        name: line
        for line in result.stdout.splitlines()
        for name in ("Ada Lovelace", "Grace Hopper", "Alan Turing")
        if name in line
    }
    assert "completed" in rows["Ada Lovelace"]
    assert "39.98" in rows["Ada Lovelace"]
    assert "completed" in rows["Grace Hopper"]
    assert "failed" in rows["Alan Turing"]
    assert "rewards:skipped" in result.stdout
    assert code == 0, suite.output


def test_up_with_a_plan_breaking_a_rule_names_it_and_starts_nothing(tmp_path: Path) -> None:
    """`up` with CHECKOUT_STEPS putting the warehouse after the pivot exits 2 at once with the
    rule in one line, and starts no service (no database file appears)."""
    result = runner.invoke(
        app,
        ["up", "--data-dir", str(tmp_path)],
        env={"COLUMNS": "300", "CHECKOUT_STEPS": "rewards,warehouse+email"},
    )
    assert result.exit_code == 2, result.output
    assert "orchestrator: invalid CHECKOUT_STEPS" in result.output
    assert "puts warehouse after the pivot (rewards)" in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []
    assert os.environ.get("CHECKOUT_STEPS") != "rewards,warehouse+email", "the env is restored"
