"""The checkout journal: every write of the orchestrator, with leases, parking and cancellation.

Journal writes are fenced: each one first renews the checkout's lease with
``UPDATE checkout … WHERE id = ? AND lease_owner = ? AND lease_token = ?`` in the same
transaction, so a replica that lost its lease (paused, partitioned, presumed dead) has its late
writes refused instead of overwriting the new owner's progress. The read side is in ``views``.

The journal's transactions are plain SQL (``orchestrator.journaldb``): one thread hop (SQLite) or
one round trip (PostgreSQL) each, instead of an ORM session's dozen; they write the rows the ORM
wrote, and the read side and the schema stay on SQLAlchemy (``engine``, ``session()``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from orchestrator.journaldb import JournalDB, journal_db
from orchestrator.journaldb.base import (
    CANCEL,
    CHECKOUT_COLUMNS,
    CLAIM,
    DUE,
    FIND_BY_KEY,
    FIRST_RESPONSE,
    LET_GO,
    LOAD,
    RETRY,
    UNFINISHED,
    fence_sql,
    step_sql,
)
from orchestrator.models import Checkout, Step, utcnow
from orchestrator.schemas import TERMINAL_STATUSES

__all__ = [
    "UNFINISHED",
    "CancelRequestedError",
    "Journal",
    "LeaseLostError",
    "is_duplicate_key",
]


class LeaseLostError(Exception):
    """Another replica now owns the checkout; this one must stop driving it."""


class CancelRequestedError(Exception):
    """An operator asked to cancel the checkout before its pivot: compensate instead of going on."""


class Journal:
    """The orchestrator's store, bound to one replica's identity (``owner``)."""

    def __init__(self, engine: AsyncEngine, *, owner: str, lease_ttl_s: float) -> None:
        self.engine = engine
        self.owner = owner
        self.lease_ttl_s = lease_ttl_s
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        self._db: JournalDB | None = None

    def session(self) -> AsyncSession:
        """A new ORM session (the read side); callers use it as an async context manager."""
        return self._sessions()

    @property
    def db(self) -> JournalDB:
        """The journal's own database access, shared by every Journal on this engine."""
        db = self._db
        if db is None or db.closed:
            db = self._db = journal_db(self.engine)
        return db

    async def close(self) -> None:
        """Close the journal's connections (and its SQLite thread); the engine stays as it is."""
        if self._db is not None:
            await self._db.close()

    # --- creating and reading -------------------------------------------------------------

    async def create(
        self, checkout: Checkout, step_names: list[str]
    ) -> tuple[Checkout, list[Step]]:
        """Record a new checkout with its pending steps, leased to this replica (token 1).

        Returns them as recorded (what ``load`` would read back). Raises ``IntegrityError`` when
        its idempotency key is already taken.
        """
        checkout.lease_owner = self.owner
        checkout.lease_token = 1
        checkout.lease_expires_at = time.time() + self.lease_ttl_s
        values = tuple(getattr(checkout, column) for column in CHECKOUT_COLUMNS)
        steps = [(name, position) for position, name in enumerate(step_names)]
        await self.db.insert(values, steps)
        return checkout, self.db.pending_steps(checkout.id, steps)

    async def load(self, checkout_id: uuid.UUID) -> tuple[Checkout, list[Step]] | None:
        """A checkout and its steps."""
        db = self.db
        return await db.fetch(LOAD, (checkout_id,), db.loaded)

    async def find_by_key(self, key_hash: str) -> Checkout | None:
        """The checkout first created with this (hashed) Idempotency-Key."""
        db = self.db
        return await db.fetch(FIND_BY_KEY, (key_hash,), db.found)

    async def save_first_response(self, checkout_id: uuid.UUID, status: int, body: str) -> None:
        """Keep the first answer to a keyed request, for replays; later answers never overwrite it."""
        await self.db.write(FIRST_RESPONSE, (status, body, checkout_id))

    # --- leases ---------------------------------------------------------------------------

    async def claim(self, checkout_id: uuid.UUID) -> int | None:
        """Take an unfinished checkout that is due and unleased; returns the new fencing token."""
        now = time.time()
        token = await self.db.write_returning(
            CLAIM, (self.owner, now + self.lease_ttl_s, checkout_id, *UNFINISHED, now, now)
        )
        return None if token is None else int(token)

    async def due_unfinished(self, limit: int) -> list[uuid.UUID]:
        """Unfinished checkouts nobody holds a live lease on and that are not parked."""
        now = time.time()
        db = self.db
        return await db.fetch(DUE, (*UNFINISHED, now, now, limit), db.ids)

    async def let_go(self, checkout_id: uuid.UUID, token: int) -> None:
        """Give up a lease early (shutdown), so another replica or a restart resumes at once."""
        await self.db.write(LET_GO, (0.0, checkout_id, token, self.owner))

    # --- operator requests ----------------------------------------------------------------

    async def request_retry(self, checkout_id: uuid.UUID, deadline_s: float) -> bool:
        """Make an unfinished checkout due now with a fresh deadline; False if it is terminal."""
        deadline_at = time.time() + deadline_s
        return bool(await self.db.write(RETRY, (deadline_at, utcnow(), checkout_id, *UNFINISHED)))

    async def request_cancel(self, checkout_id: uuid.UUID) -> bool:
        """Flag an unfinished checkout not past its pivot for cancellation; False if not allowed.

        The condition is on the checkout row itself (``past_pivot``), which the runner sets in the
        same fenced UPDATE that starts the email step, so the two cannot both win.
        """
        params = (True, utcnow(), checkout_id, *UNFINISHED, False)
        return bool(await self.db.write(CANCEL, params))

    # --- fenced journal writes ------------------------------------------------------------

    async def record(
        self,
        checkout_id: uuid.UUID,
        token: int,
        *,
        checkout: dict[str, Any] | None = None,
        step: tuple[str, dict[str, Any]] | None = None,
        steps: Sequence[tuple[str, dict[str, Any]]] = (),
        unless_cancelled: bool = False,
        mirror: tuple[Checkout, Mapping[str, Step]] | None = None,
    ) -> None:
        """Commit transitions of a checkout and/or its steps in one transaction, renewing the lease.

        ``steps`` (then ``step``) are applied in order; values given twice for a step merge, the
        later winning. Raises ``LeaseLostError`` (writing nothing) when this replica no longer
        holds the lease, and ``CancelRequestedError`` when ``unless_cancelled`` and an operator
        asked to cancel. ``mirror``: in-memory rows of this checkout (and its steps by name) that
        get every committed value too, so they stay what ``load`` would read back.
        """
        now = time.time()
        values: dict[str, Any] = {
            "updated_at": utcnow(),
            "lease_expires_at": now + self.lease_ttl_s,
        }
        values |= checkout or {}
        if values.get("status") in TERMINAL_STATUSES:
            values |= {"lease_expires_at": None, "lease_owner": None, "next_attempt_at": None}
        fence_params = (*values.values(), checkout_id, self.owner, token)
        if unless_cancelled:
            fence_params += (False,)
        fence = (fence_sql(tuple(values), unless_cancelled), fence_params)
        by_step: dict[str, dict[str, Any]] = {}
        for name, step_values in (*steps, *((step,) if step is not None else ())):
            by_step[name] = by_step.get(name, {}) | step_values
        step_statements = [
            (step_sql(tuple(step_values)), (*step_values.values(), checkout_id, name))
            for name, step_values in by_step.items()
            if step_values
        ]
        written, lease = await self.db.fenced(fence, step_statements, checkout_id)
        if not written:
            self._refusal(checkout_id, token, unless_cancelled, lease)
        if mirror is not None:
            # Straight into the rows' ``__dict__``, as ``new_row`` and the ORM's loader fill
            # them: these rows are never flushed, so the ORM need not track the change.
            checkout_row, step_rows = mirror
            checkout_row.__dict__.update(values)
            for name, step_values in by_step.items():
                step_rows[name].__dict__.update(step_values)

    def _refusal(
        self,
        checkout_id: uuid.UUID,
        token: int,
        unless_cancelled: bool,
        lease: tuple[str | None, int | None] | None,
    ) -> None:
        """Raise why a fenced write matched no row, from the checkout's lease as it is now."""
        holds = lease is not None and lease[0] == self.owner and lease[1] == token
        if holds and unless_cancelled:
            raise CancelRequestedError(f"checkout {checkout_id}: cancellation requested")
        raise LeaseLostError(
            f"checkout {checkout_id}: lease {token} is no longer held by {self.owner}"
        )


def is_duplicate_key(exc: IntegrityError) -> bool:
    """Whether an insert failed on the idempotency key's unique index."""
    return "idempotency_key_hash" in str(exc.orig)
