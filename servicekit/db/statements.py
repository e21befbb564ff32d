"""Plain SQL written once for SQLite and PostgreSQL, and the transaction it runs in.

- ``SQL("... WHERE id = :id")`` is written with ``:name`` parameters; psycopg gets ``%(name)s``.
- Parameters are Python values; each transaction stores them as the models' column types do
  (``servicekit.db.values``): a ``UUID`` or an aware ``datetime`` can be passed as it is.
- Rows come back as the driver returns them: read uuids and timestamps with ``values.uuid_of``
  and ``values.timestamp_of``, which accept either backend's form.
- A transaction begins with its first statement and is committed or rolled back by the database
  that runs it (``Database.run``); ``rollback`` ends it early, and the next statement begins
  another. Driver errors are raised as SQLAlchemy's (``sqlalchemy.exc.IntegrityError`` …), the
  same classes on both backends.
- Every method is a coroutine. On SQLite none of them ever suspends (pysqlite is synchronous), so
  a transaction function that awaits only its transaction runs to its end in one step, on the
  event loop or in a thread (``servicekit.db.database``); on PostgreSQL each statement is a
  round trip on an asyncio connection.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import psycopg
from sqlalchemy.exc import DBAPIError

from servicekit.db.values import postgres_params, sqlite_params

Params = Mapping[str, Any]
Row = tuple[Any, ...]


class Result(NamedTuple):
    """What one statement gave: its rows (none for a write without RETURNING) and rowcount."""

    rows: list[Row]
    rowcount: int

    def first(self) -> Row | None:
        """The first row, or None when there is none."""
        return self.rows[0] if self.rows else None


# A quoted literal or identifier (left as it is), or a ``:name`` parameter (not a ``::`` cast).
_NAMED = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|(?<![:\w]):(\w+)""")
# How each kind of transaction begins (None: each statement is its own, as in autocommit).
WRITE, READ, STATEMENT = "write", "read", "statement"
_SQLITE_BEGIN = {WRITE: "BEGIN IMMEDIATE", READ: "BEGIN", STATEMENT: None}
# A read transaction sees one snapshot of the database, as SQLite's deferred BEGIN does.
_POSTGRES_BEGIN = {
    WRITE: "BEGIN",
    READ: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    STATEMENT: None,
}


class SQL:
    """One statement, with ``:name`` parameters, in the form each driver takes."""

    __slots__ = ("postgres", "sqlite")

    def __init__(self, text: str, *, postgres: str | None = None) -> None:
        """``postgres``: the statement PostgreSQL runs instead, where the two dialects differ."""
        for form in (text, postgres or ""):
            if "%" in form:
                raise ValueError("write % as a parameter: psycopg reads it as a placeholder")
        self.sqlite = text
        self.postgres = _NAMED.sub(
            lambda match: match[0] if match[1] is None else f"%({match[1]})s", postgres or text
        )

    def __repr__(self) -> str:
        return f"SQL({self.sqlite!r})"


def wrapped(error: Exception, statement: SQL | None, dbapi_error: type[Exception]) -> Exception:
    """A driver's error as SQLAlchemy raises it, so callers catch one class on both backends."""
    text = None if statement is None else statement.sqlite
    return DBAPIError.instance(text, None, error, dbapi_error)


class Transaction:
    """Statements of one transaction on one connection; see the module docstring for the rules."""

    postgres: bool = False

    async def execute(self, statement: SQL, params: Params | None = None) -> int:
        """Run ``statement``; how many rows it changed."""
        raise NotImplementedError

    async def one(self, statement: SQL, params: Params | None = None) -> Row | None:
        """The first row of ``statement``'s result, or None."""
        raise NotImplementedError

    async def all(self, statement: SQL, params: Params | None = None) -> list[Row]:
        """Every row of ``statement``'s result."""
        raise NotImplementedError

    async def execute_many(self, statement: SQL, rows: Sequence[Params]) -> None:
        """Run ``statement`` once for each of ``rows``."""
        raise NotImplementedError

    async def result(self, statement: SQL, params: Params | None = None) -> Result:
        """``statement``'s rows (if it returns any) and how many rows it changed."""
        raise NotImplementedError

    async def rollback(self) -> None:
        """End the transaction, undoing it; the next statement begins another."""
        raise NotImplementedError


class SqliteTransaction(Transaction):
    """A transaction on a pysqlite connection (``isolation_level = None``: begun by hand)."""

    __slots__ = ("_begin", "_open", "connection")

    def __init__(self, connection: sqlite3.Connection, kind: str = WRITE) -> None:
        self.connection = connection
        self._begin = _SQLITE_BEGIN[kind]
        self._open = False

    def _run(self, statement: SQL, params: Params | None) -> sqlite3.Cursor:
        connection = self.connection
        try:
            if not self._open and self._begin is not None:
                connection.execute(self._begin)
                self._open = True
            if not params:
                return connection.execute(statement.sqlite)
            return connection.execute(statement.sqlite, sqlite_params(params))
        except sqlite3.Error as exc:
            raise wrapped(exc, statement, sqlite3.Error) from exc

    async def execute(self, statement: SQL, params: Params | None = None) -> int:
        return self._run(statement, params).rowcount

    async def one(self, statement: SQL, params: Params | None = None) -> Row | None:
        row: Row | None = self._run(statement, params).fetchone()
        return row

    async def all(self, statement: SQL, params: Params | None = None) -> list[Row]:
        return self._run(statement, params).fetchall()

    async def execute_many(self, statement: SQL, rows: Sequence[Params]) -> None:
        for params in rows:
            self._run(statement, params)

    async def result(self, statement: SQL, params: Params | None = None) -> Result:
        cursor = self._run(statement, params)
        return Result(cursor.fetchall() if cursor.description else [], cursor.rowcount)

    async def rollback(self) -> None:
        self.end(commit=False)

    def end(self, *, commit: bool) -> None:
        """Commit or roll back what is open (the database's part, not the work's)."""
        if self._open:
            self._open = False
            try:
                self.connection.execute("COMMIT" if commit else "ROLLBACK")
            except sqlite3.Error as exc:
                if commit and self.connection.in_transaction:
                    self.connection.execute("ROLLBACK")
                raise wrapped(exc, None, sqlite3.Error) from exc


class PostgresTransaction(Transaction):
    """A transaction on a psycopg asyncio connection in autocommit mode (begun by hand)."""

    __slots__ = ("_begin", "_cursor", "_open", "connection")
    postgres = True

    def __init__(
        self,
        connection: psycopg.AsyncConnection[Any],
        kind: str = WRITE,
        cursor: psycopg.AsyncCursor[Any] | None = None,
    ) -> None:
        """``cursor``: the connection's own, reused from transaction to transaction; a new
        cursor per statement (``connection.execute``) would look up every parameter's dumper
        again."""
        self.connection = connection
        self._cursor = cursor or connection.cursor()
        self._begin = _POSTGRES_BEGIN[kind]
        self._open = False

    async def _run(self, statement: SQL, params: Params | None) -> psycopg.AsyncCursor[Any]:
        try:
            if not self._open and self._begin is not None:
                await self._cursor.execute(self._begin)
                self._open = True
            if not params:
                return await self._cursor.execute(statement.postgres)
            return await self._cursor.execute(statement.postgres, postgres_params(params))
        except psycopg.Error as exc:
            raise wrapped(exc, statement, psycopg.Error) from exc

    async def execute(self, statement: SQL, params: Params | None = None) -> int:
        return (await self._run(statement, params)).rowcount

    async def one(self, statement: SQL, params: Params | None = None) -> Row | None:
        row: Row | None = await (await self._run(statement, params)).fetchone()
        return row

    async def all(self, statement: SQL, params: Params | None = None) -> list[Row]:
        return await (await self._run(statement, params)).fetchall()

    async def execute_many(self, statement: SQL, rows: Sequence[Params]) -> None:
        for params in rows:
            await self._run(statement, params)

    async def result(self, statement: SQL, params: Params | None = None) -> Result:
        cursor = await self._run(statement, params)
        rows = await cursor.fetchall() if cursor.description else []
        return Result(rows, cursor.rowcount)

    async def rollback(self) -> None:
        await self.end(commit=False)

    async def end(self, *, commit: bool) -> None:
        """Commit or roll back what is open (the database's part, not the work's)."""
        if self._open:
            self._open = False
            try:
                await self._cursor.execute("COMMIT" if commit else "ROLLBACK")
            except psycopg.Error as exc:
                raise wrapped(exc, None, psycopg.Error) from exc
