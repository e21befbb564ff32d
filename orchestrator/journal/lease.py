"""One checkout under this replica's lease: its records, and the journal writes that change them.

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
completed; and one fewer when this replica placed it, since its insert starts the first step
(``Supervisor.place``): nothing is called between the two.

The records change only here, and only with what was committed: so once a drive ends, they are
the checkout as the journal holds it, and the request that placed it answers from them instead
of reading it back (``Supervisor.wait``).
"""

from __future__ import annotations

import asyncio
import uuid

from orchestrator.journal.journal import Journal
from orchestrator.journal.records import CheckoutRecord, Loaded, StepRecord, Transition


class LeasedCheckout:
    """A checkout this replica drives under the lease ``token``, and its records."""

    def __init__(self, journal: Journal, loaded: Loaded, token: int) -> None:
        self.journal = journal
        self.checkout: CheckoutRecord = loaded[0]
        self.steps: dict[str, StepRecord] = {step.name: step for step in loaded[1]}
        self.token = token
        self._kept = Transition()
        # The steps of a concurrent group write through one lease: one transaction at a time,
        # each on top of the last, so two steps finishing at once never race on the records.
        self._writing = asyncio.Lock()

    @property
    def checkout_id(self) -> uuid.UUID:
        return self.checkout.id

    def loaded(self) -> Loaded:
        """The checkout and its steps (in order), as committed so far."""
        return self.checkout, sorted(self.steps.values(), key=lambda step: step.position)

    def later(self, transition: Transition) -> None:
        """Keep a transition to commit with the next ``record`` (no call may come in between)."""
        self._kept = self._kept.then(transition)

    async def record(self, transition: Transition, *, unless_cancelled: bool = False) -> None:
        """Commit the kept transitions and this one, in one fenced transaction.

        When it raises, the kept transitions stay kept: a write refused because an operator asked
        to cancel is followed by the write recording the cancellation, which commits them.
        """
        async with self._writing:
            kept, self._kept = self._kept, Transition()
            try:
                written = await self.journal.commit(
                    self.checkout.id,
                    self.token,
                    kept.then(transition),
                    unless_cancelled=unless_cancelled,
                )
            except BaseException:
                # Kept again, before any kept meanwhile by a step of the same group.
                self._kept = kept.then(self._kept)
                raise
            written.apply(self.checkout, self.steps)

    async def park(self, *, until: float) -> None:
        """Stop driving until ``until`` and give up the lease (a transient outage)."""
        await self.record(
            Transition.of_checkout(next_attempt_at=until, lease_owner=None, lease_expires_at=None)
        )
