"""The checkout journal: every write of the orchestrator, with leases, parking and cancellation.

Journal writes are fenced: each one first renews the checkout's lease with
``UPDATE checkout … WHERE id = ? AND lease_owner = ? AND lease_token = ?`` in the same
transaction, so a replica that lost its lease (paused, partitioned, presumed dead) has its late
writes refused instead of overwriting the new owner's progress. The read side is in ``views``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlmodel import col

from orchestrator.models import Checkout, Step, utcnow
from orchestrator.schemas import TERMINAL_STATUSES

UNFINISHED = ("pending", "running")


class LeaseLostError(Exception):
    """Another replica now owns the checkout; this one must stop driving it."""


class CancelRequestedError(Exception):
    """An operator asked to cancel the checkout before its pivot: compensate instead of going on."""


def _due(now: float) -> Any:
    """Unfinished, with no live lease, and not parked into the future."""
    return (
        col(Checkout.status).in_(UNFINISHED)
        & or_(col(Checkout.lease_expires_at).is_(None), col(Checkout.lease_expires_at) < now)
        & or_(col(Checkout.next_attempt_at).is_(None), col(Checkout.next_attempt_at) <= now)
    )


class Journal:
    """The orchestrator's store, bound to one replica's identity (``owner``)."""

    def __init__(self, engine: AsyncEngine, *, owner: str, lease_ttl_s: float) -> None:
        self.engine = engine
        self.owner = owner
        self.lease_ttl_s = lease_ttl_s
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

    def session(self) -> AsyncSession:
        """A new session; callers use it as an async context manager."""
        return self._sessions()

    # --- creating and reading -------------------------------------------------------------

    async def create(self, checkout: Checkout, step_names: list[str]) -> Checkout:
        """Record a new checkout with its pending steps, leased to this replica (token 1).

        Raises ``IntegrityError`` when its idempotency key is already taken.
        """
        checkout.lease_owner = self.owner
        checkout.lease_token = 1
        checkout.lease_expires_at = time.time() + self.lease_ttl_s
        async with self.session() as session:
            session.add(checkout)
            for position, name in enumerate(step_names):
                session.add(Step(checkout_id=checkout.id, name=name, position=position))
            await session.commit()
        return checkout

    async def load(self, checkout_id: uuid.UUID) -> tuple[Checkout, list[Step]] | None:
        """A checkout and its steps."""
        async with self.session() as session:
            checkout = await session.get(Checkout, checkout_id)
            if checkout is None:
                return None
            steps = await session.execute(select(Step).where(col(Step.checkout_id) == checkout_id))
            return checkout, list(steps.scalars().all())

    async def find_by_key(self, key_hash: str) -> Checkout | None:
        """The checkout first created with this (hashed) Idempotency-Key."""
        async with self.session() as session:
            result = await session.execute(
                select(Checkout).where(col(Checkout.idempotency_key_hash) == key_hash)
            )
            return result.scalars().first()

    async def save_first_response(self, checkout_id: uuid.UUID, status: int, body: str) -> None:
        """Keep the first answer to a keyed request, for replays; later answers never overwrite it."""
        async with self.session() as session:
            await session.execute(
                update(Checkout)
                .where(col(Checkout.id) == checkout_id)
                .where(col(Checkout.response_status).is_(None))
                .values(response_status=status, response_body=body)
            )
            await session.commit()

    # --- leases ---------------------------------------------------------------------------

    async def claim(self, checkout_id: uuid.UUID) -> int | None:
        """Take an unfinished checkout that is due and unleased; returns the new fencing token."""
        now = time.time()
        async with self.session() as session:
            result = await session.execute(
                update(Checkout)
                .where(col(Checkout.id) == checkout_id)
                .where(_due(now))
                .values(
                    lease_owner=self.owner,
                    lease_token=col(Checkout.lease_token) + 1,
                    lease_expires_at=now + self.lease_ttl_s,
                    next_attempt_at=None,
                )
                .returning(col(Checkout.lease_token))
            )
            token = result.scalar_one_or_none()
            await session.commit()
            return token

    async def due_unfinished(self, limit: int) -> list[uuid.UUID]:
        """Unfinished checkouts nobody holds a live lease on and that are not parked."""
        async with self.session() as session:
            result = await session.execute(
                select(col(Checkout.id))
                .where(_due(time.time()))
                .order_by(col(Checkout.next_attempt_at), col(Checkout.lease_expires_at))
                .limit(limit)
            )
            return list(result.scalars().all())

    async def let_go(self, checkout_id: uuid.UUID, token: int) -> None:
        """Give up a lease early (shutdown), so another replica or a restart resumes at once."""
        async with self.session() as session:
            await session.execute(
                update(Checkout)
                .where(col(Checkout.id) == checkout_id)
                .where(col(Checkout.lease_token) == token)
                .where(col(Checkout.lease_owner) == self.owner)
                .values(lease_expires_at=0.0)
            )
            await session.commit()

    # --- operator requests ----------------------------------------------------------------

    async def request_retry(self, checkout_id: uuid.UUID, deadline_s: float) -> bool:
        """Make an unfinished checkout due now with a fresh deadline; False if it is terminal."""
        async with self.session() as session:
            result = await session.execute(
                update(Checkout)
                .where(col(Checkout.id) == checkout_id)
                .where(col(Checkout.status).in_(UNFINISHED))
                .values(
                    next_attempt_at=None, deadline_at=time.time() + deadline_s, updated_at=utcnow()
                )
            )
            await session.commit()
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def request_cancel(self, checkout_id: uuid.UUID) -> bool:
        """Flag an unfinished checkout not past its pivot for cancellation; False if not allowed.

        The condition is on the checkout row itself (``past_pivot``), which the runner sets in the
        same fenced UPDATE that starts the email step, so the two cannot both win.
        """
        async with self.session() as session:
            result = await session.execute(
                update(Checkout)
                .where(col(Checkout.id) == checkout_id)
                .where(col(Checkout.status).in_(UNFINISHED))
                .where(col(Checkout.past_pivot).is_(False))
                .values(cancel_requested=True, next_attempt_at=None, updated_at=utcnow())
            )
            await session.commit()
            return bool(result.rowcount)  # type: ignore[attr-defined]

    # --- fenced journal writes ------------------------------------------------------------

    async def record(
        self,
        checkout_id: uuid.UUID,
        token: int,
        *,
        checkout: dict[str, Any] | None = None,
        step: tuple[str, dict[str, Any]] | None = None,
        unless_cancelled: bool = False,
    ) -> None:
        """Commit one transition of a checkout and/or one of its steps, renewing the lease.

        Raises ``LeaseLostError`` (writing nothing) when this replica no longer holds the lease,
        and ``CancelRequestedError`` when ``unless_cancelled`` and an operator asked to cancel.
        """
        now = time.time()
        values: dict[str, Any] = {
            "updated_at": utcnow(),
            "lease_expires_at": now + self.lease_ttl_s,
        }
        values |= checkout or {}
        if values.get("status") in TERMINAL_STATUSES:
            values |= {"lease_expires_at": None, "lease_owner": None, "next_attempt_at": None}
        async with self.session() as session:
            statement = (
                update(Checkout)
                .where(col(Checkout.id) == checkout_id)
                .where(col(Checkout.lease_owner) == self.owner)
                .where(col(Checkout.lease_token) == token)
            )
            if unless_cancelled:
                statement = statement.where(col(Checkout.cancel_requested).is_(False))
            fenced = await session.execute(statement.values(**values))
            if fenced.rowcount != 1:  # type: ignore[attr-defined]
                await session.rollback()
                await self._refusal(checkout_id, token, unless_cancelled)
            if step is not None:
                name, step_values = step
                await session.execute(
                    update(Step)
                    .where(col(Step.checkout_id) == checkout_id)
                    .where(col(Step.name) == name)
                    .values(**step_values)
                )
            await session.commit()

    async def _refusal(self, checkout_id: uuid.UUID, token: int, unless_cancelled: bool) -> None:
        """Raise why a fenced write matched no row."""
        loaded = await self.load(checkout_id)
        holds = (
            loaded is not None
            and loaded[0].lease_owner == self.owner
            and loaded[0].lease_token == token
        )
        if holds and unless_cancelled:
            raise CancelRequestedError(f"checkout {checkout_id}: cancellation requested")
        raise LeaseLostError(
            f"checkout {checkout_id}: lease {token} is no longer held by {self.owner}"
        )

    async def park(self, checkout_id: uuid.UUID, token: int, *, until: float) -> None:
        """Stop driving a checkout until ``until`` and give up its lease (a transient outage)."""
        await self.record(
            checkout_id,
            token,
            checkout={"next_attempt_at": until, "lease_owner": None, "lease_expires_at": None},
        )


def is_duplicate_key(exc: IntegrityError) -> bool:
    """Whether an insert failed on the idempotency key's unique index."""
    return "idempotency_key_hash" in str(exc.orig)
