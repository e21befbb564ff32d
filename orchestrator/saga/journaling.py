"""One checkout's journal writes while a runner drives it, with no transaction that is not needed.

Durability asks one thing of the runner: whatever a call depends on is committed before the
call is made. A transition that no call follows directly (a step succeeded and the next one is
about to start; the last step succeeded and the checkout completes; a step is skipped) need not
be a transaction of its own: ``later`` keeps it, and the next ``record`` commits it in the same
transaction as its own transition. Every call is preceded by a ``record`` (its step marked
``running``), so nothing a call depends on is ever left uncommitted; a crash between a call's
answer and the next write loses only that answer, and the step, still ``running`` in the
journal, is repeated with the same Idempotency-Key, as after a crash just before the write.

A checkout that succeeds at once is thus four transactions after its insert instead of eight:
running + first step running, each step's success + the next step running, the last success +
completed.

Each committed value is also set on the runner's in-memory rows (``mirror``): once a drive ends,
they are the checkout as the journal holds it, and the request that placed it answers from them
instead of reading it back.
"""

from __future__ import annotations

import uuid
from typing import Any

from orchestrator.models import Checkout, Step
from orchestrator.store import Journal

StepValues = tuple[str, dict[str, Any]]


class CheckoutJournal:
    """The fenced writes of one checkout under one lease (its ``token``)."""

    def __init__(self, journal: Journal, checkout_id: uuid.UUID, token: int) -> None:
        self.journal = journal
        self.checkout_id = checkout_id
        self.token = token
        self._checkout: dict[str, Any] = {}
        self._steps: list[StepValues] = []
        self._mirror: tuple[Checkout, dict[str, Step]] | None = None

    def mirror(self, checkout: Checkout, steps: dict[str, Step]) -> None:
        """Keep these rows of the checkout (steps by name) equal to what is committed."""
        self._mirror = (checkout, steps)

    def later(
        self, *, checkout: dict[str, Any] | None = None, step: StepValues | None = None
    ) -> None:
        """Keep a transition to commit with the next ``record`` (no call may come in between)."""
        self._checkout |= checkout or {}
        if step is not None:
            self._steps.append(step)

    async def record(
        self,
        *,
        checkout: dict[str, Any] | None = None,
        step: StepValues | None = None,
        unless_cancelled: bool = False,
    ) -> None:
        """Commit the kept transitions and this one, in one fenced transaction.

        When it raises, the kept transitions stay kept: a write refused because an operator asked
        to cancel is followed by the write recording the cancellation, which commits them.
        """
        await self.journal.record(
            self.checkout_id,
            self.token,
            checkout=(self._checkout | (checkout or {})) or None,
            steps=[*self._steps, *((step,) if step is not None else ())],
            unless_cancelled=unless_cancelled,
            mirror=self._mirror,
        )
        self._checkout, self._steps = {}, []

    async def park(self, *, until: float) -> None:
        """Stop driving until ``until`` and give up the lease (a transient outage)."""
        await self.record(
            checkout={"next_attempt_at": until, "lease_owner": None, "lease_expires_at": None}
        )
