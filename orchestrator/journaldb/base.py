"""The journal's SQL and rows, shared by the SQLite and PostgreSQL journal databases.

Statements are written once with ``?`` placeholders (PostgreSQL's database rewrites them to
``%s``) and bind only parameters, never literals (with literals, SQLite's planner may pick a full
scan of ``checkout`` once ``ANALYZE`` statistics exist: see BENCHMARKS.md). Values are stored as
the ORM stores them, because the read side (``views``, ``ui``) still reads these tables through
it: each database encodes and decodes the few column types that need it (UUID, timestamps,
booleans) exactly as SQLAlchemy's types do for its dialect.
"""

from __future__ import annotations

import functools
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

from sqlalchemy import Boolean, Table, Uuid
from sqlalchemy.exc import CompileError
from sqlalchemy.orm import configure_mappers

from orchestrator.models import Checkout, Step, new_row
from servicekit.db import UTCDateTime

T = TypeVar("T")
Row = tuple[Any, ...]
Decode = Callable[[Any], Any]
# (the owner and token of the checkout's lease) when a fenced write was refused, or no row at all.
Refusal = tuple[str | None, int | None] | None

CHECKOUT_TABLE: Table = Checkout.__table__  # type: ignore[attr-defined]
STEP_TABLE: Table = Step.__table__  # type: ignore[attr-defined]
CHECKOUT_COLUMNS: tuple[str, ...] = tuple(CHECKOUT_TABLE.columns.keys())
STEP_COLUMNS: tuple[str, ...] = tuple(STEP_TABLE.columns.keys())
UNFINISHED = ("pending", "running")

_CHECKOUT_LIST = ", ".join(CHECKOUT_COLUMNS)
_DUE = (
    "status IN (?, ?) AND (lease_expires_at IS NULL OR lease_expires_at < ?) "
    "AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
)
# One statement for a checkout and its steps: one snapshot, one round trip. No ORDER BY, as the
# ORM's query had none (callers sort by position); SQLite walks the (checkout_id, name) index.
LOAD = (
    f"SELECT {', '.join(f'checkout.{c}' for c in CHECKOUT_COLUMNS)}, "
    f"{', '.join(f'step.{c}' for c in STEP_COLUMNS)} "
    "FROM checkout LEFT OUTER JOIN step ON step.checkout_id = checkout.id WHERE checkout.id = ?"
)
FIND_BY_KEY = f"SELECT {_CHECKOUT_LIST} FROM checkout WHERE idempotency_key_hash = ?"
INSERT_CHECKOUT = (
    f"INSERT INTO checkout ({_CHECKOUT_LIST}) VALUES ({', '.join('?' * len(CHECKOUT_COLUMNS))})"
)
INSERT_STEP = (
    "INSERT INTO step (checkout_id, name, position, status, attempts) VALUES (?, ?, ?, ?, ?)"
)
CLAIM = (
    "UPDATE checkout SET lease_owner = ?, lease_token = lease_token + 1, lease_expires_at = ?, "
    f"next_attempt_at = NULL WHERE id = ? AND {_DUE} RETURNING lease_token"
)
DUE = f"SELECT id FROM checkout WHERE {_DUE} ORDER BY next_attempt_at, lease_expires_at LIMIT ?"
LET_GO = (
    "UPDATE checkout SET lease_expires_at = ? WHERE id = ? AND lease_token = ? AND lease_owner = ?"
)
RETRY = (
    "UPDATE checkout SET next_attempt_at = NULL, deadline_at = ?, updated_at = ? "
    "WHERE id = ? AND status IN (?, ?)"
)
CANCEL = (
    "UPDATE checkout SET cancel_requested = ?, next_attempt_at = NULL, updated_at = ? "
    "WHERE id = ? AND status IN (?, ?) AND past_pivot = ?"
)
FIRST_RESPONSE = (
    "UPDATE checkout SET response_status = ?, response_body = ? "
    "WHERE id = ? AND response_status IS NULL"
)
LEASE_OF = "SELECT lease_owner, lease_token FROM checkout WHERE id = ?"


def _set_clause(table: Table, keys: Sequence[str]) -> str:
    unknown = [key for key in keys if key not in table.columns]
    if unknown:
        raise CompileError(f"Unconsumed column names: {', '.join(unknown)}")
    return ", ".join(f"{key} = ?" for key in keys)


@functools.lru_cache(maxsize=512)
def fence_sql(keys: tuple[str, ...], unless_cancelled: bool) -> str:
    """The fenced ``UPDATE checkout``: it matches only while this replica holds the lease."""
    return (
        f"UPDATE checkout SET {_set_clause(CHECKOUT_TABLE, keys)} "
        "WHERE id = ? AND lease_owner = ? AND lease_token = ?"
        + (" AND cancel_requested = ?" if unless_cancelled else "")
    )


@functools.lru_cache(maxsize=512)
def step_sql(keys: tuple[str, ...]) -> str:
    """``UPDATE step`` of one named step of a checkout."""
    return f"UPDATE step SET {_set_clause(STEP_TABLE, keys)} WHERE checkout_id = ? AND name = ?"


def _kinds(table: Table) -> list[str]:
    kinds = []
    for column in table.columns:
        if isinstance(column.type, UTCDateTime):
            kinds.append("datetime")
        elif isinstance(column.type, Uuid):
            kinds.append("uuid")
        elif isinstance(column.type, Boolean):
            kinds.append("bool")
        else:
            kinds.append("")
    return kinds


def _builder(
    model: type[T], columns: Sequence[str], decoders: Sequence[Decode | None]
) -> Callable[[Row, int], T]:
    """Make model instances from rows the way the ORM's loader does (``new_instance``, then the
    instance's ``__dict__``): ~2 µs, against ~60 µs for the model's validating ``__init__``."""
    # Loading through a session configures the mappers first; so must we (attribute access on a
    # new_instance of an unconfigured mapper fails).
    configure_mappers()
    manager = model._sa_class_manager  # type: ignore[attr-defined]
    columns_decoders = list(enumerate(zip(columns, decoders, strict=True)))
    plain = [(index, name) for index, (name, decode) in columns_decoders if decode is None]
    decoded = [
        (index, name, decode) for index, (name, decode) in columns_decoders if decode is not None
    ]

    def build(row: Row, offset: int = 0) -> T:
        instance: T = manager.new_instance()
        values = instance.__dict__
        for index, name in plain:
            values[name] = row[offset + index]
        for index, name, decode in decoded:
            value = row[offset + index]
            values[name] = None if value is None else decode(value)
        return instance

    return build


class JournalDB(ABC):
    """One database's journal transactions: each method is one transaction, committed on return."""

    #: how to read each column kind back (None: as the driver returns it)
    decoders: ClassVar[dict[str, Decode]] = {}

    def __init__(self) -> None:
        self.closed = False
        self.checkout_of = _builder(
            Checkout, CHECKOUT_COLUMNS, [self.decoders.get(k) for k in _kinds(CHECKOUT_TABLE)]
        )
        self.step_of = _builder(
            Step, STEP_COLUMNS, [self.decoders.get(k) for k in _kinds(STEP_TABLE)]
        )
        self._uuid_of = self.decoders.get("uuid") or (lambda value: value)

    @staticmethod
    def pending_steps(checkout_id: uuid.UUID, steps: Sequence[tuple[str, int]]) -> list[Step]:
        """The rows ``insert`` writes for ``steps`` (name, position), as ``loaded`` would read them."""
        return [
            new_row(
                Step,
                checkout_id=checkout_id,
                name=name,
                position=position,
                status="pending",
                attempts=0,
            )
            for name, position in steps
        ]

    def loaded(self, rows: list[Row]) -> tuple[Checkout, list[Step]] | None:
        """The checkout and steps of ``LOAD``'s rows."""
        if not rows:
            return None
        width = len(CHECKOUT_COLUMNS)
        steps = [self.step_of(row, width) for row in rows if row[width] is not None]
        return self.checkout_of(rows[0], 0), steps

    def ids(self, rows: list[Row]) -> list[uuid.UUID]:
        """The UUIDs of ``rows``' first column."""
        return [self._uuid_of(row[0]) for row in rows]

    def found(self, rows: list[Row]) -> Checkout | None:
        """The checkout of the first of ``rows`` (a SELECT of ``CHECKOUT_COLUMNS``)."""
        return self.checkout_of(rows[0], 0) if rows else None

    @abstractmethod
    async def insert(self, values: Row, steps: Sequence[tuple[str, int]]) -> None:
        """Insert a checkout (``values`` in ``CHECKOUT_COLUMNS`` order) and its pending steps."""

    @abstractmethod
    async def fetch(self, sql: str, params: Row, convert: Callable[[list[Row]], T]) -> T:
        """``convert`` of the rows of one SELECT (``loaded``, ``found``, ``ids``)."""

    @abstractmethod
    async def write(self, sql: str, params: Row) -> int:
        """Run one write statement as a transaction; how many rows it matched."""

    @abstractmethod
    async def write_returning(self, sql: str, params: Row) -> Any:
        """Run one ``UPDATE … RETURNING x`` as a transaction; ``x`` of its row, or None."""

    @abstractmethod
    async def fenced(
        self, fence: tuple[str, Row], steps: Sequence[tuple[str, Row]], checkout_id: uuid.UUID
    ) -> tuple[bool, Refusal]:
        """In one transaction: the fenced checkout UPDATE, then (if it matched) the step UPDATEs
        (each of a different step).

        Returns (True, None) once committed; else (False, the checkout's lease owner and token as
        they are now, or None without a row), having written nothing.
        """

    @abstractmethod
    async def close(self) -> None:
        """Close the connections; a closed database is replaced by a new one on next use."""

    @abstractmethod
    def close_soon(self) -> None:
        """Start closing without waiting (synchronous code, no event loop to wait on)."""
