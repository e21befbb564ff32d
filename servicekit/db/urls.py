"""``DATABASE_URL``: which backend it names, and the driver the suite uses for it.

A URL may name a driver or not (``sqlite:///x.db``, ``sqlite+aiosqlite:///x.db``,
``postgresql://u@h/db``, ``postgresql+asyncpg://…``): SQLite is reached through pysqlite (or
aiosqlite for SQLAlchemy's async engine), PostgreSQL through psycopg 3.
"""

from __future__ import annotations

from pathlib import Path

from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import make_url


class UnsupportedDatabaseError(ValueError):
    """A DATABASE_URL naming a database the suite does not support."""


def normalize_url(url: str, *, asynchronous: bool) -> str:
    """Return ``url`` with the SQLAlchemy driver this suite uses for its backend."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        driver = "aiosqlite" if asynchronous else "pysqlite"
    elif backend in {"postgresql", "postgres"}:
        backend, driver = "postgresql", "psycopg"
    else:
        raise UnsupportedDatabaseError(
            f"unsupported DATABASE_URL backend {backend!r}: use sqlite or postgresql"
        )
    return parsed.set(drivername=f"{backend}+{driver}").render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    """Whether ``url`` names a SQLite database."""
    return make_url(url).get_backend_name() == "sqlite"


def postgres_conninfo(url: str) -> str:
    """``url`` as psycopg takes it: ``key=value`` pairs, the query's parameters among them.

    Not the URL rendered again: SQLAlchemy writes a space in a query value as ``+``, which libpq
    does not decode (``?options=-c%20statement_timeout%3D5000`` would reach the server as
    ``-c+statement_timeout=5000``).
    """
    parsed = make_url(normalize_url(url, asynchronous=False))
    given: dict[str, str | int | None] = {
        "host": parsed.host,
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": parsed.database,
    }
    for key, value in parsed.query.items():
        given[key] = value if isinstance(value, str) else value[-1]
    return make_conninfo("", **{key: value for key, value in given.items() if value is not None})


def sqlite_file(url: str) -> str:
    """The file of a SQLite ``url``, its folder created; only plain paths (see below).

    An in-memory database would be another one for each connection, and URI filenames are not
    needed by the suite, so both are refused.
    """
    parsed = make_url(url)
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:") or parsed.query:
        raise UnsupportedDatabaseError(f"a plain SQLite file path is needed here, not {url!r}")
    prepare_sqlite_folder(url)
    return database


def prepare_sqlite_folder(url: str) -> None:
    """Create the folder of a SQLite ``url``'s file, so that opening it can create the file."""
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
