"""Running the steps of one group at once, as a crash would treat them.

Each step of a group runs in a task of its own and returns its outcome; the group ends once
every step has settled. An exception out of a step (the lease lost, the database gone, a test's
simulated crash) ends the drive as the death of the process would: the other steps are
cancelled where they stand, and the first exception is raised once they have stopped. Their
calls' outcomes are then unknown, which the journal already provides for (the steps are still
``running``, so the next drive repeats or compensates them under the same Idempotency-Keys).

A group of one step runs in the caller's task, so the sequential plan pays nothing for this.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import TypeVar

T = TypeVar("T")


async def settle_all(calls: Sequence[Awaitable[T]]) -> list[T]:
    """The results of ``calls``, run concurrently, in their order."""
    if not calls:
        return []
    if len(calls) == 1:
        return [await calls[0]]
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(_run(call)) for call in calls]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        # Cancelled ourselves (shutdown), or one step raised: stop the others before going on.
        unfinished = [task for task in tasks if not task.done()]
        for task in unfinished:
            task.cancel()
        if unfinished:
            await asyncio.wait(unfinished)
    # Every task's exception is retrieved (asyncio would report a second one as never retrieved).
    errors = [task.exception() for task in tasks if not task.cancelled()]
    first = next((error for error in errors if error is not None), None)
    if first is not None:
        raise first
    return [task.result() for task in tasks]


async def _run(call: Awaitable[T]) -> T:
    return await call
