"""What the saga reports as it runs: a log event, metrics and a span for each call and outcome.

The runner reports through one ``SagaTelemetry``: ``driving`` wraps a drive of a checkout (the
``checkout`` span, the in-flight gauge), ``step_call`` wraps each call of a step (``step NAME``
span) or of its compensation (``compensate NAME``), and the other methods mark the checkout's
events. Every log event names ``checkout_id`` and ``outcome``, and the step events ``step`` and
``attempt``. Without metrics or a tracer provider it only logs.

Levels: a checkout that goes well is one INFO line, ``checkout completed``, naming each step's
status and attempts and the checkout's duration. The routine events of each attempt (a step or
a compensation started, a step succeeded) are DEBUG: six per checkout, which at INFO cost the
orchestrator more CPU than its journal (BENCHMARKS.md). Whatever goes wrong stays visible at
the default level: a retry, a checkout failing, each step compensated, the checkout failed
(INFO), an attempt failed, a checkout parked (WARNING), a compensation refused (ERROR).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, TracerProvider

from orchestrator.clients import StepError, StepRefusedError, StepTransientError
from orchestrator.journal.records import StepRecord
from orchestrator.saga.metrics import SagaMetrics
from servicekit.logs import get_logger

log = get_logger("orchestrator.saga")
# Routine events (a step started or succeeded, DEBUG) are checked against the level before their
# event is built: six per checkout, ~2.5 µs each even when the level drops them.
_levels = logging.getLogger("orchestrator.saga")
_NO_SPAN: nullcontext[None] = nullcontext()

CALL, COMPENSATE = "call", "compensate"
# (phase, result) -> outcome label; see orchestrator.saga.metrics.OUTCOMES
_OUTCOMES = {
    (CALL, "ok"): "succeeded",
    (CALL, "transient"): "transient",
    (CALL, "refused"): "refused",
    (COMPENSATE, "ok"): "compensated",
    (COMPENSATE, "transient"): "compensation_transient",
    (COMPENSATE, "refused"): "compensation_refused",
}


@dataclass
class _Calls:
    """Calls of one step and phase during one drive."""

    count: int = 0
    last_transient: bool = False


class SagaTelemetry:
    """Logs, metrics (when given) and spans (when given a provider) of the saga's events."""

    def __init__(
        self, metrics: SagaMetrics | None = None, tracer_provider: TracerProvider | None = None
    ) -> None:
        self.metrics = metrics
        self._tracer = tracer_provider.get_tracer(__name__) if tracer_provider else None
        # checkout id -> (step, phase) -> calls, for the checkouts being driven here.
        self._drives: dict[str, dict[tuple[str, str], _Calls]] = {}

    @contextmanager
    def driving(self, checkout_id: uuid.UUID) -> Iterator[None]:
        """Around one drive of a checkout (from its journal to completed, failed or parked)."""
        key = str(checkout_id)
        self._drives[key] = {}
        try:
            with ExitStack() as stack:
                if self.metrics is not None:
                    stack.enter_context(self.metrics.in_flight.track_inprogress())
                if self._tracer is not None:
                    stack.enter_context(
                        self._tracer.start_as_current_span(
                            "checkout", attributes={"checkout.id": key}
                        )
                    )
                yield
        finally:
            self._drives.pop(key, None)

    @contextmanager
    def step_call(self, checkout_id: str, step: str, phase: str, attempt: int) -> Iterator[None]:
        """Around one call of ``step`` (``phase`` "call") or of its compensation ("compensate").

        ``attempt`` is the step's recorded attempt count; compensations count their calls here.
        """
        calls = self._drives.get(checkout_id, {}).setdefault((step, phase), _Calls())
        calls.count += 1
        if phase == COMPENSATE:
            attempt = calls.count
        fields: dict[str, Any] = {"checkout_id": checkout_id, "step": step, "attempt": attempt}
        spanning = (
            _NO_SPAN
            if self._tracer is None
            else self._tracer.start_as_current_span(
                f"{'step' if phase == CALL else 'compensate'} {step}",
                attributes={
                    "checkout.id": checkout_id,
                    "checkout.step": step,
                    "checkout.attempt": attempt,
                },
                record_exception=False,
                set_status_on_exception=False,
            )
        )
        with spanning as span:
            if calls.last_transient:
                if self.metrics is not None:
                    self.metrics.child(self.metrics.retries, step).inc()
                log.info("step retrying", **fields, phase=phase, outcome="retrying")
            elif _levels.isEnabledFor(logging.DEBUG):
                event = "step attempt started" if phase == CALL else "compensation started"
                log.debug(event, **fields, outcome="started")
            started = time.perf_counter()
            try:
                yield
            except StepError as exc:
                result = "transient" if isinstance(exc, StepTransientError) else "refused"
                calls.last_transient = result == "transient"
                self._finished(fields, phase, result, started, span, exc)
                raise
            except Exception as exc:
                calls.last_transient = False
                self._finished(fields, phase, "error", started, span, exc)
                raise
            calls.last_transient = False
            self._finished(fields, phase, "ok", started, span, None)

    def _finished(
        self,
        fields: dict[str, Any],
        phase: str,
        result: str,
        started: float,
        span: Span | None,
        exc: Exception | None,
    ) -> None:
        duration = time.perf_counter() - started
        outcome = _OUTCOMES.get((phase, result), "error")
        step = fields["step"]
        if self.metrics is not None:
            self.metrics.child(self.metrics.step_duration, step, outcome).observe(duration)
            if outcome == "compensated":
                self.metrics.child(self.metrics.compensations, step).inc()
        if span is not None:
            span.set_attribute("checkout.outcome", outcome)
            if exc is not None:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{outcome}: {exc}"))
        details: dict[str, Any] = {"duration_ms": round(duration * 1000, 1)}
        if isinstance(exc, StepError):
            details.update(http_status=exc.http_status, detail=exc.detail)
        elif exc is not None:
            details["detail"] = f"{type(exc).__name__}: {exc}"
        if exc is None:
            if phase == COMPENSATE:
                log.info("step compensated", **fields, outcome=outcome, **details)
            elif _levels.isEnabledFor(logging.DEBUG):
                log.debug("step attempt succeeded", **fields, outcome=outcome, **details)
        elif outcome in ("transient", "refused", "compensation_transient"):
            event = "step attempt failed" if phase == CALL else "compensation failed"
            log.warning(event, **fields, outcome=outcome, **details)
        else:
            log.error("compensation failed", **fields, outcome=outcome, **details)

    def checkout_finished(
        self,
        checkout_id: uuid.UUID,
        status: str,
        steps: Sequence[StepRecord] = (),
        created_at: datetime | None = None,
    ) -> None:
        """The checkout reached a final status: ``completed`` or ``failed`` (compensated).

        Its one INFO line names every step as ``name=status/attempts`` (``steps``) and the time
        since it was placed (``duration_ms``).
        """
        if self.metrics is not None:
            self.metrics.child(self.metrics.checkouts, status).inc()
        trace.get_current_span().set_attribute("checkout.status", status)
        if not _levels.isEnabledFor(logging.INFO):
            return
        details: dict[str, Any] = {}
        if steps:
            details["steps"] = " ".join(f"{s.name}={s.status}/{s.attempts}" for s in steps)
        if created_at is not None:
            details["duration_ms"] = round(
                (datetime.now(UTC) - created_at).total_seconds() * 1000, 1
            )
        log.info(f"checkout {status}", checkout_id=str(checkout_id), outcome=status, **details)

    def checkout_failing(
        self, checkout_id: uuid.UUID, failure: dict[str, Any], attempt: int | None
    ) -> None:
        """The checkout's failure is recorded; compensation follows."""
        log.info(
            "checkout failing",
            checkout_id=str(checkout_id),
            step=failure.get("step"),
            attempt=attempt,
            outcome="failing",
            reason=failure.get("kind"),
            detail=failure.get("detail"),
        )

    def checkout_parked(
        self, checkout_id: uuid.UUID, *, step: str, attempt: int, detail: str, until: float
    ) -> None:
        """A step kept failing transiently: the checkout waits to be resumed at ``until``."""
        if self.metrics is not None:
            self.metrics.parked.inc()
        trace.get_current_span().set_attribute("checkout.status", "parked")
        log.warning(
            "checkout parked",
            checkout_id=str(checkout_id),
            step=step,
            attempt=attempt,
            outcome="parked",
            detail=detail,
            resume_at=datetime.fromtimestamp(until, UTC).isoformat(),
        )

    def compensation_abandoned(
        self, checkout_id: uuid.UUID, step: str, exc: StepRefusedError
    ) -> None:
        """The service refused a compensation: it is recorded on the step for an operator."""
        log.error(
            "compensation refused, left for an operator",
            checkout_id=str(checkout_id),
            step=step,
            outcome="compensation_refused",
            http_status=exc.http_status,
            detail=exc.detail,
        )
