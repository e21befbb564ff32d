"""Owns the running sagas of one replica: starts them, lets requests wait on them, resumes the
unfinished checkouts of dead replicas, and shuts down gracefully.

Sagas run in tasks of their own that the app's lifespan owns (not in a request), so a client that
hangs up does not cancel its checkout, and under ``ASGITransport`` a 202 is answered before the
saga ends. They are plain asyncio tasks rather than anyio task-group children: starting one costs
~5 µs instead of ~20, and a request waits on the task itself instead of an event and a cancel
scope, on every checkout; ``running`` cancels and awaits the ones left at shutdown, as a task
group would.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import TaskGroup

from orchestrator.journal.journal import Journal, LeaseLostError
from orchestrator.journal.records import CheckoutRecord, Loaded
from orchestrator.saga.runner import SagaRunner
from servicekit.logs import get_logger

log = get_logger("orchestrator.supervisor")
RECOVERY_BATCH = 50


class Supervisor:
    """Runs sagas for one replica."""

    def __init__(
        self, journal: Journal, runner: SagaRunner, *, recovery_interval_s: float, grace_s: float
    ) -> None:
        self.journal = journal
        self.runner = runner
        self.recovery_interval_s = recovery_interval_s
        self.grace_s = grace_s
        self._group: TaskGroup | None = None
        self._in_flight: dict[uuid.UUID, int] = {}
        # Each running saga's task; its result is the checkout as the journal holds it once the
        # drive ended without an error, else None.
        self._sagas: dict[uuid.UUID, asyncio.Task[Loaded | None]] = {}
        self.accepting = False

    @property
    def in_flight(self) -> int:
        """How many checkouts this replica is driving now."""
        return len(self._in_flight)

    async def place(self, checkout: CheckoutRecord, step_names: list[str]) -> Loaded:
        """Record a new checkout, its first steps started in the same transaction, and drive it
        here; returns it as recorded. ``IntegrityError`` when its idempotency key is taken."""
        recorded = await self.journal.create(checkout, step_names, start=self.runner.first_start)
        self.start(checkout.id, checkout.lease_token, recorded, first_started=True)
        return recorded

    def start(
        self,
        checkout_id: uuid.UUID,
        token: int,
        loaded: Loaded | None = None,
        *,
        first_started: bool = False,
    ) -> None:
        """Drive a checkout this replica holds the lease of, in the background.

        ``loaded``: the checkout and its steps as just recorded, when this replica created it;
        ``first_started``: with its first group started (``place``).
        """
        if self._group is None or checkout_id in self._in_flight:
            return
        self._in_flight[checkout_id] = token
        saga = asyncio.get_running_loop().create_task(
            self._drive(checkout_id, token, loaded, first_started)
        )
        self._sagas[checkout_id] = saga
        saga.add_done_callback(functools.partial(self._forget, checkout_id))

    async def wait(self, checkout_id: uuid.UUID, timeout_s: float) -> Loaded | None:
        """Wait until the checkout's saga ends here, or ``timeout_s`` passes.

        This is where a request that placed a checkout gets its answer without reading it back:
        a drive that ended within the time without an error returns the checkout and its steps
        as the journal holds them (``LeasedCheckout`` applies every committed transition to
        them, and nothing else). None otherwise: then the caller reads the journal.
        """
        saga = self._sagas.get(checkout_id)
        if saga is None:
            return None
        # ``wait``, not ``wait_for``: it never cancels the saga, even when the time runs out.
        await asyncio.wait((saga,), timeout=timeout_s)
        return saga.result() if saga.done() and not saga.cancelled() else None

    async def _drive(
        self, checkout_id: uuid.UUID, token: int, loaded: Loaded | None, first_started: bool
    ) -> Loaded | None:
        try:
            # Sagas in flight at once: their journal writes may share transactions (SQLite).
            with self.journal.database.writer():
                return await self.runner.drive(
                    checkout_id, token, loaded, first_started=first_started
                )
        except LeaseLostError as exc:
            log.warning(
                "lease lost", checkout_id=str(checkout_id), outcome="lease_lost", detail=str(exc)
            )
        except Exception:
            # Left unfinished: its lease expires and the recovery loop (here or elsewhere) retries it.
            log.exception("saga interrupted", checkout_id=str(checkout_id), outcome="error")
        finally:
            self._in_flight.pop(checkout_id, None)
        return None

    def _forget(self, checkout_id: uuid.UUID, saga: asyncio.Task[Loaded | None]) -> None:
        # Only this drive's task: a later drive of the same checkout may have started meanwhile.
        if self._sagas.get(checkout_id) is saga:
            del self._sagas[checkout_id]

    async def _cancel_sagas(self) -> None:
        """Cancel the sagas still running and wait until each has stopped."""
        sagas = set(self._sagas.values())
        for saga in sagas:
            saga.cancel()
        if sagas:
            await asyncio.wait(sagas)

    async def recover_once(self) -> int:
        """Claim unfinished checkouts whose lease expired and drive them; returns how many."""
        claimed = 0
        for checkout_id in await self.journal.due_unfinished(RECOVERY_BATCH):
            if not self.accepting or checkout_id in self._in_flight:
                continue
            token = await self.journal.claim(checkout_id)
            if token is not None:
                log.info(
                    "checkout resumed",
                    checkout_id=str(checkout_id),
                    lease=token,
                    outcome="recovered",
                )
                self.start(checkout_id, token)
                claimed += 1
        return claimed

    async def _recover_forever(self) -> None:
        while self.accepting:
            try:
                await self.recover_once()
            except Exception:
                log.exception("recovery pass failed; trying again", outcome="error")
            await anyio.sleep(self.recovery_interval_s)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Supervisor]:
        """Run sagas while the context is open; on exit, finish in-flight steps within the grace period."""
        async with anyio.create_task_group() as group:
            self._group = group
            self.accepting = True
            group.start_soon(self._recover_forever)
            try:
                yield self
            finally:
                self.accepting = False
                with anyio.move_on_after(self.grace_s, shield=True):
                    while self._in_flight:
                        await anyio.sleep(0.05)
                left = dict(self._in_flight)
                with anyio.CancelScope(shield=True):
                    await self._cancel_sagas()
                group.cancel_scope.cancel()
        # Whatever did not finish in time is handed back at once rather than after the lease expires.
        with anyio.CancelScope(shield=True):
            for checkout_id, token in left.items():
                try:
                    await self.journal.let_go(checkout_id, token)
                except Exception:
                    log.exception(
                        "could not hand back checkout",
                        checkout_id=str(checkout_id),
                        outcome="error",
                    )
        self._group = None
