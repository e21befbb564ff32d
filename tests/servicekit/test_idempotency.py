"""servicekit.idempotency: request fingerprints, key validation and once-only execution."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, select

from servicekit.app import create_service_app
from servicekit.db import create_sync_engine
from servicekit.idempotency import (
    IdempotencyKeyHeader,
    IdempotencyKeyReusedError,
    IdempotencyRecordBase,
    StoredResponse,
    execute_once,
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


# execute_once ----------------------------------------------------------------------------------


@pytest.fixture
def engine(database_url: Callable[[str], str]) -> Iterator[Engine]:
    """An engine on a fresh database holding the test tables."""
    engine = create_sync_engine(database_url("kit"))
    KitTable.metadata.create_all(engine)
    yield engine
    engine.dispose()


def _effects(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return [e.label for e in session.exec(select(Effect).order_by(Effect.id)).all()]


def _run(engine: Engine, key: str | None, payload: Any, label: str = "done") -> StoredResponse:
    with Session(engine) as session:

        def action() -> tuple[int, Any]:
            session.add(Effect(label=label))
            return 201, {"label": label, "payload": payload}

        return execute_once(
            session,
            Record,
            scope="POST /things",
            key=key,
            digest=fingerprint(payload),
            action=action,
        )


def test_execute_once_applies_a_keyed_request_once(engine: Engine) -> None:
    """A repeat with the same key and meaning replays the first answer and applies nothing."""
    first = _run(engine, "k-1", {"n": 1}, label="first")
    again = _run(engine, "k-1", {"n": 1}, label="second")

    assert first == StoredResponse(201, {"label": "first", "payload": {"n": 1}})
    assert again == StoredResponse(201, {"label": "first", "payload": {"n": 1}}, replayed=True)
    assert again.to_response().headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.to_response().headers
    assert _effects(engine) == ["first"]


def test_execute_once_refuses_a_key_reused_with_another_meaning(engine: Engine) -> None:
    """The same key with a different payload raises a 422 error and applies nothing."""
    _run(engine, "k-1", {"n": 1}, label="first")

    with pytest.raises(IdempotencyKeyReusedError) as raised:
        _run(engine, "k-1", {"n": 2}, label="second")

    assert raised.value.status == 422
    assert "k-1" in raised.value.detail
    assert _effects(engine) == ["first"]


def test_execute_once_scopes_keys(engine: Engine) -> None:
    """One key under two scopes names two requests."""
    _run(engine, "k-1", {"n": 1}, label="first")
    with Session(engine) as session:
        result = execute_once(
            session,
            Record,
            scope="POST /other",
            key="k-1",
            digest=fingerprint({"n": 1}),
            action=lambda: (200, {"other": True}),
        )

    assert result == StoredResponse(200, {"other": True})


def test_execute_once_without_key_runs_every_time(engine: Engine) -> None:
    """Without a key every request is applied and none is recorded."""
    _run(engine, None, {"n": 1}, label="first")
    _run(engine, None, {"n": 1}, label="second")

    assert _effects(engine) == ["first", "second"]
    with Session(engine) as session:
        assert session.exec(select(Record)).all() == []


@pytest.mark.parametrize("key", ["k-1", None])
def test_refusal_rolls_back_and_is_not_recorded(engine: Engine, key: str | None) -> None:
    """An action that refuses leaves no effect and no record, so the same key may succeed later."""
    with Session(engine) as session:

        def refuse() -> tuple[int, Any]:
            session.add(Effect(label="half-done"))
            session.flush()
            raise RefusedError("not now")

        with pytest.raises(RefusedError):
            execute_once(
                session,
                Record,
                scope="POST /things",
                key=key,
                digest=fingerprint({}),
                action=refuse,
            )

    assert _effects(engine) == []
    assert _run(engine, key, {}, label="later").replayed is False
    assert _effects(engine) == ["later"]


def test_unexpected_error_rolls_back(engine: Engine) -> None:
    """An action failing unexpectedly leaves no effect and no record."""
    with Session(engine) as session:

        def fail() -> tuple[int, Any]:
            session.add(Effect(label="half-done"))
            session.flush()
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            execute_once(
                session,
                Record,
                scope="POST /things",
                key="k-1",
                digest=fingerprint({}),
                action=fail,
            )

    assert _effects(engine) == []
    with Session(engine) as session:
        assert session.exec(select(Record)).all() == []
