"""Idempotency-Key handling, after the IETF ``Idempotency-Key`` header draft.

A service applies a mutating request and records its response under ``(scope, key)`` in one
transaction, so the effect and the record exist together or not at all. A repeat with the same
key and the same meaning replays the first response (``Idempotent-Replayed: true``) and applies
nothing; the same key with a different body is 422. Refusals (4xx) are not recorded: they changed
nothing, so answering a repeat afresh is safe.

Services keep their records in a table of their own (``IdempotencyRecordBase``) and a route's
whole body is ``run_once``. The orchestrator keeps its one record per checkout on the checkout
row, and answers only once the saga has run; it shares the key's storage (``stored_key``), the
request's digest (``fingerprint``) and the comparison (``require_same_request``) with them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any

from fastapi import Header
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from servicekit.db.database import Database
from servicekit.db.statements import SQL, Row, Transaction
from servicekit.db.values import UTCDateTime
from servicekit.problems import ProblemError

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="1–255 visible ASCII characters. A repeat with the same key replays the first answer.",
        examples=["3f0c2a9e-warehouse-reserve"],
    ),
]


class IdempotencyKeyReusedError(ProblemError):
    """The key was first used with a request of another meaning."""

    status = 422
    type = "urn:checkout-suite:problem:idempotency-key-reused"
    title = "Idempotency key reused"


class IdempotencyRecordBase(SQLModel):
    """Columns of a service's idempotency table; each service declares the table on its own base."""

    scope: str = Field(primary_key=True, max_length=300)
    key: str = Field(primary_key=True, max_length=255)
    fingerprint: str = Field(max_length=64)
    status_code: int
    response_body: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC), sa_type=UTCDateTime)


def fingerprint(payload: Any) -> str:
    """A digest of a request's meaning: its parsed JSON with keys sorted."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


# What a body-less request's Idempotency-Key is recorded with.
NO_BODY = fingerprint(None)


@dataclass(frozen=True)
class StoredResponse:
    """A response, fresh or replayed."""

    status_code: int
    body: Any
    replayed: bool = False

    def to_response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        """Render as JSON, marking replays."""
        all_headers = dict(headers or {})
        if self.replayed:
            all_headers[REPLAYED_HEADER] = "true"
        return JSONResponse(self.body, status_code=self.status_code, headers=all_headers)


def stored_key(key: str) -> str:
    """How a key is stored: its SHA-256, so a key a client thought private is never kept in clear."""
    return hashlib.sha256(key.encode()).hexdigest()


# The records, written and read in plain SQL on the services' hot paths.
@cache
def _record_statements(table: str) -> tuple[SQL, SQL]:
    select = SQL(
        f"SELECT fingerprint, status_code, response_body FROM {table}"
        ' WHERE scope = :scope AND "key" = :key'
    )
    insert = SQL(
        f'INSERT INTO {table} (scope, "key", fingerprint, status_code, response_body, created_at)'
        " VALUES (:scope, :key, :fingerprint, :status_code, :response_body, :created_at)"
        ' ON CONFLICT (scope, "key") DO NOTHING'
    )
    return select, insert


class _TwinWon(Exception):
    """A concurrent request with the same key committed its record first."""


def require_same_request(recorded: str | None, digest: str, message: str) -> None:
    """Refuse (422) a key first used with a request of another meaning."""
    if recorded != digest:
        raise IdempotencyKeyReusedError(message)


def _replay_row(row: Row, key: str, digest: str) -> StoredResponse:
    recorded_fingerprint, status_code, response_body = row
    require_same_request(
        recorded_fingerprint,
        digest,
        f"The Idempotency-Key {key!r} was first used with a different request body.",
    )
    return StoredResponse(int(status_code), json.loads(response_body), replayed=True)


async def recorded_answer(
    transaction: Transaction,
    *,
    scope: str,
    key: str,
    digest: str,
    table: str = "idempotency_record",
) -> StoredResponse | None:
    """The recorded answer to ``key`` in ``scope``, if any; 422 if the key came with another body."""
    select, _ = _record_statements(table)
    row = await transaction.one(select, {"scope": scope, "key": stored_key(key)})
    return None if row is None else _replay_row(row, key, digest)


Action = Callable[[], Awaitable[tuple[int, Any]]]


async def apply_once(
    transaction: Transaction,
    *,
    scope: str,
    key: str | None,
    digest: str,
    action: Action,
    table: str = "idempotency_record",
    look_first: bool = True,
) -> StoredResponse:
    """Run ``action`` once per ``(scope, key)`` and record its answer in the same transaction.

    ``action`` writes through ``transaction`` and returns ``(status_code, json_body)``. Without a
    key it simply runs. The database that runs the transaction commits it (``Database.run``).

    ``look_first=False`` skips looking for a recorded answer before running ``action``, for an
    action that only reads and that a recorded answer is unlikely to precede: a recorded answer
    is then found when recording ours conflicts with it, and replayed (``action``'s reads are
    dropped), which saves a statement when there is none.
    """
    if key is None:
        status_code, body = await action()
        return StoredResponse(status_code, body)

    select, insert = _record_statements(table)
    stored = stored_key(key)
    if look_first:
        row = await transaction.one(select, {"scope": scope, "key": stored})
        if row is not None:
            await transaction.rollback()
            return _replay_row(row, key, digest)
    try:
        status_code, body = await action()
        inserted = await transaction.execute(
            insert,
            {
                "scope": scope,
                "key": stored,
                "fingerprint": digest,
                "status_code": status_code,
                "response_body": json.dumps(body),
                "created_at": datetime.now(UTC),
            },
        )
        if inserted != 1:
            raise _TwinWon
    except (_TwinWon, IntegrityError, ProblemError):
        # A concurrent twin with the same key may have won the race (PostgreSQL's read-committed
        # readers do not see it until it commits): answer as it did, or re-raise our refusal.
        await transaction.rollback()
        twin = await transaction.one(select, {"scope": scope, "key": stored})
        await transaction.rollback()
        if twin is None:
            raise
        return _replay_row(twin, key, digest)
    return StoredResponse(status_code, body)


async def run_once(
    database: Database,
    *,
    scope: str,
    key: str | None,
    digest: str = NO_BODY,
    action: Callable[[Transaction], Awaitable[tuple[int, Any]]],
) -> StoredResponse:
    """A mutating route's whole body: ``action(transaction)`` once per ``(scope, key)``.

    One transaction of the service's database runs the action and records its answer with the
    key (``apply_once``); a repeat of the key replays the first answer.
    """

    async def work(transaction: Transaction) -> StoredResponse:
        return await apply_once(
            transaction,
            scope=scope,
            key=key,
            digest=digest,
            action=lambda: action(transaction),
        )

    return await database.run(work)
