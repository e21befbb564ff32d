"""What the dashboard says about a checkout: why it failed or waits, and its timeline's geometry.

The journal keeps one row per step (``started_at`` of the first attempt, ``finished_at`` of the
last, the attempt count, ``compensated_at``), not one per attempt. So the timeline draws each step
as one bar from start to finish, split evenly into as many segments as attempts (and says that the
split is even), and the compensation as a marker at ``compensated_at``, joined to its step's bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.schemas import CheckoutPublic, StepPublic
from orchestrator.statuses import TERMINAL_STATUSES, CheckoutStatus

# Nice axis steps, in seconds: 1-2-5 from a millisecond, then minutes and hours.
_AXIS_STEPS = [m * 10.0**e for e in range(-3, 2) for m in (1, 2, 5)] + [
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    14400,
    21600,
    43200,
    86400,
]
_MAX_TICKS = 6


def when(moment: datetime | None, style: str = "full") -> str:
    """A UTC timestamp as people read it: ``full`` to the millisecond, ``seconds`` without the
    milliseconds and the zone, ``clock`` the time of day to the millisecond."""
    if moment is None:
        return "–"
    utc = moment.astimezone(UTC)
    if style == "seconds":
        return utc.strftime("%Y-%m-%d %H:%M:%S")
    if style == "clock":
        return utc.strftime("%H:%M:%S.%f")[:-3]
    return utc.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def duration(seconds: float) -> str:
    """A duration in the unit that suits it: 0.4 ms, 24 ms, 1.2 s, 3 min 12 s, 2 h 05 min."""
    seconds = max(seconds, 0.0)
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def error_text(error: dict[str, Any] | None) -> str:
    """An error of the journal in one line: what it said, then its HTTP status and problem type."""
    if not error:
        return ""
    detail = str(error.get("detail") or error.get("kind") or "error")
    extras = []
    if error.get("http_status"):
        extras.append(f"HTTP {error['http_status']}")
    if error.get("problem_type") and error["problem_type"] != "about:blank":
        extras.append(str(error["problem_type"]))
    if error.get("ambiguous"):
        extras.append("outcome unknown")
    return f"{detail} ({', '.join(extras)})" if extras else detail


def reason(checkout: CheckoutPublic, *, brief: bool = False) -> str:
    """Why a checkout failed, or what an unfinished one waits for; empty once completed.

    ``brief`` (the list) leaves out the problem type, which the checkout's page shows.
    """
    if checkout.status == CheckoutStatus.failed and checkout.error:
        if checkout.error.get("kind") == "cancelled":
            return f"Cancelled: {checkout.error.get('detail') or 'by an operator'}"
        step = checkout.error.get("step")
        shown = {k: v for k, v in checkout.error.items() if not (brief and k == "problem_type")}
        text = error_text(shown)
        return f"{step} failed: {text}" if step else text
    if checkout.waiting is not None:
        text = checkout.waiting.reason
        if checkout.waiting.next_attempt_at is not None:
            text = text.replace("next_attempt_at", when(checkout.waiting.next_attempt_at))
        return text
    return ""


def plan_text(checkout: CheckoutPublic) -> str:
    """The checkout's groups of steps in words: ``warehouse → rewards + email (at once)``."""
    groups: dict[int, list[str]] = {}
    for step in checkout.steps:
        groups.setdefault(step.group, []).append(step.name)
    text = " → ".join(" + ".join(names) for _, names in sorted(groups.items()))
    return text + (" ('+': at once)" if any(len(names) > 1 for names in groups.values()) else "")


def parked(checkout: CheckoutPublic, now: datetime) -> bool:
    """Whether the checkout sleeps until a later attempt (nobody is calling a service for it)."""
    waiting = checkout.waiting
    return bool(waiting and waiting.next_attempt_at and waiting.next_attempt_at > now)


def compensated_steps(checkout: CheckoutPublic) -> list[str]:
    """Names of the steps whose effect was undone."""
    return [s.name for s in checkout.steps if s.compensated_at is not None]


# What each kind means, shown when the pointer rests on a step's kind.
KIND_HINTS = {
    "compensatable": "before the pivot: undone if the checkout fails",
    "pivot": "the go/no-go step: once it succeeds, the checkout completes",
    "retriable": "after the pivot: retried until it succeeds, never undone",
}


@dataclass(frozen=True)
class Span:
    """A stretch of the time axis, in percent of its width."""

    left: float
    width: float


@dataclass(frozen=True)
class Lane:
    """One step on the timeline."""

    step: StepPublic
    bar: Span | None  # started_at → finished_at (→ now while running)
    running: bool
    wait: Span | None  # parked: from the last attempt until now
    attempt_ticks: list[float]  # where attempts 2…n begin, in percent of the bar (even split)
    point: float | None  # a step that never ran (skipped): when that was decided
    compensation: float | None  # when its effect was undone
    link: Span | None  # from the bar's end to the compensation marker
    took: str
    hover: str


@dataclass(frozen=True)
class Timeline:
    """The steps of one checkout on a shared time axis that starts when it was placed."""

    lanes: list[Lane]
    ticks: list[tuple[float, str]]
    total: str
    now: float | None  # the "now" line, while the checkout is unfinished
    even_split: bool  # some step has several attempts drawn as equal segments


def _axis_step(span_s: float) -> float:
    return next((s for s in _AXIS_STEPS if span_s / s <= _MAX_TICKS), _AXIS_STEPS[-1])


def _offset_label(seconds: float, span_s: float) -> str:
    """An axis label in the unit of the whole span: ms under 2 s, then s, min, h."""
    if span_s < 2:
        return f"+{seconds * 1000:g} ms"
    if span_s < 120:
        return f"+{seconds:g} s"
    if span_s < 7200:
        return f"+{seconds / 60:g} min"
    return f"+{seconds / 3600:g} h"


def _hover(step: StepPublic) -> str:
    lines = [f"{step.name}: {step.status}", f"attempts: {step.attempts}"]
    if step.started_at:
        lines.append(f"started {when(step.started_at)}")
    if step.finished_at:
        lines.append(f"finished {when(step.finished_at)}")
    if step.http_status:
        lines.append(f"last HTTP status {step.http_status}")
    if step.compensated_at:
        lines.append(f"compensated {when(step.compensated_at)}")
    if step.error:
        lines.append(f"error: {error_text(step.error)}")
    return "\n".join(lines)


def timeline(checkout: CheckoutPublic, now: datetime | None = None) -> Timeline:
    """Place every step of ``checkout`` on one axis, to scale."""
    now = now or datetime.now(UTC)
    unfinished = checkout.status not in TERMINAL_STATUSES
    start = checkout.created_at
    moments = [checkout.updated_at] + [
        t
        for s in checkout.steps
        for t in (s.started_at, s.finished_at, s.compensated_at)
        if t is not None
    ]
    end = max([*moments, now] if unfinished else moments)
    span_s = max((end - start).total_seconds(), 0.001)

    def pct(moment: datetime) -> float:
        return round(min(max((moment - start).total_seconds() / span_s, 0.0), 1.0) * 100, 3)

    sleeping = parked(checkout, now)
    lanes = []
    for step in checkout.steps:
        bar = link = wait = None
        point = compensation = None
        ticks: list[float] = []
        running = step.started_at is not None and step.finished_at is None
        took = ""
        if step.started_at is not None:
            until = step.finished_at or (now if unfinished else end)
            if running and sleeping:
                # Parked: its last attempt ended when the checkout was parked (its last write).
                until = max(checkout.updated_at, step.started_at)
                wait = Span(pct(until), round(max(100 - pct(until), 0.0), 3))
            left = pct(step.started_at)
            bar = Span(left, round(max(pct(until) - left, 0.0), 3))
            ticks = [round(100 * k / step.attempts, 3) for k in range(1, step.attempts)]
            took = duration((until - step.started_at).total_seconds())
            if running:
                took = f"{took}, then parked" if sleeping else f"{took} so far"
        elif step.finished_at is not None:
            point = pct(step.finished_at)
        if step.compensated_at is not None:
            compensation = pct(step.compensated_at)
            if bar is not None:
                link = Span(bar.left + bar.width, max(compensation - bar.left - bar.width, 0.0))
        lanes.append(
            Lane(step, bar, running, wait, ticks, point, compensation, link, took, _hover(step))
        )
    step_s = _axis_step(span_s)
    count = math.floor(span_s / step_s + 1e-9)
    ticks_axis = [
        (round(100 * k * step_s / span_s, 3), _offset_label(round(k * step_s, 6), span_s))
        for k in range(count + 1)
    ]
    if unfinished:  # leave room for the "now" label at the right end
        ticks_axis = [tick for tick in ticks_axis if tick[0] <= 90]
    return Timeline(
        lanes=lanes,
        ticks=ticks_axis,
        total=duration(span_s),
        now=100.0 if unfinished else None,
        even_split=any(s.attempts > 1 for s in checkout.steps),
    )
