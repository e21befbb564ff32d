"""Retry policy for transient step failures, on top of stamina (exponential backoff with jitter).

Only ``StepTransientError`` is retried; a ``Retry-After`` sent with a 429 or 503 replaces the
computed backoff (capped, so a sleeping runner never outlives its lease).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import stamina

from orchestrator.clients import StepTransientError


@dataclass(frozen=True)
class RetryPolicy:
    """How a step's transient failures are retried.

    ``max_attempts`` and ``deadline_s`` of ``None`` mean "until it succeeds" (the email step,
    and every compensation). The delay before retry *n* is about
    ``min(initial_delay_s * backoff**(n-1) + jitter, max_delay_s)``.
    """

    max_attempts: int | None
    deadline_s: float | None
    initial_delay_s: float
    max_delay_s: float
    jitter_s: float
    backoff: float = 2.0
    max_retry_after_s: float = 10.0

    def forever(self) -> RetryPolicy:
        """The same backoff, without a limit on attempts or time."""
        return RetryPolicy(
            None,
            None,
            self.initial_delay_s,
            self.max_delay_s,
            self.jitter_s,
            self.backoff,
            self.max_retry_after_s,
        )

    def _on(self, exc: Exception) -> bool | float:
        if not isinstance(exc, StepTransientError):
            return False
        if exc.retry_after is not None:
            return min(exc.retry_after, self.max_retry_after_s)
        return True

    async def attempts(self) -> AsyncIterator[AbstractContextManager[None]]:
        """Yield one context manager per attempt; a transient error inside one triggers the next."""
        async for attempt in stamina.retry_context(
            on=self._on,
            attempts=self.max_attempts,
            timeout=self.deadline_s,
            wait_initial=self.initial_delay_s,
            wait_max=self.max_delay_s,
            wait_jitter=self.jitter_s,
            wait_exp_base=self.backoff,
        ):
            yield attempt
