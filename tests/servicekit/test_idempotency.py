"""servicekit.idempotency: request fingerprints, key validation and once-only execution
(``apply_once`` on SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, select

from servicekit.app import create_service_app
from servicekit.db.database import Database
from servicekit.db.engines import create_sync_engine
from servicekit.db.statements import SQL, Transaction
from servicekit.idempotency import (
    IdempotencyKeyHeader,
    IdempotencyKeyReusedError,
    IdempotencyRecordBase,
    StoredResponse,
    apply_once,
    fingerprint,
    stored_key,
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


# apply_once: once per key, in the transaction of its effect ------------------------------------

SCOPE = "POST /things"
TABLE = Record.__tablename__
INSERT_EFFECT = SQL("INSERT INTO kit_effect (label) VALUES (:label)")
EFFECT_LABELS = SQL("SELECT label FROM kit_effect ORDER BY id")


@pytest.fixture
def kit_url(database_url: Callable[[str], str]) -> str:
    """A fresh database (SQLite, then PostgreSQL) holding the tables of these tests."""
    url = database_url("kit_idempotency")
    engine = create_sync_engine(url)
    KitTable.metadata.create_all(engine)
    engine.dispose()
    return url


@pytest.fixture
async def kit_database(kit_url: str, anyio_backend: str) -> AsyncIterator[Database]:
    """The kit's engine on that database."""
    del anyio_backend  # requested so the fixture runs on the test's event loop
    database = Database.open(kit_url)
    yield database
    await database.close()


async def _apply(
    database: Database,
    key: str | None,
    payload: Any,
    label: str,
    *,
    scope: str = SCOPE,
    refuse: bool = False,
    fail: bool = False,
    look_first: bool = True,
) -> StoredResponse:
    """A request writing the effect ``label``: refused (409) or failing after writing it if asked."""

    async def work(tx: Transaction) -> StoredResponse:
        async def action() -> tuple[int, Any]:
            await tx.execute(INSERT_EFFECT, {"label": label})
            if refuse:
                raise RefusedError("no")
            if fail:
                raise RuntimeError("boom")
            return 201, {"label": label, "payload": payload}

        return await apply_once(
            tx,
            scope=scope,
            key=key,
            digest=fingerprint(payload),
            action=action,
            table=TABLE,
            look_first=look_first,
        )

    return await database.run(work)


async def _effects(database: Database) -> list[str]:
    return [row[0] for row in (await database.execute(EFFECT_LABELS)).rows]


def _records(url: str) -> list[Record]:
    """The recorded answers, read back through the ORM model."""
    engine = create_sync_engine(url)
    try:
        with Session(engine) as session:
            records = list(session.exec(select(Record).order_by(Record.scope)).all())
            session.expunge_all()
            return records
    finally:
        engine.dispose()


@pytest.mark.anyio
async def test_apply_once_applies_a_keyed_request_once(
    kit_database: Database, kit_url: str
) -> None:
    """A repeat with the same key and meaning replays the first answer and applies nothing."""
    first = await _apply(kit_database, "k-1", {"n": 1}, "first")
    again = await _apply(kit_database, "k-1", {"n": 1}, "second")

    assert first == StoredResponse(201, {"label": "first", "payload": {"n": 1}})
    assert again == StoredResponse(201, {"label": "first", "payload": {"n": 1}}, replayed=True)
    assert await _effects(kit_database) == ["first"]
    [record] = _records(kit_url)
    assert (record.scope, record.status_code) == (SCOPE, 201)
    assert record.key == stored_key("k-1") != "k-1"  # stored hashed
    assert record.fingerprint == fingerprint({"n": 1})
    assert record.created_at.tzinfo is not None


@pytest.mark.anyio
@pytest.mark.parametrize("look_first", [True, False], ids=["looking-first", "not-looking-first"])
async def test_apply_once_refuses_a_key_reused_with_another_meaning(
    kit_database: Database, kit_url: str, look_first: bool
) -> None:
    """The same key with a different payload raises a 422 error and applies nothing."""
    await _apply(kit_database, "k-1", {"n": 1}, "first")
    with pytest.raises(IdempotencyKeyReusedError) as refused:
        await _apply(kit_database, "k-1", {"n": 2}, "second", look_first=look_first)
    assert refused.value.status == 422
    assert await _effects(kit_database) == ["first"]
    assert [r.fingerprint for r in _records(kit_url)] == [fingerprint({"n": 1})]


@pytest.mark.anyio
async def test_apply_once_without_looking_first_replays_on_conflict(
    kit_database: Database,
) -> None:
    """``look_first=False`` runs the action, finds the recorded answer when recording its own
    conflicts, replays it and drops the action's writes."""
    await _apply(kit_database, "k-1", {"n": 1}, "first")
    again = await _apply(kit_database, "k-1", {"n": 1}, "second", look_first=False)
    assert again == StoredResponse(201, {"label": "first", "payload": {"n": 1}}, replayed=True)
    assert await _effects(kit_database) == ["first"]


@pytest.mark.anyio
async def test_apply_once_records_no_refusal(kit_database: Database, kit_url: str) -> None:
    """A refusal (4xx) rolls its effect back and is not recorded: the same key may be tried again."""
    with pytest.raises(RefusedError):
        await _apply(kit_database, "k-1", {"n": 1}, "refused", refuse=True)
    assert await _effects(kit_database) == []
    assert _records(kit_url) == []
    assert (await _apply(kit_database, "k-1", {"n": 1}, "applied")).replayed is False
    assert await _effects(kit_database) == ["applied"]
    assert len(_records(kit_url)) == 1


@pytest.mark.anyio
async def test_apply_once_scopes_keys(kit_database: Database, kit_url: str) -> None:
    """One key under two scopes names two requests."""
    await _apply(kit_database, "k-1", {"n": 1}, "first")
    other = await _apply(kit_database, "k-1", {"n": 1}, "other", scope="POST /other")

    assert other == StoredResponse(201, {"label": "other", "payload": {"n": 1}})
    assert await _effects(kit_database) == ["first", "other"]
    assert [r.scope for r in _records(kit_url)] == ["POST /other", SCOPE]


@pytest.mark.anyio
async def test_apply_once_rolls_back_an_unexpected_error(
    kit_database: Database, kit_url: str
) -> None:
    """An action failing unexpectedly leaves no effect and no record."""
    with pytest.raises(RuntimeError, match="boom"):
        await _apply(kit_database, "k-1", {}, "half-done", fail=True)
    assert await _effects(kit_database) == []
    assert _records(kit_url) == []


@pytest.mark.anyio
async def test_apply_once_without_key_runs_every_time(kit_database: Database, kit_url: str) -> None:
    """Without a key every request applies, and nothing is recorded."""
    first = await _apply(kit_database, None, {"n": 1}, "a")
    second = await _apply(kit_database, None, {"n": 1}, "b")
    assert (first.replayed, second.replayed) == (False, False)
    assert await _effects(kit_database) == ["a", "b"]
    assert _records(kit_url) == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_apply_once_applies_concurrent_twins_once(kit_database: Database) -> None:
    """Two requests with one key in flight together (each sees no record yet): one applies, the
    other waits for its record, drops its own effect and replays the answer."""

    async def work(tx: Transaction, label: str) -> StoredResponse:
        async def action() -> tuple[int, Any]:
            await tx.execute(INSERT_EFFECT, {"label": label})
            await anyio.sleep(0.2)  # both are past looking for a record
            return 201, {"label": label}

        return await apply_once(
            tx, scope=SCOPE, key="k-1", digest=fingerprint({}), action=action, table=TABLE
        )

    answers: list[StoredResponse] = []

    async def request(label: str) -> None:
        answers.append(await kit_database.run(lambda tx: work(tx, label)))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(request, "a")
            group.start_soon(request, "b")
    assert sorted(answer.replayed for answer in answers) == [False, True]
    assert answers[0].body == answers[1].body
    assert await _effects(kit_database) == [answers[0].body["label"]]
