"""The step retry policy: what is retried, how often, how long it waits, and when it gives up.

The first attempt runs outside stamina and a transient failure of it is replayed into stamina's
loop; these cases pin that the policy behaves as a plain stamina loop would.
"""

from __future__ import annotations

import time

import pytest

from orchestrator.clients import StepRefusedError, StepTransientError
from orchestrator.saga.retry import RetryPolicy

pytestmark = pytest.mark.anyio


def policy(**overrides: float | None) -> RetryPolicy:
    values: dict[str, float | None] = {
        "max_attempts": 4,
        "deadline_s": None,
        "initial_delay_s": 0.0,
        "max_delay_s": 0.0,
        "jitter_s": 0.0,
    }
    values |= overrides
    return RetryPolicy(**values)  # type: ignore[arg-type]


async def run(retry: RetryPolicy, outcomes: list[Exception | None]) -> list[int]:
    """Attempt under ``retry``: each attempt raises the next of ``outcomes`` (None: succeeds).

    Returns the attempt numbers that ran."""
    ran: list[int] = []
    async for attempt in retry.attempts():
        with attempt:
            ran.append(len(ran) + 1)
            outcome = outcomes[len(ran) - 1]
            if outcome is not None:
                raise outcome
            return ran
    raise AssertionError("the loop ended without success or error")


async def test_a_first_success_is_one_attempt() -> None:
    assert await run(policy(), [None]) == [1]


async def test_transient_errors_are_retried_until_success() -> None:
    transient = StepTransientError("busy")
    assert await run(policy(), [transient, transient, None]) == [1, 2, 3]


async def test_a_refusal_is_never_retried() -> None:
    refused = StepRefusedError("out of stock")
    for outcomes in ([refused, None], [StepTransientError("busy"), refused, None]):
        with pytest.raises(StepRefusedError) as raised:
            await run(policy(), outcomes)
        assert raised.value is refused


async def test_an_error_that_is_not_a_step_error_is_not_retried() -> None:
    with pytest.raises(KeyError):
        await run(policy(), [KeyError("bug"), None])


@pytest.mark.parametrize("max_attempts", [1, 2, 4])
async def test_after_max_attempts_the_last_transient_error_is_raised(max_attempts: int) -> None:
    errors: list[Exception | None] = [StepTransientError(f"busy {n}") for n in range(5)]
    with pytest.raises(StepTransientError) as raised:
        await run(policy(max_attempts=max_attempts), errors)
    assert raised.value is errors[max_attempts - 1]


async def test_forever_retries_past_max_attempts() -> None:
    transient = StepTransientError("busy")
    assert await run(policy(max_attempts=2).forever(), [transient] * 6 + [None]) == list(
        range(1, 8)
    )


async def test_backoff_waits_between_attempts() -> None:
    """0.05 s then 0.1 s (exponential, base 2): the first wait follows the first attempt."""
    transient = StepTransientError("busy")
    started = time.monotonic()
    await run(policy(initial_delay_s=0.05, max_delay_s=1.0), [transient, transient, None])
    assert 0.15 <= time.monotonic() - started < 1.0


async def test_a_retry_after_replaces_the_backoff_capped_by_the_lease() -> None:
    """A 429/503 with Retry-After waits that long (not the 5 s backoff), capped at
    ``max_retry_after_s``."""
    slow_down = StepTransientError("429", http_status=429, retry_after=0.2)
    started = time.monotonic()
    await run(policy(initial_delay_s=5, max_delay_s=5), [slow_down, None])
    assert 0.2 <= time.monotonic() - started < 2.0
    too_long = StepTransientError("503", http_status=503, retry_after=60)
    started = time.monotonic()
    await run(policy(initial_delay_s=5, max_delay_s=5, max_retry_after_s=0.1), [too_long, None])
    assert 0.1 <= time.monotonic() - started < 2.0


async def test_the_deadline_counts_from_the_first_attempt() -> None:
    """A step deadline of 0.3 s with 0.2 s waits: attempts at 0, ~0.2 s, then the deadline."""
    transient = StepTransientError("busy")
    started = time.monotonic()
    with pytest.raises(StepTransientError):
        await run(
            policy(max_attempts=None, deadline_s=0.3, initial_delay_s=0.2, max_delay_s=0.2),
            [transient] * 10,
        )
    assert time.monotonic() - started < 1.0
