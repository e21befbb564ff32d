"""Fixtures of the email tests: apps on a fresh database, per backend, and an SMTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from aiosmtpd.controller import Controller

from email_service.main import create_app
from email_service.settings import Settings
from tests.email_service.helpers import SmtpSink, free_port
from tests.support import running


@pytest.fixture
def email_database(database_url: Callable[[str], str]) -> str:
    """An empty database for the email service."""
    return database_url("email")


@pytest.fixture
async def client(email_database: str, anyio_backend: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an email service without SMTP_URL (messages go to the log)."""
    del anyio_backend  # requested so the fixture runs on the test's event loop
    async with running(create_app(Settings(database_url=email_database))) as client:
        yield client


@pytest.fixture
def smtp_sink() -> Iterator[tuple[SmtpSink, int]]:
    """A running SMTP server on 127.0.0.1 that records what it accepts, and its port."""
    sink = SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


@pytest.fixture
async def smtp_client(
    email_database: str, smtp_sink: tuple[SmtpSink, int], anyio_backend: str
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an email service that sends over SMTP to ``smtp_sink``."""
    del anyio_backend
    settings = Settings(database_url=email_database, smtp_url=f"smtp://127.0.0.1:{smtp_sink[1]}")
    async with running(create_app(settings)) as client:
        yield client
