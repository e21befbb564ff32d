"""Every query of the orchestrator: the checkout journal, leases, and the read side of the API.

Journal writes are fenced: each one first renews the checkout's lease with
``UPDATE checkout … WHERE id = ? AND lease_owner = ? AND lease_token = ?`` in the same
transaction, so a replica that lost its lease (paused, partitioned, presumed dead) has its late
writes refused instead of overwriting the new owner's progress.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlmodel import col

from orchestrator.errors import InvalidCursorError
from orchestrator.models import Checkout, Step, utcnow
from orchestrator.schemas import TERMINAL_STATUSES, CheckoutPublic, StepPublic

UNFINISHED = ("pending", "running")


class LeaseLostError(Exception):
    """Another replica now owns the checkout; this one must stop driving it."""


def _loads(raw: str | None) -> Any:
    return json.loads(raw) if raw else None


def to_public(checkout: Checkout, steps: list[Step]) -> CheckoutPublic:
    """The API view of a checkout and its steps."""
    return CheckoutPublic.model_validate(
        {
            "id": checkout.id,
            "status": checkout.status,
            "customer": json.loads(checkout.customer),
            "items": json.loads(checkout.items),
            "currency": checkout.currency,
            "total": f"{checkout.total_cents // 100}.{checkout.total_cents % 100:02d}",
            "points": checkout.points,
            "steps": [
                StepPublic(
                    name=s.name,
                    status=s.status,
                    attempts=s.attempts,
                    started_at=s.started_at,
                    finished_at=s.finished_at,
                    http_status=s.http_status,
                    result=_loads(s.result),
                    error=_loads(s.error),
                    compensated_at=s.compensated_at,
                )
                for s in sorted(steps, key=lambda s: s.position)
            ],
            "error": _loads(checkout.error),
            "created_at": checkout.created_at,
            "updated_at": checkout.updated_at,
        }
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

    async def read_public(self, checkout_id: uuid.UUID) -> CheckoutPublic | None:
        """The API view of one checkout."""
        loaded = await self.load(checkout_id)
        return to_public(*loaded) if loaded else None

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

    async def page(
        self, *, status: str | None, customer_id: str | None, limit: int, cursor: str | None
    ) -> tuple[list[CheckoutPublic], str | None]:
        """Checkouts newest first, by keyset on (created_at, id), so no row is skipped or repeated."""
        query = select(Checkout)
        if status:
            query = query.where(col(Checkout.status) == status)
        if customer_id:
            query = query.where(col(Checkout.customer_id) == customer_id)
        if cursor:
            after_at, after_id = decode_cursor(cursor)
            query = query.where(
                or_(
                    col(Checkout.created_at) < after_at,
                    and_(col(Checkout.created_at) == after_at, col(Checkout.id) < after_id),
                )
            )
        query = query.order_by(col(Checkout.created_at).desc(), col(Checkout.id).desc()).limit(
            limit + 1
        )
        async with self.session() as session:
            checkouts = list((await session.execute(query)).scalars().all())
            more = len(checkouts) > limit
            checkouts = checkouts[:limit]
            by_checkout: dict[uuid.UUID, list[Step]] = {c.id: [] for c in checkouts}
            if checkouts:
                steps = await session.execute(
                    select(Step).where(col(Step.checkout_id).in_(by_checkout))
                )
                for step in steps.scalars():
                    by_checkout[step.checkout_id].append(step)
        items = [to_public(c, by_checkout[c.id]) for c in checkouts]
        next_cursor = encode_cursor(checkouts[-1].created_at, checkouts[-1].id) if more else None
        return items, next_cursor

    # --- leases ---------------------------------------------------------------------------

    async def claim(self, checkout_id: uuid.UUID) -> int | None:
        """Take an unfinished checkout whose lease has expired; returns the new fencing token."""
        now = time.time()
        async with self.session() as session:
            result = await session.execute(
                update(Checkout)
                .where(col(Checkout.id) == checkout_id)
                .where(col(Checkout.status).in_(UNFINISHED))
                .where(
                    or_(
                        col(Checkout.lease_expires_at).is_(None),
                        col(Checkout.lease_expires_at) < now,
                    )
                )
                .values(
                    lease_owner=self.owner,
                    lease_token=col(Checkout.lease_token) + 1,
                    lease_expires_at=now + self.lease_ttl_s,
                )
                .returning(col(Checkout.lease_token))
            )
            token = result.scalar_one_or_none()
            await session.commit()
            return token

    async def expired_unfinished(self, limit: int) -> list[uuid.UUID]:
        """Unfinished checkouts nobody holds a live lease on, oldest lease first."""
        now = time.time()
        async with self.session() as session:
            result = await session.execute(
                select(col(Checkout.id))
                .where(col(Checkout.status).in_(UNFINISHED))
                .where(
                    or_(
                        col(Checkout.lease_expires_at).is_(None),
                        col(Checkout.lease_expires_at) < now,
                    )
                )
                .order_by(col(Checkout.lease_expires_at))
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

    # --- fenced journal writes ------------------------------------------------------------

    async def record(
        self,
        checkout_id: uuid.UUID,
        token: int,
        *,
        checkout: dict[str, Any] | None = None,
        step: tuple[str, dict[str, Any]] | None = None,
    ) -> None:
        """Commit one transition of a checkout and/or one of its steps, renewing the lease.

        Raises ``LeaseLostError`` (and writes nothing) when this replica no longer holds the lease.
        """
        now = time.time()
        values: dict[str, Any] = {
            "updated_at": utcnow(),
            "lease_expires_at": now + self.lease_ttl_s,
        }
        values |= checkout or {}
        if values.get("status") in TERMINAL_STATUSES:
            values["lease_expires_at"] = None
            values["lease_owner"] = None
        async with self.session() as session:
            fenced = await session.execute(
                update(Checkout)
                .where(col(Checkout.id) == checkout_id)
                .where(col(Checkout.lease_owner) == self.owner)
                .where(col(Checkout.lease_token) == token)
                .values(**values)
            )
            if fenced.rowcount != 1:  # type: ignore[attr-defined]
                await session.rollback()
                raise LeaseLostError(
                    f"checkout {checkout_id}: lease {token} is no longer held by {self.owner}"
                )
            if step is not None:
                name, step_values = step
                await session.execute(
                    update(Step)
                    .where(col(Step.checkout_id) == checkout_id)
                    .where(col(Step.name) == name)
                    .values(**step_values)
                )
            await session.commit()


def encode_cursor(created_at: datetime, checkout_id: uuid.UUID) -> str:
    """An opaque cursor naming the last row of a page."""
    raw = json.dumps([created_at.isoformat(), str(checkout_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) a cursor names; ``InvalidCursorError`` if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, checkout_id = json.loads(raw)
        parsed = datetime.fromisoformat(created_at)
        if parsed.tzinfo is None:
            raise ValueError("naive")
        return parsed, uuid.UUID(checkout_id)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise InvalidCursorError() from None


def is_duplicate_key(exc: IntegrityError) -> bool:
    """Whether an insert failed on the idempotency key's unique index."""
    return "idempotency_key_hash" in str(exc.orig) or "ix_checkout_idempotency_key_hash" in str(
        exc.orig
    )
