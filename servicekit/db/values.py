"""How the suite stores uuids and UTC timestamps, for the ORM and for plain SQL alike.

The SQLModel models declare the schema (migrations compare against them) with SQLAlchemy's
``Uuid`` and the kit's ``UTCDateTime``; plain SQL writes and reads the same columns, so it stores
values exactly as those types do:

- ``Uuid``: 32 hex digits (CHAR(32)) on SQLite, ``uuid`` on PostgreSQL;
- ``UTCDateTime``: naive UTC text ``YYYY-MM-DD HH:MM:SS.ffffff`` on SQLite, ``timestamptz`` on
  PostgreSQL; a naive datetime is refused on both (``utc``), so nothing is stored in local time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import DateTime, Dialect, TypeDecorator


def utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is refused (its zone is unknown)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC)


def utc_text(value: datetime) -> str:
    """A UTC timestamp as SQLite stores it: SQLAlchemy's naive text, microseconds always written."""
    return utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")


def sqlite_param(value: Any) -> Any:
    """A parameter as SQLite stores it (uuids as hex, timestamps as UTC text, the rest as is)."""
    kind = type(value)
    if kind is UUID:
        return value.hex
    if kind is datetime:
        return utc_text(value)
    return value  # booleans: pysqlite stores True/False as 1/0, as SQLAlchemy's Boolean does


def postgres_param(value: Any) -> Any:
    """A parameter as psycopg takes it (timestamps checked to be aware)."""
    if type(value) is datetime:
        utc(value)
    return value


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
