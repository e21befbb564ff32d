"""The ``checkout`` and ``step`` tables: every statement that reads or writes them.

A checkout and its steps are one aggregate: inserted together, read together (one statement:
one snapshot, one round trip), and changed together by the fenced write (``fenced_write``).
Statements are plain SQL on the kit's ``Database`` (``servicekit.db``), written once for both
backends, binding only parameters, never literals (with literals, SQLite's planner may pick a
full scan of ``checkout`` once ``ANALYZE`` statistics exist: see BENCHMARKS.md). Rows come back
as ``CheckoutRecord`` and ``StepRecord``; the models in ``orchestrator.models`` are the schema.

On PostgreSQL each of these is one statement, hence one round trip: the checkout's insert with
its steps (``unnest``), and the fenced update with the step updates it guards (data-modifying
CTEs that touch the steps only when the fenced update matched). On SQLite, where a transaction
costs no round trip, they are a few statements of one transaction.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table

from orchestrator.journal.records import (
    CHECKOUT_COLUMNS,
    STEP_COLUMNS,
    CheckoutRecord,
    Loaded,
    StepRecord,
)
from orchestrator.models import Checkout, Step
from orchestrator.statuses import UNFINISHED_STATUSES, CheckoutStatus
from servicekit.db.database import Database
from servicekit.db.statements import SQL, Row, Transaction
from servicekit.db.values import row_reader, uuid_of

# (the owner and token of the checkout's lease) when a fenced write was refused, or no row at all.
Refusal = tuple[str | None, int | None] | None

_CHECKOUT_TABLE: Table = Checkout.__table__  # type: ignore[attr-defined]
_STEP_TABLE: Table = Step.__table__  # type: ignore[attr-defined]
if CHECKOUT_COLUMNS != tuple(_CHECKOUT_TABLE.columns.keys()) or STEP_COLUMNS != tuple(
    _STEP_TABLE.columns.keys()
):
    raise RuntimeError("the journal's records must have the columns of its tables, in order")

_CHECKOUT_LIST = ", ".join(CHECKOUT_COLUMNS)
_STEP_LIST = ", ".join(STEP_COLUMNS)
_UNFINISHED = {"pending": UNFINISHED_STATUSES[0], "running": UNFINISHED_STATUSES[1]}
_DUE = (
    "status IN (:pending, :running) AND (lease_expires_at IS NULL OR lease_expires_at < :now) "
    "AND (next_attempt_at IS NULL OR next_attempt_at <= :now)"
)
# No ORDER BY: callers sort steps by position; SQLite walks the (checkout_id, name) index.
_LOAD = SQL(
    f"SELECT {', '.join(f'checkout.{c}' for c in CHECKOUT_COLUMNS)}, "
    f"{', '.join(f'step.{c}' for c in STEP_COLUMNS)} "
    "FROM checkout LEFT OUTER JOIN step ON step.checkout_id = checkout.id WHERE checkout.id = :id"
)
_BY_KEY = SQL(f"SELECT {_CHECKOUT_LIST} FROM checkout WHERE idempotency_key_hash = :key_hash")
_INSERT_CHECKOUT = SQL(
    f"INSERT INTO checkout ({_CHECKOUT_LIST}) VALUES ({', '.join(f':{c}' for c in CHECKOUT_COLUMNS)})"
)
# A new checkout's steps: pending, or (its first group) started or skipped by its insert.
NEW_STEP_COLUMNS = ("status", "attempts", "started_at", "finished_at")
_NEW_STEP_LIST = ", ".join(("checkout_id", "name", "position", *NEW_STEP_COLUMNS))
_INSERT_STEP = SQL(
    f"INSERT INTO step ({_NEW_STEP_LIST}) VALUES (:id, :name, :position, "
    f"{', '.join(f':{c}' for c in NEW_STEP_COLUMNS)})"
)
_INSERT_WITH_STEPS = SQL(
    f"WITH inserted AS ({_INSERT_CHECKOUT.sqlite} RETURNING id) "
    f"INSERT INTO step ({_NEW_STEP_LIST}) "
    f"SELECT inserted.id, new.name, new.position, {', '.join(f'new.{c}' for c in NEW_STEP_COLUMNS)} "
    "FROM inserted, unnest(:step_name::varchar[], :step_position::integer[], "
    ":step_status::varchar[], :step_attempts::integer[], :step_started_at::timestamptz[], "
    ":step_finished_at::timestamptz[]) "
    f"AS new (name, position, {', '.join(NEW_STEP_COLUMNS)})"
)
_CLAIM_SET = (
    "UPDATE checkout SET lease_owner = :owner, lease_token = lease_token + 1, "
    "lease_expires_at = :expires, next_attempt_at = NULL "
)
# On PostgreSQL a row another session holds locked is skipped, not waited for: a replica cut off
# in the middle of a transaction (a group commit's batch whose COMMIT never arrived) holds its
# rows until the server ends its session, and a claim waiting on one would stall the recovery
# pass behind it, every other due checkout with it. The skipped one is claimed on a later pass.
_CLAIM = SQL(
    f"{_CLAIM_SET}WHERE id = :id AND {_DUE} RETURNING lease_token",
    postgres=f"{_CLAIM_SET}WHERE id = (SELECT id FROM checkout WHERE id = :id AND {_DUE} "
    "FOR UPDATE SKIP LOCKED) RETURNING lease_token",
)
_DUE_IDS = SQL(
    f"SELECT id FROM checkout WHERE {_DUE} ORDER BY next_attempt_at, lease_expires_at LIMIT :limit"
)
_LET_GO = SQL(
    "UPDATE checkout SET lease_expires_at = :expires "
    "WHERE id = :id AND lease_token = :token AND lease_owner = :owner"
)
_RETRY = SQL(
    "UPDATE checkout SET next_attempt_at = NULL, deadline_at = :deadline_at, updated_at = :now "
    "WHERE id = :id AND status IN (:pending, :running)"
)
_CANCEL = SQL(
    "UPDATE checkout SET cancel_requested = :yes, next_attempt_at = NULL, updated_at = :now "
    "WHERE id = :id AND status IN (:pending, :running) AND past_pivot = :no"
)
_FIRST_RESPONSE = SQL(
    "UPDATE checkout SET response_status = :status, response_body = :body "
    "WHERE id = :id AND response_status IS NULL"
)
_LEASE_OF = SQL("SELECT lease_owner, lease_token FROM checkout WHERE id = :id")
_STATUS_COUNTS = SQL("SELECT status, count(*) FROM checkout GROUP BY status")


# --- rows into records ---------------------------------------------------------------------


checkout_of = row_reader(_CHECKOUT_TABLE, CheckoutRecord)
step_of = row_reader(_STEP_TABLE, StepRecord)


def _loaded(rows: list[Row]) -> Loaded | None:
    if not rows:
        return None
    width = len(CHECKOUT_COLUMNS)
    steps = [step_of(row, width) for row in rows if row[width] is not None]
    return checkout_of(rows[0], 0), steps


# --- one checkout --------------------------------------------------------------------------


async def insert(
    database: Database,
    checkout: CheckoutRecord,
    steps: Sequence[StepRecord],
    *,
    also: Callable[[Transaction], Awaitable[None]] | None = None,
) -> None:
    """Insert a checkout and its steps (as their records stand: pending, or started), and what
    ``also`` writes, in one transaction; ``IntegrityError`` if its key is taken."""
    values = {column: getattr(checkout, column) for column in CHECKOUT_COLUMNS}
    if database.postgres and also is None:
        for column in ("name", "position", *NEW_STEP_COLUMNS):
            # Prefixed: the checkout has a ``status`` of its own.
            values[f"step_{column}"] = [getattr(step, column) for step in steps]
        await database.write(_INSERT_WITH_STEPS, values)
        return
    step_rows = [
        {"id": checkout.id, "name": step.name, "position": step.position}
        | {column: getattr(step, column) for column in NEW_STEP_COLUMNS}
        for step in steps
    ]

    async def work(tx: Transaction) -> None:
        await tx.execute(_INSERT_CHECKOUT, values)
        await tx.execute_many(_INSERT_STEP, step_rows)
        if also is not None:
            await also(tx)

    # Under load, committed together with other checkouts' writes (group commit).
    await database.run(work, shared=True)


async def load(database: Database, checkout_id: uuid.UUID) -> Loaded | None:
    """A checkout and its steps."""
    return _loaded((await database.execute(_LOAD, {"id": checkout_id})).rows)


async def find_by_key(database: Database, key_hash: str) -> CheckoutRecord | None:
    """The checkout first created with this (hashed) Idempotency-Key."""
    row = (await database.execute(_BY_KEY, {"key_hash": key_hash})).first()
    return checkout_of(row, 0) if row is not None else None


async def save_first_response(
    database: Database, checkout_id: uuid.UUID, status: int, body: str
) -> None:
    """Keep the first answer to a keyed request; later answers never overwrite it."""
    await database.write(_FIRST_RESPONSE, {"status": status, "body": body, "id": checkout_id})


# --- leases and operator requests ----------------------------------------------------------


async def claim(
    database: Database, checkout_id: uuid.UUID, *, owner: str, expires: float, now: float
) -> int | None:
    """Lease an unfinished, due, unleased checkout to ``owner``; the new token, or None."""
    params = {"owner": owner, "expires": expires, "id": checkout_id, "now": now, **_UNFINISHED}
    rows = (await database.execute(_CLAIM, params)).rows
    return int(rows[0][0]) if rows else None


async def due(database: Database, *, now: float, limit: int) -> list[uuid.UUID]:
    """Unfinished checkouts nobody holds a live lease on and that are not parked."""
    rows = (await database.execute(_DUE_IDS, {"now": now, "limit": limit, **_UNFINISHED})).rows
    return [uuid_of(row[0]) for row in rows]


async def let_go(database: Database, checkout_id: uuid.UUID, *, owner: str, token: int) -> None:
    """End a lease at once (it expired at the epoch), if ``owner`` still holds it."""
    params = {"expires": 0.0, "id": checkout_id, "token": token, "owner": owner}
    await database.execute(_LET_GO, params)


async def make_due(
    database: Database, checkout_id: uuid.UUID, *, deadline_at: float, now: datetime
) -> bool:
    """Unpark an unfinished checkout with a new deadline; False if it is terminal."""
    params = {"deadline_at": deadline_at, "now": now, "id": checkout_id, **_UNFINISHED}
    return (await database.execute(_RETRY, params)).rowcount == 1


async def flag_cancel(database: Database, checkout_id: uuid.UUID, *, now: datetime) -> bool:
    """Flag an unfinished checkout not past its pivot for cancellation; False if not allowed."""
    params = {"yes": True, "no": False, "now": now, "id": checkout_id, **_UNFINISHED}
    return (await database.execute(_CANCEL, params)).rowcount == 1


# --- the fenced write ----------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _fenced_statements(
    checkout_keys: tuple[str, ...], step_keys: tuple[tuple[str, ...], ...], unless_cancelled: bool
) -> tuple[SQL, tuple[SQL, ...], SQL]:
    """The fenced ``UPDATE checkout``, each step's ``UPDATE step``, and the two as one statement.

    The fence matches only while this replica holds the lease (and, ``unless_cancelled``, while
    no cancellation is asked for). Parameters: ``c_<column>`` for the checkout's values,
    ``s<i>_<column>`` and ``s<i>_name`` for step ``i``'s.
    """
    for keys, table in ((checkout_keys, _CHECKOUT_TABLE), *((k, _STEP_TABLE) for k in step_keys)):
        unknown = [key for key in keys if key not in table.columns]
        if unknown:
            raise ValueError(f"{table.name} has no column {', '.join(unknown)}")
    fence = (
        f"UPDATE checkout SET {', '.join(f'{k} = :c_{k}' for k in checkout_keys)} "
        "WHERE id = :id AND lease_owner = :owner AND lease_token = :token"
        + (" AND cancel_requested = :not_cancelled" if unless_cancelled else "")
    )

    def step_update(index: int, keys: tuple[str, ...], checkout: str) -> str:
        return (
            f"UPDATE step SET {', '.join(f'{k} = :s{index}_{k}' for k in keys)} "
            f"WHERE checkout_id {checkout} AND name = :s{index}_name"
        )

    steps = tuple(SQL(step_update(i, keys, "= :id")) for i, keys in enumerate(step_keys))
    moves = "".join(
        f", moved{i} AS ({step_update(i, keys, 'IN (SELECT id FROM fenced)')})"
        for i, keys in enumerate(step_keys)
    )
    together = SQL(f"WITH fenced AS ({fence} RETURNING id){moves} SELECT count(*) FROM fenced")
    return SQL(fence), steps, together


async def fenced_write(
    database: Database,
    checkout_id: uuid.UUID,
    *,
    owner: str,
    token: int,
    checkout: dict[str, Any],
    steps: dict[str, dict[str, Any]],
    unless_cancelled: bool,
) -> tuple[bool, Refusal]:
    """In one transaction: the fenced checkout update, then (if it matched) the steps' updates.

    Returns (True, None) once committed; else (False, the lease's owner and token as they are
    now, or None without a row), having written nothing.
    """
    changed = [(name, values) for name, values in steps.items() if values]
    fence, step_updates, together = _fenced_statements(
        tuple(checkout), tuple(tuple(values) for _, values in changed), unless_cancelled
    )
    fence_params: dict[str, Any] = {"id": checkout_id, "owner": owner, "token": token}
    if unless_cancelled:
        fence_params["not_cancelled"] = False
    for key, value in checkout.items():
        fence_params[f"c_{key}"] = value
    step_params: list[dict[str, Any]] = []
    for index, (name, values) in enumerate(changed):
        one = {f"s{index}_{key}": value for key, value in values.items()}
        one |= {f"s{index}_name": name, "id": checkout_id}
        step_params.append(one)

    if database.postgres:
        params = fence_params.copy()
        for one in step_params:
            params |= one
        # Under load, committed together with other checkouts' writes (group commit).
        result = await database.write(together if changed else fence, params)
        written = (result.rows[0][0] if changed else result.rowcount) == 1
        if written:
            return True, None
        # Nothing was written; why (the lease as it is now) takes a second statement.
        lease = (await database.execute(_LEASE_OF, {"id": checkout_id})).rows
        return False, (lease[0][0], lease[0][1]) if lease else None

    async def work(tx: Transaction) -> tuple[bool, Refusal]:
        if await tx.execute(fence, fence_params) != 1:
            # Why it matched nothing, read under the same lock; nothing was written.
            lease = await tx.one(_LEASE_OF, {"id": checkout_id})
            return False, (lease[0], lease[1]) if lease else None
        for update, params in zip(step_updates, step_params, strict=True):
            await tx.execute(update, params)
        return True, None

    # A refused fence writes nothing, so it may share a transaction like any other (group commit).
    return await database.run(work, shared=True)


# --- lists ---------------------------------------------------------------------------------


async def page(
    database: Database,
    *,
    status: str | None,
    customer_id: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    coordination: str | None = None,
) -> tuple[list[Loaded], bool]:
    """Checkouts newest first, by keyset on (created_at, id), with their steps; and whether more.

    One snapshot for both statements: a page's steps are those of its checkouts as listed.
    """
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit + 1}
    if status:
        where.append("status = :status")
        params["status"] = status
    if customer_id:
        where.append("customer_id = :customer_id")
        params["customer_id"] = customer_id
    if coordination:
        where.append("coordination = :coordination")
        params["coordination"] = coordination
    if after is not None:
        where.append("(created_at < :after_at OR (created_at = :after_at AND id < :after_id))")
        params |= {"after_at": after[0], "after_id": after[1]}
    listing = SQL(
        f"SELECT {_CHECKOUT_LIST} FROM checkout"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY created_at DESC, id DESC LIMIT :limit"
    )

    async def work(tx: Transaction) -> tuple[list[Loaded], bool]:
        checkouts = [checkout_of(row, 0) for row in await tx.all(listing, params)]
        more = len(checkouts) > limit
        checkouts = checkouts[:limit]
        by_checkout: dict[uuid.UUID, list[StepRecord]] = {c.id: [] for c in checkouts}
        if checkouts:
            ids = {f"c{i}": checkout.id for i, checkout in enumerate(checkouts)}
            of_page = SQL(
                f"SELECT {_STEP_LIST} FROM step WHERE checkout_id IN "
                f"({', '.join(f':{name}' for name in ids)})"
            )
            for row in await tx.all(of_page, ids):
                step = step_of(row, 0)
                by_checkout[step.checkout_id].append(step)
        return [(c, by_checkout[c.id]) for c in checkouts], more

    return await database.run(work, read_only=True)


async def status_counts(database: Database) -> dict[str, int]:
    """How many checkouts have each status (every status present, zero included)."""
    counts = dict.fromkeys(CheckoutStatus, 0)
    for status, count in (await database.execute(_STATUS_COUNTS)).rows:
        counts[CheckoutStatus(status)] = int(count)
    return {str(status): count for status, count in counts.items()}
