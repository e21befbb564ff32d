"""SQLite connections as the suite uses them: WAL, transactions begun by hand, checkpoints.

Every connection is in WAL mode with ``synchronous=NORMAL`` (a commit is an append to the log,
no fsync), foreign keys on, and a busy timeout, so that a writer that finds the database locked
queues instead of failing. Write transactions begin ``IMMEDIATE``: pysqlite's own transactions
begin lazily and DEFERRED, so two writers could both read, then deadlock upgrading to a write
lock; taking the lock at BEGIN serialises writers instead, across processes too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from servicekit.db.urls import sqlite_file

BUSY_TIMEOUT_S = 30
# How long a checkpoint waits for readers (and the write lock) before it settles for less.
CHECKPOINT_WAIT_S = 0.25
_SQLITE_BUSY = 5  # the primary result code of SQLITE_BUSY and of its extended codes
# How a transaction on the event loop waits for the write lock another connection holds: tried
# again after these sleeps (the loop serves others meanwhile), for up to LOOP_BUSY_WAIT_S, then
# handed to a worker thread whose connection waits with the busy timeout. Finer than SQLite's own
# busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25… ms between tries: a writer's transaction
# here lasts well under a millisecond, so with two processes on one file most of a writer's
# time went to sleeping past the moment the lock was free.
FIRST_BUSY_DELAY_S = 0.0002
MAX_BUSY_DELAY_S = 0.002
LOOP_BUSY_WAIT_S = 1.0


def is_busy(error: BaseException) -> bool:
    """Whether a pysqlite error is SQLITE_BUSY (another connection holds the lock it needed)."""
    return getattr(error, "sqlite_errorcode", 0) & 0xFF == _SQLITE_BUSY


def busy_delays() -> Iterator[float]:
    """The sleeps between a busy loop transaction's tries, LOOP_BUSY_WAIT_S in all."""
    delay, waited = FIRST_BUSY_DELAY_S, 0.0
    while waited < LOOP_BUSY_WAIT_S:
        yield delay
        waited += delay
        delay = min(delay * 2, MAX_BUSY_DELAY_S)


def configure(connection: Any, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
    """WAL, NORMAL sync, foreign keys and a busy timeout; transactions left to the caller.

    ``connection`` is a pysqlite connection (or SQLAlchemy's aiosqlite adapter of one). With
    ``isolation_level = None`` pysqlite never opens a transaction by itself: the caller writes
    ``BEGIN IMMEDIATE`` … ``COMMIT``.
    """
    connection.isolation_level = None
    cursor = connection.cursor()
    # First, so that the pragmas below wait for a lock no longer than the caller wants.
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def connect(
    url: str, *, busy_timeout_s: float = BUSY_TIMEOUT_S, check_same_thread: bool = True
) -> sqlite3.Connection:
    """A pysqlite connection to ``url``'s file, set up as above.

    The connection belongs to the thread that opens it, unless ``check_same_thread`` is False.
    ``busy_timeout_s``: how long a statement waits for a lock (0: it fails with BUSY at once,
    opening included).
    """
    connection = sqlite3.connect(
        sqlite_file(url),
        timeout=busy_timeout_s,
        isolation_level=None,
        check_same_thread=check_same_thread,
    )
    configure(connection, busy_timeout_s=busy_timeout_s)
    return connection


def restart_checkpoint(connection: Any) -> None:
    """Copy a WAL database's log into its file and have the next commit start the log over.

    For connections that do not checkpoint by themselves (``wal_autocheckpoint = 0`` on the
    connection the event loop uses: copying pages and syncing the file would stall the loop).
    RESTART, not PASSIVE: a passive checkpoint runs alongside other connections' commits and,
    under a steady load, never finds the whole log copied, which is what lets a writer start it
    over, so the log grew without end (8 concurrent writers: 10.5 MB after 1,200 small
    transactions). RESTART holds the write lock while it copies (writers meanwhile find the
    database busy) and waits for readers to leave the log, but only ``CHECKPOINT_WAIT_S``: past
    that it does what a passive one would, and the next checkpoint tries again. ``connection``:
    a pysqlite connection, or a pool's proxy of one; its busy timeout is restored after.
    """
    cursor = connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(CHECKPOINT_WAIT_S * 1000)}")
        try:
            cursor.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        finally:
            cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    finally:
        cursor.close()
