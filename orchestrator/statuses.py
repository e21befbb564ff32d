"""The statuses of a checkout and of its steps, as the journal stores them and the API shows them."""

from __future__ import annotations

from enum import StrEnum


class CheckoutStatus(StrEnum):
    """Where a checkout stands: ``pending`` until a replica starts it, then ``running``."""

    pending = "pending"
    running = "running"
    completed = "completed"
    failed = "failed"


class StepStatus(StrEnum):
    """Where one step of a checkout stands."""

    pending = "pending"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    skipped = "skipped"
    compensated = "compensated"


TERMINAL_STATUSES = frozenset({CheckoutStatus.completed, CheckoutStatus.failed})
UNFINISHED_STATUSES = (CheckoutStatus.pending, CheckoutStatus.running)
