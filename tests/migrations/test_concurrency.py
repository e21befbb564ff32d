"""Two replicas migrating one database at once: one applies the migrations, the other finds them done.

Each replica is a real process (``checkout-suite migrate NAME``), as two containers starting at
once would be. The test holds the lock the upgrade takes (PostgreSQL: the service's advisory lock;
SQLite: the write lock of ``BEGIN IMMEDIATE``) until both processes are waiting on it, then lets
them race.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from servicekit.db.engines import create_sync_engine
from tests.migrations.helpers import SERVICES, differences, version_of

ROOT = Path(__file__).resolve().parents[2]


def _start_migrate(name: str, url: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.Popen(
        [sys.executable, "-m", "checkout_suite.cli", "migrate", name, "--database-url", url],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _advisory_waiters(connection: sa.Connection) -> int:
    query = sa.text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    return int(connection.execute(query).scalar_one())


# The lock is the kit's, keyed per history: two services (one async, one sync app) show it.
@pytest.mark.parametrize("name", ["orchestrator", "rewards"])
def test_two_replicas_migrating_at_once_both_succeed(
    name: str, backend: str, database_url: Callable[[str], str]
) -> None:
    """Both processes exit 0; the schema is at head once, with no difference from the models."""
    service = SERVICES[name]
    url = database_url(name)
    holder = create_sync_engine(url)
    replicas: list[subprocess.Popen[str]] = []
    try:
        with holder.connect() as connection:
            transaction = connection.begin()  # SQLite: BEGIN IMMEDIATE, the write lock
            if backend == "postgres":
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": service.history.lock_key}
                )
            replicas = [_start_migrate(name, url), _start_migrate(name, url)]
            if backend == "postgres":
                with holder.connect() as observer:
                    deadline = time.monotonic() + 60
                    while _advisory_waiters(observer) < 2:
                        assert time.monotonic() < deadline, "the replicas never waited on the lock"
                        assert all(r.poll() is None for r in replicas), "a replica did not wait"
                        time.sleep(0.1)
                        observer.rollback()
            else:
                time.sleep(2)  # both are importing or already queued on the write lock
            assert all(r.poll() is None for r in replicas), "a replica went past the lock"
            transaction.commit()
        outputs = [r.communicate(timeout=90)[0] for r in replicas]
    finally:
        for replica in replicas:
            if replica.poll() is None:
                replica.kill()
                replica.wait()
        holder.dispose()
    assert [r.returncode for r in replicas] == [0, 0], outputs
    assert sorted("(was empty)" in o for o in outputs) == [False, True], outputs
    assert sum("(already there)" in o for o in outputs) == 1, outputs
    assert version_of(url, service.history) == [service.head]
    assert differences(url, service.history) == []
