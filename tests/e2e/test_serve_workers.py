"""`checkout-suite serve orchestrator --workers 2`: each worker listens on a socket of its own.

Real processes (``checkout_suite.workers``). Clients that open their keep-alive connections
together must find them spread over the workers, not all on the one that woke first, as with
uvicorn's shared socket; a worker that dies is replaced; SIGTERM stops them all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from checkout_suite import workers
from tests.e2e.test_serve_defaults import KEY, ROOT, served
from tests.suite import checkout_body

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not workers.supported(), reason="no SO_REUSEPORT on this system"),
]

CLIENTS = 16


def workers_of(port: int) -> dict[int, psutil.Process]:
    """The worker processes of the `serve` listening on ``port``, by pid."""
    found = {}
    for process in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if str(port) in process.cmdline():
                found.update(
                    (child.pid, child)
                    for child in process.children()
                    if any(c.status == psutil.CONN_LISTEN for c in child.net_connections("tcp"))
                )
        except psutil.NoSuchProcess:
            continue
    return found


def connections_of(process: psutil.Process, port: int, clients: set[int]) -> int:
    """How many of the connections from the ``clients`` ports to ``port`` the process holds."""
    return sum(
        1
        for c in process.net_connections("tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port and c.raddr.port in clients
    )


def cpu_of(pool: list[psutil.Process]) -> list[float]:
    return [sum(p.cpu_times()[:2]) for p in pool]


def load(url: str, n: int, concurrency: int) -> None:
    """The bench's load generator: ``n`` checkouts from ``concurrency`` keep-alive connections."""
    command = [sys.executable, "-m", "bench.load", "--url", url, "--n", str(n)]
    command += ["--concurrency", str(concurrency), "--bearer", KEY]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, timeout=120, check=False)
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]


def test_workers_share_the_connections_and_a_dead_one_is_replaced(tmp_path: Path) -> None:
    with served(tmp_path, "--workers", "2") as (url, _log):
        port = int(url.rsplit(":", 1)[1])
        headers = {"Authorization": f"Bearer {KEY}"}
        clients = [httpx.Client(base_url=url, headers=headers, timeout=30) for _ in range(CLIENTS)]
        try:
            answers = [client.post("/checkouts", json=checkout_body()) for client in clients]
            assert [a.status_code for a in answers] == [201] * CLIENTS
            assert {a.json()["status"] for a in answers} == {"completed"}
            pool = workers_of(port)
            assert len(pool) == 2
            # 32 keep-alive connections, opened at once by a client under load: with uvicorn's
            # one shared socket, one worker took them all (10 s of CPU against 1 s).
            before = cpu_of(list(pool.values()))
            load(url, 600, 32)
            spent = [
                after - first
                for after, first in zip(cpu_of(list(pool.values())), before, strict=True)
            ]
            assert min(spent) >= 0.2 * sum(spent), spent
            # Both replicas journal to one database: every checkout is there, once.
            for answer in answers:
                read = clients[0].get(f"/checkouts/{answer.json()['id']}").json()
                assert read["status"] == "completed"
                assert [step["attempts"] for step in read["steps"]] == [1, 1, 1]

            victim = next(iter(pool))
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                now = workers_of(port)
                if len(now) == 2 and victim not in now:
                    break
                time.sleep(0.2)
            else:
                raise AssertionError(f"no worker replaced {victim}: {workers_of(port)}")
            with httpx.Client(base_url=url, headers=headers, timeout=30) as fresh:
                assert fresh.post("/checkouts", json=checkout_body()).status_code == 201
        finally:
            for client in clients:
                client.close()
        survivors = list(workers_of(port).values())
    # `served` sent SIGTERM to `serve`: every worker has stopped with it.
    _gone, alive = psutil.wait_procs(survivors, timeout=30)
    assert alive == []
