"""Fixtures shared by every test: databases on SQLite and PostgreSQL, and in-process app clients.

Tests that take ``database_url`` run once on SQLite and once on PostgreSQL. PostgreSQL comes from
``TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``); when it does not
answer those runs are skipped with the reason, unless ``REQUIRE_POSTGRES=1`` (CI), where they fail.
Tests that take ``broker`` need RabbitMQ at ``TEST_BROKER_URL`` (default
``amqp://guest:guest@127.0.0.1:5672/``): skipped with the reason where none answers, unless
``REQUIRE_BROKER=1`` (CI). Each gets an events prefix of its own, whose queues are deleted after.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import aio_pika
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"
BROKER_URL = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
REQUIRE_BROKER = os.environ.get("REQUIRE_BROKER") == "1"
_postgres_state: dict[str, str | None] = {}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _postgres_unavailable_reason() -> str | None:
    """None when PostgreSQL answers, else why not (checked once per run)."""
    if "reason" not in _postgres_state:
        try:
            engine = create_engine(make_url(POSTGRES_URL).set(drivername="postgresql+psycopg"))
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            engine.dispose()
            _postgres_state["reason"] = None
        except Exception as exc:
            _postgres_state["reason"] = (
                f"PostgreSQL is not reachable at {POSTGRES_URL} ({type(exc).__name__}); "
                "set TEST_POSTGRES_URL to run these tests"
            )
    return _postgres_state["reason"]


def _fresh_postgres_database(name: str) -> str:
    """A PostgreSQL database named ``name`` with an empty public schema; returns its URL."""
    base = make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        exists = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
        ).first()
        if not exists:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    target = base.set(database=name)
    engine = create_engine(target, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        # A connection a previous test leaked would hold locks the DROP waits on: end them first.
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
            ),
            {"n": name},
        )
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return target.render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend a test runs on."""
    if request.param == "postgres":
        reason = _postgres_unavailable_reason()
        if reason is not None:
            if REQUIRE_POSTGRES:
                pytest.fail(reason)
            pytest.skip(reason)
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, worker_suffix: str) -> Callable[[str], str]:
    """Make an empty database for a service: ``database_url("warehouse")``."""

    def make(service: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / service}.db"
        return _fresh_postgres_database(f"checkout_test_{service}{worker_suffix}")

    return make


@pytest.fixture
def worker_suffix() -> str:
    """Distinguishes databases of pytest runs sharing one server (TEST_DB_SUFFIX, pytest-xdist workers)."""
    parts = [os.environ.get("TEST_DB_SUFFIX", ""), os.environ.get("PYTEST_XDIST_WORKER", "")]
    return "".join(f"_{part}" for part in parts if part)


@dataclass(frozen=True)
class BrokerUnderTest:
    """A RabbitMQ for one test: its URL and an events prefix no other test uses."""

    url: str
    prefix: str

    @property
    def settings(self) -> dict[str, str]:
        """The choreography settings of all four services."""
        return {
            "coordination": "choreography",
            "broker_url": self.url,
            "events_prefix": self.prefix,
        }


def _broker_unavailable_reason() -> str | None:
    """None when RabbitMQ accepts a connection, else why not (checked once per run)."""
    if "broker" not in _postgres_state:
        parsed = urlparse(BROKER_URL)
        try:
            socket.create_connection(
                (parsed.hostname or "127.0.0.1", parsed.port or 5672), 2
            ).close()
            _postgres_state["broker"] = None
        except OSError as exc:
            _postgres_state["broker"] = (
                f"RabbitMQ is not reachable at {parsed.hostname}:{parsed.port or 5672} "
                f"({type(exc).__name__}); set TEST_BROKER_URL to run these tests"
            )
    return _postgres_state["broker"]


@pytest.fixture
async def broker() -> AsyncIterator[BrokerUnderTest]:
    """RabbitMQ, with a prefix of this test's own; its queues and exchanges are deleted after."""
    reason = _broker_unavailable_reason()
    if reason is not None:
        if REQUIRE_BROKER:
            pytest.fail(reason)
        pytest.skip(reason)
    under_test = BrokerUnderTest(BROKER_URL, f"test-{uuid.uuid4().hex[:12]}")
    yield under_test
    await delete_broker_names(under_test)


async def delete_broker_names(under_test: BrokerUnderTest) -> None:
    """Delete the queues and exchanges of ``under_test.prefix``."""
    connection = await aio_pika.connect(under_test.url)
    try:
        channel = await connection.channel()
        for consumer in ("journal", "warehouse", "rewards", "email", "dead"):
            await channel.queue_delete(f"{under_test.prefix}.{consumer}")
        for exchange in ("events", "dead"):
            await channel.exchange_delete(f"{under_test.prefix}.{exchange}")
    finally:
        await connection.close()
