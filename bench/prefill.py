"""Fill an orchestrator SQLite journal with many finished checkouts, by bulk SQL.

The rows are clones of one real checkout the orchestrator itself wrote (so every column has the
format the ORM uses), with fresh ids, spread customers and creation times, and a unique hashed
idempotency key each: 1 checkout + its 3 steps per clone. All are ``completed``, so none is due for
recovery; they only make the tables and indexes as big as a long-lived store's.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench import emit

BATCH = 20_000


def _columns(connection: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]


def prefill(path: Path, count: int, *, progress: Any = emit) -> float:
    """Add ``count`` completed checkouts (and their steps) to the journal at ``path``; seconds taken."""
    started = time.monotonic()
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("PRAGMA cache_size=-1000000")  # 1 GB of page cache while filling
    connection.row_factory = sqlite3.Row
    checkout_columns = _columns(connection, "checkout")
    step_columns = [c for c in _columns(connection, "step") if c != "id"]
    template = connection.execute(
        "SELECT * FROM checkout WHERE status = 'completed' ORDER BY created_at LIMIT 1"
    ).fetchone()
    if template is None:
        raise RuntimeError(f"{path} holds no completed checkout to clone: run one first")
    steps = connection.execute(
        "SELECT * FROM step WHERE checkout_id = ? ORDER BY position", (template["id"],)
    ).fetchall()
    base = dict(template)
    step_bases = [dict(step) for step in steps]
    id_is_hex = "-" not in str(base["id"])
    created = datetime.fromisoformat(str(base["created_at"]))
    insert_checkout = (
        f"INSERT INTO checkout ({', '.join(checkout_columns)}) "
        f"VALUES ({', '.join('?' for _ in checkout_columns)})"
    )
    insert_step = f"INSERT INTO step ({', '.join(step_columns)}) VALUES ({', '.join('?' for _ in step_columns)})"
    done = 0
    while done < count:
        size = min(BATCH, count - done)
        checkout_rows = []
        step_rows = []
        for i in range(done, done + size):
            new = uuid.uuid4()
            new_id = new.hex if id_is_hex else str(new)
            # Older than anything the bench writes next: spread over the past ~year.
            when = str(created - timedelta(seconds=(count - i) * 30))
            row = base | {
                "id": new_id,
                "customer_id": f"c-{i % 50_000}",
                "created_at": when,
                "updated_at": when,
                "idempotency_key_hash": hashlib.sha256(new.bytes).hexdigest(),
                "lease_owner": None,
                "lease_expires_at": None,
            }
            checkout_rows.append([row[c] for c in checkout_columns])
            for step in step_bases:
                step_row = step | {"checkout_id": new_id}
                step_rows.append([step_row[c] for c in step_columns])
        connection.execute("BEGIN")
        connection.executemany(insert_checkout, checkout_rows)
        connection.executemany(insert_step, step_rows)
        connection.execute("COMMIT")
        done += size
        if done % (BATCH * 10) == 0 or done == count:
            progress(
                f"  prefill: {done:,}/{count:,} checkouts ({time.monotonic() - started:.0f} s)"
            )
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    # No ANALYZE: the orchestrator never runs it, so its planner sees no statistics either.
    connection.close()
    return time.monotonic() - started
