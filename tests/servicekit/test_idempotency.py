"""servicekit.idempotency: request fingerprints, key validation and once-only execution."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from servicekit.app import create_service_app
from servicekit.idempotency import (
    IdempotencyKeyHeader,
    IdempotencyRecordBase,
    fingerprint,
)
from servicekit.problems import ProblemError


class KitTable(SQLModel, registry=registry()):
    """Tables of these tests only."""


class Record(IdempotencyRecordBase, KitTable, table=True):
    __tablename__ = "kit_idempotency_record"


class Effect(KitTable, table=True):
    __tablename__ = "kit_effect"

    id: int | None = Field(default=None, primary_key=True)
    label: str


class RefusedError(ProblemError):
    status = 409
    title = "Refused"


# fingerprint -----------------------------------------------------------------------------------


def test_fingerprint_ignores_key_order() -> None:
    """Objects with the same members in any order, at any depth, have one fingerprint."""
    first = {"a": 1, "b": {"x": [1, {"p": 1, "q": 2}], "y": None}, "c": "z"}
    second = {"c": "z", "b": {"y": None, "x": [1, {"q": 2, "p": 1}]}, "a": 1}

    assert fingerprint(first) == fingerprint(second)
    assert len(fingerprint(first)) == 64
    assert fingerprint(first) == fingerprint(dict(first))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"a": 1}, {"a": 2}),
        ({"a": 1}, {"a": 1, "b": None}),
        ({"a": [1, 2]}, {"a": [2, 1]}),
        ({"a": "1"}, {"a": 1}),
        ({"a": 1}, {"A": 1}),
        (None, {}),
    ],
)
def test_fingerprint_tells_different_meanings_apart(first: Any, second: Any) -> None:
    """Different values, members, list orders or types give different fingerprints."""
    assert fingerprint(first) != fingerprint(second)


def test_fingerprint_is_stable_across_calls_and_types() -> None:
    """The digest is deterministic and accepts values JSON cannot hold natively."""
    payload = {"price": Decimal("19.99"), "n": 2}

    assert fingerprint(payload) == fingerprint({"n": 2, "price": Decimal("19.99")})
    assert fingerprint(None) == fingerprint(None)


# the Idempotency-Key header --------------------------------------------------------------------


def _key_app() -> FastAPI:
    app = create_service_app()

    @app.post("/things")
    async def create_thing(idempotency_key: IdempotencyKeyHeader = None) -> dict[str, str | None]:
        return {"key": idempotency_key}

    return app


@pytest.fixture
async def key_client(anyio_backend: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app that echoes the Idempotency-Key it accepted."""
    del anyio_backend  # requested so the fixture runs on the test's event loop
    transport = httpx.ASGITransport(app=_key_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.mark.anyio
@pytest.mark.parametrize(
    "key",
    [b"", b"x" * 256, b"two words", b"tab\there", b"caf\xc3\xa9", b"del\x7f", b"nul\x00"],
    ids=["empty", "256-chars", "space", "tab", "non-ascii", "del", "nul"],
)
async def test_invalid_key_is_422_naming_the_header(
    key_client: httpx.AsyncClient, key: bytes
) -> None:
    """A key that is not 1–255 visible ASCII characters is a 422 problem naming the header."""
    response = await key_client.post("/things", headers=[(b"Idempotency-Key", key)])

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert [e["loc"] for e in body["errors"]] == [["header", "Idempotency-Key"]]
    assert "Idempotency-Key" in body["detail"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "key",
    ["k", "x" * 255, "3f0c2a9e-warehouse-reserve", "".join(chr(c) for c in range(0x21, 0x7F))],
    ids=["one-char", "255-chars", "typical", "every-visible-char"],
)
async def test_valid_key_is_accepted(key_client: httpx.AsyncClient, key: str) -> None:
    """Keys of 1–255 visible ASCII characters reach the route unchanged."""
    response = await key_client.post("/things", headers={"Idempotency-Key": key})

    assert response.status_code == 200, response.text
    assert response.json() == {"key": key}


@pytest.mark.anyio
async def test_key_is_optional(key_client: httpx.AsyncClient) -> None:
    """Without the header the route runs with no key."""
    response = await key_client.post("/things")

    assert response.status_code == 200
    assert response.json() == {"key": None}
