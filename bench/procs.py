"""Processes of a bench: uvicorn servers and load generators on 127.0.0.1, killed by pid at the end."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
# The tree whose services the spawned processes run: this one, or another checkout of the
# project for an A/B in one run (``BENCH_CODE=/path/to/other/tree python -m bench …``).
CODE = Path(os.environ.get("BENCH_CODE") or ROOT).resolve()
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
# The same server options for every target.
UVICORN_OPTIONS = [
    "--host",
    "127.0.0.1",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--log-level",
    "warning",
    "--no-access-log",
    "--timeout-keep-alive",
    "30",
]
# Settings of the suite's services that must come from the bench, never from the caller's shell.
_SETTING_NAMES = {
    "DATABASE_URL",
    "HOST",
    "PORT",
    "EMAIL_URL",
    "WAREHOUSE_URL",
    "REWARDS_URL",
    "CHECKOUT_STEPS",
    "STEP_TIMEOUT_S",
    "CHECKOUT_SYNC_DEADLINE_S",
    "STEP_MAX_ATTEMPTS",
    "STEP_DEADLINE_S",
    "RETRY_INITIAL_DELAY_S",
    "RETRY_MAX_DELAY_S",
    "RETRY_JITTER_S",
    "CHECKOUT_DEADLINE_S",
    "RESUME_DELAY_S",
    "LEASE_TTL_S",
    "RECOVERY_INTERVAL_S",
    "SHUTDOWN_GRACE_S",
    "CRASH_POINTS",
    "SMTP_URL",
    "SEED_DEMO_CATALOG",
    "API_KEYS",
    "SERVICE_TOKEN",
    "RATE_LIMIT",
    "RATE_LIMIT_STORAGE_URL",
    "LOG_LEVEL",
    "ACCESS_LOG",
    "COORDINATION",
    "BENCH_CODE",
}

_live: dict[int, subprocess.Popen[bytes]] = {}


def free_port() -> int:
    """A port of 127.0.0.1 nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTING_NAMES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CODE), str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env | (extra or {})


def _track(popen: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    _live[popen.pid] = popen
    return popen


def stop(popen: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the process by its pid, SIGKILL it if it is still there after ``timeout_s``."""
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            popen.send_signal(signal.SIGKILL)
            popen.wait(5)
    _live.pop(popen.pid, None)


@atexit.register
def stop_all() -> None:
    """Whatever this bench started and is still running: stopped, each by its own pid."""
    for popen in list(_live.values()):
        if popen.poll() is None:
            popen.send_signal(signal.SIGKILL)
            try:
                popen.wait(5)
            except subprocess.TimeoutExpired:
                pass
        _live.pop(popen.pid, None)


class OwnProcess:
    """What the bench reads of a process it started; ``popen`` and ``log`` are the subclass's."""

    popen: subprocess.Popen[bytes] | None

    @property
    def log(self) -> Path:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def stop(self) -> None:
        if self.popen is not None:
            stop(self.popen)

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its live children so far."""
        return cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        """Resident memory of the process and its live children (uvicorn --workers)."""
        return rss_bytes(self.pid)


@dataclass
class Server(OwnProcess):
    """One uvicorn process serving ``app`` (a factory) on a free port of 127.0.0.1."""

    name: str
    app: str
    env: dict[str, str]
    workdir: Path
    port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)
    # Run as a user would, ``checkout-suite serve NAME`` with its defaults (log level, access
    # log), instead of uvicorn with the bench's options; ``app`` is then the service's name.
    serve: bool = False
    # ``python -m MODULE --port PORT`` instead (a server that is not uvicorn: the Restate SDK's).
    module: str = ""
    # What answers 200 once the process serves (the Restate SDK answers ``/health``).
    ready_path: str = "/readyz"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> Server:
        if self.serve:
            cli = str(Path(sys.executable).with_name("checkout-suite"))
            command = [cli, "serve", self.app, "--host", "127.0.0.1", "--port", str(self.port)]
        elif self.module:
            command = [sys.executable, "-m", self.module, "--port", str(self.port)]
        else:
            command = [sys.executable, "-m", "uvicorn", self.app, "--factory"]
            command += ["--port", str(self.port), *UVICORN_OPTIONS]
        self.popen = spawn([*command, *self.extra_args], self.workdir, base_env(self.env), self.log)
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(timeout=2) as client:
            while True:
                assert self.popen is not None
                if self.popen.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}"
                    )
                try:
                    if client.get(f"{self.url}{self.ready_path}").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.name} not ready in {READY_TIMEOUT_S} s:\n{self.tail()}"
                    )
                time.sleep(0.05)


def spawn(
    command: list[str], workdir: Path, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """Start ``command`` in ``workdir``, its output appended to ``log``; stopped at exit by pid."""
    with log.open("ab") as output:
        return _track(
            subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        )


def rss_bytes(pid: int) -> int:
    """Resident memory of the process and its live children."""
    process = psutil.Process(pid)
    total = 0
    for each in [process, *process.children(recursive=True)]:
        try:
            total += each.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def cpu_seconds(pid: int) -> float:
    process = psutil.Process(pid)
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def spawn_load(args: list[str], workdir: Path) -> subprocess.Popen[bytes]:
    """``python -m bench.load ARGS`` with pipes for the READY/GO/DONE handshake."""
    with (workdir / "load.log").open("ab") as errors:
        return _track(
            subprocess.Popen(
                [sys.executable, "-m", "bench.load", *args],
                cwd=ROOT,
                env=base_env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
            )
        )


def forget(popen: subprocess.Popen[bytes]) -> None:
    _live.pop(popen.pid, None)
