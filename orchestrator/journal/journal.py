"""The checkout journal: every write of the orchestrator, with leases, parking and cancellation.

Journal writes are fenced: each one renews the checkout's lease with ``UPDATE checkout … WHERE
id = :id AND lease_owner = :owner AND lease_token = :token`` in the same transaction, so a
replica that lost its lease (paused, partitioned, presumed dead) has its late writes refused
instead of overwriting the new owner's progress. Its statements are in ``checkouts``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import IntegrityError

from orchestrator.journal import checkouts
from orchestrator.journal.records import (
    CheckoutRecord,
    Loaded,
    Transition,
    pending_step,
    utcnow,
)
from orchestrator.statuses import TERMINAL_STATUSES
from servicekit.db.database import Database
from servicekit.db.statements import Transaction


class LeaseLostError(Exception):
    """Another replica now owns the checkout; this one must stop driving it."""


class CancelRequestedError(Exception):
    """An operator asked to cancel the checkout before its pivot: compensate instead of going on."""


class Journal:
    """The orchestrator's store, bound to one replica's identity (``owner``)."""

    def __init__(self, database: Database, *, owner: str, lease_ttl_s: float) -> None:
        self.database = database
        self.owner = owner
        self.lease_ttl_s = lease_ttl_s

    # --- creating and reading -------------------------------------------------------------

    async def create(
        self,
        checkout: CheckoutRecord,
        step_names: list[str],
        *,
        start: Callable[[Loaded], Transition] | None = None,
        also: Callable[[Transaction], Awaitable[None]] | None = None,
    ) -> Loaded:
        """Record a new checkout with its pending steps, leased to this replica (token 1).

        ``start``: the first transition of its saga, given the records about to be inserted;
        it is inserted with them, one transaction instead of two (the runner's ``first_start``).
        ``also`` writes in the same transaction (a choreographed checkout's placed event, to
        the outbox).

        Returns them as recorded (what ``load`` would read back, but for the steps' ids).
        Raises ``IntegrityError`` when its idempotency key is already taken.
        """
        checkout.lease_owner = self.owner
        checkout.lease_token = 1
        checkout.lease_expires_at = time.time() + self.lease_ttl_s
        steps = [
            pending_step(checkout.id, name, position) for position, name in enumerate(step_names)
        ]
        if start is not None:
            started = start((checkout, steps))
            for values in started.steps.values():
                if not values.keys() <= set(checkouts.NEW_STEP_COLUMNS):
                    raise ValueError(
                        f"a new step's insert writes only {checkouts.NEW_STEP_COLUMNS}"
                    )
            started.apply(checkout, {step.name: step for step in steps})
        await checkouts.insert(self.database, checkout, steps, also=also)
        return checkout, steps

    async def load(self, checkout_id: uuid.UUID) -> Loaded | None:
        """A checkout and its steps."""
        return await checkouts.load(self.database, checkout_id)

    async def find_by_key(self, key_hash: str) -> CheckoutRecord | None:
        """The checkout first created with this (hashed) Idempotency-Key."""
        return await checkouts.find_by_key(self.database, key_hash)

    async def save_first_response(self, checkout_id: uuid.UUID, status: int, body: str) -> None:
        """Keep the first answer to a keyed request, for replays; later answers never overwrite it."""
        await checkouts.save_first_response(self.database, checkout_id, status, body)

    # --- leases ---------------------------------------------------------------------------

    async def claim(self, checkout_id: uuid.UUID) -> int | None:
        """Take an unfinished checkout that is due and unleased; returns the new fencing token."""
        now = time.time()
        return await checkouts.claim(
            self.database, checkout_id, owner=self.owner, expires=now + self.lease_ttl_s, now=now
        )

    async def due_unfinished(self, limit: int) -> list[uuid.UUID]:
        """Unfinished checkouts nobody holds a live lease on and that are not parked."""
        return await checkouts.due(self.database, now=time.time(), limit=limit)

    async def let_go(self, checkout_id: uuid.UUID, token: int) -> None:
        """Give up a lease early (shutdown), so another replica or a restart resumes at once."""
        await checkouts.let_go(self.database, checkout_id, owner=self.owner, token=token)

    # --- operator requests ----------------------------------------------------------------

    async def request_retry(self, checkout_id: uuid.UUID, deadline_s: float) -> bool:
        """Make an unfinished checkout due now with a fresh deadline; False if it is terminal."""
        return await checkouts.make_due(
            self.database, checkout_id, deadline_at=time.time() + deadline_s, now=utcnow()
        )

    async def request_cancel(self, checkout_id: uuid.UUID) -> bool:
        """Flag an unfinished checkout not past its pivot for cancellation; False if not allowed.

        The condition is on the checkout row itself (``past_pivot``), which the runner sets in the
        same fenced UPDATE that starts the email step, so the two cannot both win.
        """
        return await checkouts.flag_cancel(self.database, checkout_id, now=utcnow())

    # --- fenced journal writes ------------------------------------------------------------

    async def commit(
        self,
        checkout_id: uuid.UUID,
        token: int,
        transition: Transition,
        *,
        unless_cancelled: bool = False,
    ) -> Transition:
        """Commit ``transition`` in one transaction, renewing the lease; returns what was written.

        What was written is ``transition`` with the bookkeeping the journal adds (``updated_at``,
        the lease's new expiry, and its end when the checkout ends). Raises ``LeaseLostError``
        (writing nothing) when this replica no longer holds the lease, and
        ``CancelRequestedError`` when ``unless_cancelled`` and an operator asked to cancel.
        """
        values = {"updated_at": utcnow(), "lease_expires_at": time.time() + self.lease_ttl_s}
        values |= transition.checkout
        if values.get("status") in TERMINAL_STATUSES:
            values |= {"lease_expires_at": None, "lease_owner": None, "next_attempt_at": None}
        written, lease = await checkouts.fenced_write(
            self.database,
            checkout_id,
            owner=self.owner,
            token=token,
            checkout=values,
            steps=transition.steps,
            unless_cancelled=unless_cancelled,
        )
        if not written:
            holds = lease is not None and lease[0] == self.owner and lease[1] == token
            if holds and unless_cancelled:
                raise CancelRequestedError(f"checkout {checkout_id}: cancellation requested")
            raise LeaseLostError(
                f"checkout {checkout_id}: lease {token} is no longer held by {self.owner}"
            )
        return Transition(values, transition.steps)


def is_duplicate_key(exc: IntegrityError) -> bool:
    """Whether an insert failed on the idempotency key's unique index."""
    return "idempotency_key_hash" in str(exc.orig)
