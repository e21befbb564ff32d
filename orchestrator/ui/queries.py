"""The dashboard's reads: primary-key lookups and index walks that stop after one page, so their
cost does not grow with the number of checkouts stored, except the counts (one pass over an index).

- the list is ``views.list_checkouts`` (keyset on ``(created_at, id)``, or ``(status, …)`` /
  ``(customer_id, …)`` when filtered), one page plus one ``IN`` query for its steps;
- search by checkout id is a primary-key lookup (``Journal.load``);
- the counts per status are one ``GROUP BY status``, answered from an index that starts with
  ``status`` (SQLite: a covering index scan; PostgreSQL: an index-only scan once vacuumed),
  and shared by the requests of the next two seconds.
"""

from __future__ import annotations

import time
import uuid
import weakref
from dataclasses import dataclass

from orchestrator import views
from orchestrator.journal import checkouts
from orchestrator.journal.journal import Journal
from orchestrator.schemas import CheckoutPublic
from orchestrator.statuses import CheckoutStatus

STATUSES = tuple(CheckoutStatus)
COORDINATIONS = ("orchestration", "choreography")
# Under the page's polling interval (4 s): counts lag the rows by at most this much.
COUNTS_MAX_AGE_S = 2.0
_counts: weakref.WeakKeyDictionary[Journal, tuple[float, dict[str, int]]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True)
class Listing:
    """One page of the list, and how the search was understood."""

    items: list[CheckoutPublic]
    next_cursor: str | None
    matched_id: bool  # the search text was the id of a checkout


def as_uuid(text: str | None) -> uuid.UUID | None:
    """The UUID ``text`` spells, or None."""
    try:
        return uuid.UUID(text) if text else None
    except ValueError:
        return None


async def status_counts(journal: Journal) -> dict[str, int]:
    """How many checkouts have each status (every status present, zero included).

    The GROUP BY reads the whole status index (tens of milliseconds at 100,000 rows), and every
    open dashboard polls it, so one answer serves every request for ``COUNTS_MAX_AGE_S``.
    """
    now = time.monotonic()
    cached = _counts.get(journal)
    if cached is not None and now - cached[0] < COUNTS_MAX_AGE_S:
        return dict(cached[1])
    counts = await checkouts.status_counts(journal.database)
    _counts[journal] = (now, counts)
    return dict(counts)


async def search(
    journal: Journal,
    *,
    status: str | None,
    text: str | None,
    limit: int,
    cursor: str | None,
    coordination: str | None = None,
) -> Listing:
    """Checkouts newest first: the one whose id is ``text``, else those of customer ``text``.

    A text that is a UUID but no checkout's id is still tried as a customer id (any string can be
    one). Raises ``InvalidCursorError`` for a cursor we did not hand out.
    """
    checkout_id = as_uuid(text)
    if checkout_id is not None and cursor is None:
        found = await views.read_checkout(journal, checkout_id)
        if found is not None:
            shown = status in (None, found.status) and coordination in (None, found.coordination)
            return Listing([found] if shown else [], None, True)
    items, next_cursor = await views.list_checkouts(
        journal,
        status=status,
        customer_id=text or None,
        limit=limit,
        cursor=cursor,
        coordination=coordination,
    )
    return Listing(items, next_cursor, False)


async def read(journal: Journal, checkout_id: str) -> CheckoutPublic | None:
    """One checkout by id (a primary-key lookup); None for an unknown or malformed id."""
    parsed = as_uuid(checkout_id)
    return await views.read_checkout(journal, parsed) if parsed else None
