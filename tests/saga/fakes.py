"""In-memory warehouse, rewards and email for saga runner tests, with scripted faults.

The fakes keep the services' idempotency contract: a mutating call's first answer is stored
under its Idempotency-Key and replayed to every repeat, and each effect exists once per natural
key (one reservation, one credit, one message per template per checkout; one release per
reservation, one reversal per credit). A refusal is never stored: it changed nothing, and a
repeat of a key already applied is answered with the stored answer instead. Voiding a checkout
(the compensation of warehouse and rewards) undoes what it holds and refuses what comes later.

Every call first takes the next fault of a ``FaultPlan`` for its (service, action); calls past the
end of the plan succeed, so the steps and compensations the runner retries forever do end.
``Fault.CANCEL`` is an operator asking to cancel the checkout while the call is in flight (the
call itself then succeeds). ``Fault.LATE`` holds the request in the network: the caller times
out now, and the request reaches the service only when ``deliver_late`` is called (after the
checkout ended, say), applied then or refused as the service would.
"""

from __future__ import annotations

import copy
import enum
import itertools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from orchestrator.clients import StepRefusedError, StepTransientError
from orchestrator.saga.crashpoints import CrashPoints
from orchestrator.saga.steps import Outcome

SERVICES = ("warehouse", "rewards", "email")
ACTIONS = ("execute", "read", "compensate")


class Crash(BaseException):
    """The orchestrator process dies here; a BaseException, so no handler in the runner sees it."""


class Fault(enum.StrEnum):
    OK = "ok"
    TRANSIENT = "transient"  # fails before reaching the service: nothing applied
    LOST = "lost"  # applied, then the answer is lost (ambiguous)
    REFUSE = "refuse"  # a business refusal (4xx); forward calls of warehouse and rewards only
    CRASH_BEFORE = "crash_before"  # the orchestrator dies before the service applies the call
    CRASH_AFTER = "crash_after"  # the orchestrator dies after the service applied the call
    CANCEL = "cancel"  # an operator asks to cancel the checkout during the call, which succeeds
    LATE = "late"  # held in the network: times out now, reaches the service at deliver_late()


class FaultPlan:
    """Faults to inject per (service, action), one per call; calls beyond the list succeed."""

    def __init__(self, faults: Mapping[tuple[str, str], Iterable[Fault]] | None = None) -> None:
        self.queues = {key: list(queue) for key, queue in (faults or {}).items()}
        self.taken: list[tuple[str, str, Fault]] = []

    def next(self, service: str, action: str) -> Fault:
        queue = self.queues.get((service, action))
        fault = queue.pop(0) if queue else Fault.OK
        self.taken.append((service, action, fault))
        return fault


class CrashAt(CrashPoints):
    """The runner's crash points, raising ``Crash`` (each once, across replicas) instead of SIGKILL."""

    def __init__(self, points: Iterable[str] = ()) -> None:
        super().__init__(",".join(points))
        self.left = set(self.armed)
        self.reached: list[str] = []

    def reach(self, point: str) -> None:
        self.reached.append(point)
        if point in self.left:
            self.left.discard(point)
            raise Crash(point)


@dataclass
class FakeServices:
    """The three services' state, in memory, with the plan of faults their calls suffer."""

    plan: FaultPlan = field(default_factory=FaultPlan)
    reservations: dict[str, dict[str, Any]] = field(default_factory=dict)
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    emails: dict[str, dict[str, Any]] = field(default_factory=dict)
    answers: dict[tuple[str, str], Outcome] = field(
        default_factory=dict
    )  # (service, key) → first answer
    effects: list[tuple[str, str]] = field(
        default_factory=list
    )  # (effect, natural key), as applied
    keys: dict[tuple[str, str], set[str]] = field(
        default_factory=dict
    )  # (effect, natural key) → keys
    voided: set[str] = field(default_factory=set)  # checkouts voided at rewards
    held: list[Callable[[], None]] = field(default_factory=list)  # requests still on their way
    calls: int = 0
    in_flight: int = 0
    most_at_once: int = 0  # the most calls in flight at one time (steps of a group overlap)
    operator_cancel: Callable[[], Awaitable[object]] | None = None
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def state(self) -> Any:
        """Everything the services hold, for comparing before and after."""
        return copy.deepcopy(
            (
                self.reservations,
                self.transactions,
                self.voided,
                self.emails,
                self.answers,
                self.effects,
            )
        )

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    async def _mutate(
        self,
        service: str,
        action: str,
        *,
        key: str,
        effect: tuple[str, str],
        apply: Callable[[], Outcome],
    ) -> Outcome:
        self.in_flight += 1
        self.most_at_once = max(self.most_at_once, self.in_flight)
        try:
            return await self._apply(service, action, key=key, effect=effect, apply=apply)
        finally:
            self.in_flight -= 1

    async def _apply(
        self,
        service: str,
        action: str,
        *,
        key: str,
        effect: tuple[str, str],
        apply: Callable[[], Outcome],
    ) -> Outcome:
        await anyio.lowlevel.checkpoint()
        self.calls += 1
        self.keys.setdefault(effect, set()).add(key)
        fault = await self._fault(service, action)
        if fault is Fault.CRASH_BEFORE:
            raise Crash(f"{service} {action} {key}: before the call")
        if fault is Fault.TRANSIENT:
            raise StepTransientError(f"{service} {action}: connection refused (injected)")
        if fault is Fault.LATE:
            self.held.append(lambda: self._arrive(service, key, apply))
            raise StepTransientError(
                f"{service} {action}: read timeout (injected; the request is still on its way)",
                ambiguous=True,
            )
        stored = self.answers.get((service, key))
        if stored is None:
            if fault is Fault.REFUSE:
                raise StepRefusedError(f"{service} {action}: refused (injected)", http_status=409)
            stored = self.answers[(service, key)] = copy.deepcopy(apply())
        if fault is Fault.CRASH_AFTER:
            raise Crash(f"{service} {action} {key}: after the service applied it")
        if fault is Fault.LOST:
            raise StepTransientError(
                f"{service} {action}: answer lost (injected)", http_status=None, ambiguous=True
            )
        # The answer travels back: another step's call may be under way meanwhile.
        await anyio.lowlevel.checkpoint()
        return copy.deepcopy(stored)

    def _arrive(self, service: str, key: str, apply: Callable[[], Outcome]) -> None:
        """A held request reaches the service: applied once per key, or refused (stored nowhere)."""
        if (service, key) in self.answers:
            return
        try:
            self.answers[(service, key)] = copy.deepcopy(apply())
        except StepRefusedError:
            pass

    def deliver_late(self) -> None:
        """Every request still held in the network reaches its service now."""
        held, self.held = self.held, []
        for arrive in held:
            arrive()

    async def _fault(self, service: str, action: str) -> Fault:
        fault = self.plan.next(service, action)
        if fault is Fault.CANCEL:
            assert self.operator_cancel is not None
            await self.operator_cancel()
            return Fault.OK
        return fault

    async def _read(self, service: str) -> None:
        await anyio.lowlevel.checkpoint()
        self.calls += 1
        fault = await self._fault(service, "read")
        if fault in (Fault.CRASH_BEFORE, Fault.CRASH_AFTER):
            raise Crash(f"{service} read")
        if fault is not Fault.OK:
            raise StepTransientError(f"{service} read: timeout (injected)", ambiguous=True)

    def _applied(self, effect: str, natural: str) -> None:
        self.effects.append((effect, natural))

    # --- warehouse ------------------------------------------------------------------------

    def reservations_of(self, checkout_id: str) -> list[dict[str, Any]]:
        """The checkout's reservation rows, a ``voided`` one included."""
        return [r for r in self.reservations.values() if r["checkout_id"] == checkout_id]

    async def reserve(self, *, checkout_id: str, key: str) -> Outcome:
        def apply() -> Outcome:
            existing = self.reservations_of(checkout_id)
            if existing and existing[0]["status"] == "voided":
                raise StepRefusedError(f"checkout {checkout_id} was voided", http_status=409)
            if existing:
                return 200, dict(existing[0])
            reservation = {"id": self._new_id("res"), "checkout_id": checkout_id}
            reservation["status"] = "reserved"
            self.reservations[reservation["id"]] = reservation
            self._applied("reserve", checkout_id)
            return 201, dict(reservation)

        return await self._mutate(
            "warehouse", "execute", key=key, effect=("reserve", checkout_id), apply=apply
        )

    async def void_reservation(self, *, checkout_id: str, key: str) -> Outcome:
        def apply() -> Outcome:
            existing = self.reservations_of(checkout_id)
            if not existing:
                tombstone = {"id": self._new_id("res"), "checkout_id": checkout_id}
                tombstone["status"] = "voided"
                self.reservations[tombstone["id"]] = tombstone
                self._applied("void reservation", checkout_id)
                return 200, dict(tombstone)
            reservation = existing[0]
            if reservation["status"] == "reserved":
                reservation["status"] = "released"
                self._applied("release", reservation["id"])
            return 200, dict(reservation)

        return await self._mutate(
            "warehouse",
            "compensate",
            key=key,
            effect=("void reservation", checkout_id),
            apply=apply,
        )

    # --- rewards --------------------------------------------------------------------------

    def transactions_of(self, checkout_id: str, kind: str) -> list[dict[str, Any]]:
        return [
            t
            for t in self.transactions.values()
            if t["checkout_id"] == checkout_id and t["kind"] == kind
        ]

    async def credit(self, *, checkout_id: str, points: int, key: str) -> Outcome:
        def apply() -> Outcome:
            existing = self.transactions_of(checkout_id, "credit")
            if existing:
                if existing[0]["points"] != points:
                    raise StepRefusedError("credited with other points", http_status=409)
                return 200, dict(existing[0])
            if checkout_id in self.voided:
                raise StepRefusedError(f"checkout {checkout_id} was voided", http_status=409)
            credit: dict[str, Any] = {"id": self._new_id("tx"), "checkout_id": checkout_id}
            credit |= {"points": points, "kind": "credit", "reverses_id": None}
            self.transactions[credit["id"]] = credit
            self._applied("credit", checkout_id)
            return 201, dict(credit)

        return await self._mutate(
            "rewards", "execute", key=key, effect=("credit", checkout_id), apply=apply
        )

    def _reversal_of(self, credit: dict[str, Any]) -> dict[str, Any]:
        for row in self.transactions.values():
            if row["reverses_id"] == credit["id"]:
                return row
        reversal = {"id": self._new_id("tx"), "checkout_id": credit["checkout_id"]}
        reversal |= {"kind": "reversal", "points": -credit["points"]}
        reversal["reverses_id"] = credit["id"]
        self.transactions[reversal["id"]] = reversal
        self._applied("reverse", credit["id"])
        return reversal

    async def void_credit(self, *, checkout_id: str, key: str) -> Outcome:
        def apply() -> Outcome:
            if checkout_id not in self.voided:
                self.voided.add(checkout_id)
                self._applied("void credit", checkout_id)
            credits = self.transactions_of(checkout_id, "credit")
            reversals = [dict(self._reversal_of(credit)) for credit in credits]
            return 200, {"checkout_id": checkout_id, "reversals": reversals}

        return await self._mutate(
            "rewards", "compensate", key=key, effect=("void credit", checkout_id), apply=apply
        )

    # --- email ----------------------------------------------------------------------------

    def emails_of(self, checkout_id: str, template: str) -> list[dict[str, Any]]:
        return [
            m
            for m in self.emails.values()
            if m["checkout_id"] == checkout_id and m["template"] == template
        ]

    async def send_email(self, *, checkout_id: str, template: str, key: str) -> Outcome:
        def apply() -> Outcome:
            existing = self.emails_of(checkout_id, template)
            if existing:
                return 200, dict(existing[0])
            message = {"id": self._new_id("msg"), "checkout_id": checkout_id}
            message |= {"template": template, "status": "queued"}
            self.emails[message["id"]] = message
            self._applied(f"email:{template}", checkout_id)
            return 201, dict(message)

        action = "execute" if template == "order_confirmation" else "compensate"
        effect = (f"email:{template}", checkout_id)
        return await self._mutate("email", action, key=key, effect=effect, apply=apply)

    async def find_email(self, *, checkout_id: str, template: str) -> dict[str, Any] | None:
        await self._read("email")
        found = self.emails_of(checkout_id, template)
        return dict(found[0]) if found else None
