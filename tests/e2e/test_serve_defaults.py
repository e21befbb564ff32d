"""The orchestrator as the README starts it, `checkout-suite serve orchestrator`, with its defaults.

Real processes: one stand-in process answers for warehouse, rewards and email
(``bench.standins``); the orchestrator is the command a user or the container image runs, with
only its database, the services' URLs and the keys set. What its defaults must give: one log
line per checkout that goes well, no access log unless ``ACCESS_LOG=true``, and no 429 for one
client placing checkouts as fast as it can.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.suite import checkout_body

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
KEY = "serve-test-key"
READY_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "exited before it was ready"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready in {READY_S} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def served(tmp_path: Path, *args: str, **env: str) -> Iterator[tuple[str, Path]]:
    """Stand-ins, then `checkout-suite serve orchestrator ARGS` on them; yields its URL and log."""
    base = {k: v for k, v in os.environ.items() if k not in ("LOG_LEVEL", "ACCESS_LOG")}
    base["PYTHONPATH"] = str(ROOT)
    standins_port, port = free_port(), free_port()
    standins = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.standins:create_app",
            "--factory",
            "--port",
            str(standins_port),
            "--log-level",
            "warning",
        ],
        cwd=tmp_path,
        env=base,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    services = f"http://127.0.0.1:{standins_port}"
    log = tmp_path / "orchestrator.log"
    settings = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'orchestrator.db'}",
        "EMAIL_URL": services,
        "WAREHOUSE_URL": services,
        "REWARDS_URL": services,
        "API_KEYS": KEY,
        "SERVICE_TOKEN": "serve-test-token",
    }
    cli = str(Path(sys.executable).with_name("checkout-suite"))
    with log.open("wb") as output:
        orchestrator = subprocess.Popen(
            [cli, "serve", "orchestrator", "--port", str(port), *args],
            cwd=tmp_path,
            env=base | settings | env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(services, standins)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, orchestrator)
        yield url, log
    finally:
        stop(orchestrator)
        stop(standins)


def lines_of(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def place(url: str, count: int) -> list[int]:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        return [client.post("/checkouts", json=checkout_body()).status_code for _ in range(count)]


def test_at_its_defaults_a_checkout_is_one_log_line_and_no_access_log(tmp_path: Path) -> None:
    """Five checkouts: five `checkout completed` lines naming their steps, nothing else of the saga,
    no access line."""
    with served(tmp_path) as (url, log):
        assert place(url, 5) == [201] * 5
    lines = lines_of(log)
    saga = [line for line in lines if line.get("logger") == "orchestrator.saga"]
    assert [line["event"] for line in saga] == ["checkout completed"] * 5
    for line in saga:
        assert line["level"] == "info"
        assert line["steps"] == "warehouse=succeeded/1 rewards=succeeded/1 email=succeeded/1"
    assert not [line for line in lines if line.get("logger") == "uvicorn.access"]


def test_access_log_and_debug_are_settings(tmp_path: Path) -> None:
    """ACCESS_LOG=true: one access line per request; LOG_LEVEL=debug: every attempt's events."""
    with served(tmp_path, ACCESS_LOG="true", LOG_LEVEL="debug") as (url, log):
        assert place(url, 2) == [201] * 2
    lines = lines_of(log)
    access = [line for line in lines if line.get("logger") == "uvicorn.access"]
    assert sum("POST /checkouts" in line["event"] for line in access) == 2
    events = [line["event"] for line in lines if line.get("logger") == "orchestrator.saga"]
    assert events.count("step attempt started") == 6
    assert events.count("step attempt succeeded") == 6
    assert events.count("checkout completed") == 2


def test_one_client_placing_checkouts_at_full_speed_is_never_refused(tmp_path: Path) -> None:
    """The default rate limit: 300 checkouts from one key, 16 at a time, all 201, none 429."""
    with served(tmp_path) as (url, _):
        headers = {"Authorization": f"Bearer {KEY}"}

        async def burst() -> list[int]:
            statuses: list[int] = []
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:

                async def worker() -> None:
                    for _ in range(300 // 16 + 1):
                        if len(statuses) >= 300:
                            return
                        response = await client.post("/checkouts", json=checkout_body())
                        statuses.append(response.status_code)

                async with anyio.create_task_group() as group:
                    for _ in range(16):
                        group.start_soon(worker)
            return statuses

        statuses = anyio.run(burst)
    assert len(statuses) >= 300
    assert set(statuses) == {201}, {s: statuses.count(s) for s in set(statuses)}
