"""Errors that mean the database cannot be reached right now, not that the request is wrong.

A restart, a failover or a cut link surfaces as the driver's ``OperationalError`` (psycopg's, or
SQLAlchemy's wrapping of it), a pool that found no connection in time, or SQLite's "database is
locked". A request that meets one is answered ``503`` with ``Retry-After``, so the caller retries
it: nothing of it was committed, since the transaction that failed is rolled back.
"""

from __future__ import annotations

import sqlite3

import psycopg
from sqlalchemy.exc import DBAPIError

# What an exception handler registers for; ``unavailable`` tells which of them are outages.
DATABASE_ERRORS: tuple[type[Exception], ...] = (DBAPIError, psycopg.Error)


def unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the database is unreachable or busy (and a retry may succeed)."""
    cause = error.orig if isinstance(error, DBAPIError) else error
    if isinstance(cause, psycopg.OperationalError):
        return True  # connection refused, closed, shut down, or no pooled connection in time
    return isinstance(cause, sqlite3.OperationalError) and "locked" in str(cause)
