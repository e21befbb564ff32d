"""Real processes for end-to-end tests: each service under ``python -m uvicorn … --factory``.

A ``Harness`` starts processes on free ports of 127.0.0.1 with their own environment, waits for
``/readyz``, kills one with SIGKILL (or stops it with SIGTERM) and restarts it on the same port
with the same or another environment. Each start writes stdout and stderr to its own log file under
the test's directory; ``Harness.close`` kills whatever is still running, by pid.
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

import anyio
import httpx

from email_service.settings import Settings as EmailSettings
from orchestrator.settings import Settings as OrchestratorSettings
from rewards_service.settings import Settings as RewardsSettings
from warehouse_service.settings import Settings as WarehouseSettings

ROOT = Path(__file__).resolve().parents[2]
APPS = {
    "orchestrator": "orchestrator.main:create_app",
    "warehouse": "warehouse_service.main:create_app",
    "rewards": "rewards_service.main:create_app",
    "email": "email_service.main:create_app",
    "proxy": "tests.e2e.proxy:create_app",
}
SERVICES = ("warehouse", "rewards", "email")
READY_TIMEOUT_S = 60.0
# Bound of one e2e test: a few seconds on an idle machine, generous for one shared with others.
TEST_BOUND_S = 120.0
EXIT_TIMEOUT_S = 15.0
# Settings of every service: never inherited from the environment running the tests.
_SETTING_NAMES = {
    name.upper()
    for settings in (OrchestratorSettings, WarehouseSettings, RewardsSettings, EmailSettings)
    for name in settings.model_fields
}
# Orchestrator knobs for fast, deterministic recovery in tests.
FAST_ORCHESTRATOR = {
    "LEASE_TTL_S": "2",
    "RECOVERY_INTERVAL_S": "0.2",
    "RETRY_INITIAL_DELAY_S": "0.05",
    "RETRY_MAX_DELAY_S": "0.5",
    "RETRY_JITTER_S": "0.05",
    "STEP_MAX_ATTEMPTS": "5",
    "SHUTDOWN_GRACE_S": "5",
    "RESUME_DELAY_S": "0.5",
    # Tests post in bursts from one client; the per-client limit is not what they exercise.
    "RATE_LIMIT": "10000/second",
}


def free_port() -> int:
    """A port of 127.0.0.1 nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTING_NAMES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class ServiceProcess:
    """One service, started (and restarted) as a uvicorn subprocess on a fixed port."""

    name: str
    service: str
    env: dict[str, str]
    workdir: Path
    port: int = field(default_factory=free_port)
    # The address it listens on, and a command prefix to run it elsewhere (``ip netns exec …``).
    host: str = "127.0.0.1"
    launcher: tuple[str, ...] = ()
    popen: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def spawn(self, env: Mapping[str, str] | None = None) -> None:
        """Start the process (not waiting for it to be ready); ``env`` replaces its settings."""
        assert not self.alive(), f"{self.name} is already running"
        if env is not None:
            self.env = dict(env)
        log = self.workdir / f"{self.name}.{len(self.logs) + 1}.log"
        self.logs.append(log)
        command = [
            *self.launcher,
            sys.executable,
            "-m",
            "uvicorn",
            APPS[self.service],
            "--factory",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--no-access-log",
            "--timeout-keep-alive",
            "30",
        ]
        with log.open("wb") as output:
            self.popen = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=_base_env() | self.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Poll ``/readyz`` until it answers 200; fail with the log if the process exits or stalls."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
            while True:
                if not self.alive():
                    raise ProcessFailedError(
                        f"{self.name} exited with {self.returncode} before it was ready",
                        self,
                    )
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise ProcessFailedError(
                        f"{self.name} was not ready within {timeout_s} s", self
                    )
                await anyio.sleep(0.05)

    async def start(self, env: Mapping[str, str] | None = None) -> None:
        """Start and wait until ready; moves to another port if its port was taken meanwhile."""
        for attempt in range(3):
            self.spawn(env)
            try:
                await self.wait_ready()
                return
            except ProcessFailedError:
                if attempt == 2 or "address already in use" not in self.tail().lower():
                    raise
                self.port = free_port()

    async def wait_exit(self, timeout_s: float = EXIT_TIMEOUT_S) -> int:
        """Wait until the process ends; its return code (−9 after SIGKILL)."""
        assert self.popen is not None
        deadline = time.monotonic() + timeout_s
        while self.popen.poll() is None:
            if time.monotonic() > deadline:
                raise ProcessFailedError(f"{self.name} did not exit within {timeout_s} s", self)
            await anyio.sleep(0.02)
        return self.popen.returncode

    async def kill(self) -> int:
        """SIGKILL the process (by its pid) and reap it; its return code."""
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        return await self.wait_exit()

    def terminate(self) -> None:
        """Send SIGTERM: uvicorn shuts down gracefully."""
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)

    async def restart(self, env: Mapping[str, str] | None = None) -> None:
        """Kill if still running, then start again on the same port (``env`` replaces its settings)."""
        if self.alive():
            await self.kill()
        await self.start(env)

    def tail(self, lines: int = 60) -> str:
        """The end of the latest log."""
        if not self.logs or not self.logs[-1].exists():
            return ""
        text = self.logs[-1].read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def reap(self) -> None:
        """Kill the process if it still runs (cleanup; never raises)."""
        if self.popen is None:
            return
        try:
            if self.popen.poll() is None:
                self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass


class ProcessFailedError(AssertionError):
    """A process did not start or stop as expected; the message carries its log's tail."""

    def __init__(self, message: str, process: ServiceProcess) -> None:
        super().__init__(
            f"{message}; log {process.logs[-1] if process.logs else '-'}:\n{process.tail()}"
        )


class Harness:
    """The processes of one test."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[ServiceProcess] = []
        self._clients: list[httpx.AsyncClient] = []

    def process(
        self,
        service: str,
        *,
        name: str | None = None,
        placed: tuple[str, int, tuple[str, ...]] | None = None,
        **env: str,
    ) -> ServiceProcess:
        """A process of ``service`` (not started yet); ``placed``: (address, port, launcher) to
        run it on another host than a free port of 127.0.0.1."""
        name = name or service
        assert all(p.name != name for p in self.processes), f"{name} exists already"
        process = ServiceProcess(name, service, dict(env), self.workdir)
        if placed is not None:
            process.host, process.port, process.launcher = placed
        self.processes.append(process)
        return process

    async def start_all(self, *processes: ServiceProcess) -> None:
        """Start processes concurrently and wait until every one is ready."""
        async with anyio.create_task_group() as group:
            for process in processes:
                group.start_soon(process.start)

    def services(
        self, urls: Mapping[str, str], *, seed_demo_catalog: bool = False, **env: str
    ) -> dict[str, ServiceProcess]:
        """Warehouse, rewards and email processes; ``urls`` holds each one's DATABASE_URL."""
        found = {}
        for service in SERVICES:
            extra = dict(env)
            if service == "warehouse" and seed_demo_catalog:
                extra["SEED_DEMO_CATALOG"] = "true"
            found[service] = self.process(service, DATABASE_URL=urls[service], **extra)
        return found

    def orchestrator(
        self,
        database_url: str,
        services: Mapping[str, ServiceProcess | str],
        *,
        name: str = "orchestrator",
        placed: tuple[str, int, tuple[str, ...]] | None = None,
        **knobs: str,
    ) -> ServiceProcess:
        """An orchestrator process wired to ``services`` (processes or URLs), with fast test knobs."""
        env = FAST_ORCHESTRATOR | {"DATABASE_URL": database_url}
        for service in SERVICES:
            target = services[service]
            env[f"{service.upper()}_URL"] = target if isinstance(target, str) else target.url
        env |= {k.upper(): str(v) for k, v in knobs.items()}
        return self.process("orchestrator", name=name, placed=placed, **env)

    def client(self, process: ServiceProcess, *, timeout_s: float = 10.0) -> httpx.AsyncClient:
        """A client of ``process`` (valid across restarts on the same port); closed by ``aclose``."""
        client = httpx.AsyncClient(
            base_url=process.url,
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=50),
        )
        self._clients.append(client)
        return client

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
        self._clients.clear()

    def close(self) -> None:
        """Kill every process still running (by pid)."""
        for process in self.processes:
            process.reap()

    def report(self, lines: int = 40) -> str:
        """The tail of every process's latest log, for a failed test's report."""
        parts = []
        for process in self.processes:
            state = "running" if process.alive() else f"exited {process.returncode}"
            parts.append(
                f"----- {process.name} (pid {process.pid}, {state}, {process.url}, "
                f"logs {[str(p) for p in process.logs]}) -----\n{process.tail(lines)}"
            )
        return "\n".join(parts)
