"""How the suite stores uuids and UTC timestamps, for the ORM and for plain SQL alike.

The SQLModel models declare the schema (migrations compare against them) with SQLAlchemy's
``Uuid`` and the kit's ``UTCDateTime``; plain SQL writes and reads the same columns, so it stores
values exactly as those types do:

- ``Uuid``: 32 hex digits (CHAR(32)) on SQLite, ``uuid`` on PostgreSQL;
- ``UTCDateTime``: naive UTC text ``YYYY-MM-DD HH:MM:SS.ffffff`` on SQLite, ``timestamptz`` on
  PostgreSQL; a naive datetime is refused on both (``utc``), so nothing is stored in local time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import Boolean, DateTime, Dialect, Table, TypeDecorator, Uuid


def utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is refused (its zone is unknown)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC)


def utc_text(value: datetime) -> str:
    """A UTC timestamp as SQLite stores it: SQLAlchemy's naive text, microseconds always written."""
    return utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")


def _hex(value: UUID) -> str:
    return value.hex


# By exact type, looked up once per parameter (the journal's hot path binds ~20 per transaction).
# Booleans need nothing: pysqlite stores True/False as 1/0, as SQLAlchemy's Boolean does.
SQLITE_ENCODERS: dict[type, Callable[[Any], Any]] = {UUID: _hex, datetime: utc_text}


def sqlite_param(value: Any) -> Any:
    """A parameter as SQLite stores it (uuids as hex, timestamps as UTC text, the rest as is)."""
    encode = SQLITE_ENCODERS.get(type(value))
    return value if encode is None else encode(value)


def sqlite_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter of a statement as SQLite stores it."""
    encoders = SQLITE_ENCODERS
    return {
        key: value if (encode := encoders.get(type(value))) is None else encode(value)
        for key, value in params.items()
    }


def postgres_param(value: Any) -> Any:
    """A parameter as psycopg takes it (timestamps checked to be aware)."""
    if type(value) is datetime:
        utc(value)
    return value


def postgres_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter of a statement as psycopg takes it."""
    return {key: postgres_param(value) for key, value in params.items()}


def uuid_of(value: Any) -> UUID:
    """A ``Uuid`` column's value, as either backend returns it."""
    return value if isinstance(value, UUID) else UUID(hex=value)


def optional_uuid_of(value: Any) -> UUID | None:
    """A nullable ``Uuid`` column's value."""
    return None if value is None else uuid_of(value)


def timestamp_of(value: Any) -> datetime:
    """A non-null ``UTCDateTime`` column's value, as either backend returns it: aware, in UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"not a timestamp: {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def optional_timestamp_of(value: Any) -> datetime | None:
    """A nullable ``UTCDateTime`` column's value: aware, in UTC, or None."""
    return None if value is None else timestamp_of(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend, for the models.

    SQLite has no timezone type and hands back naive datetimes; this stores UTC and re-attaches
    UTC on the way out, so ``*_at`` fields are always aware.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        return None if value is None else timestamp_of(value)


T = TypeVar("T")


def row_reader(table: Table, make: Callable[..., T]) -> Callable[[tuple[Any, ...], int], T]:
    """``make(*columns)`` of a row holding ``table``'s columns in order, from ``offset`` on.

    Each uuid, timestamp or boolean column is read back as the models' types read it, on either
    backend; the other values are taken as the driver returns them.
    """
    decoders: list[tuple[int, Callable[[Any], Any]]] = []
    for index, column in enumerate(table.columns):
        if isinstance(column.type, UTCDateTime):
            decoders.append((index, timestamp_of))
        elif isinstance(column.type, Uuid):
            decoders.append((index, uuid_of))
        elif isinstance(column.type, Boolean):
            decoders.append((index, bool))
    width = len(table.columns)

    def read(row: tuple[Any, ...], offset: int = 0) -> T:
        values = list(row[offset : offset + width])
        for index, decode in decoders:
            value = values[index]
            if value is not None:
                values[index] = decode(value)
        return make(*values)

    return read
