"""``dead-letters``: the choreography's dead-letter queue as a table, or replayed."""

from __future__ import annotations

import asyncio

from rich.markup import escape
from rich.table import Table

from checkout_suite.console import console


def run_dead_letters(url: str, prefix: str, *, replay: bool, limit: int) -> int:
    """Print the dead letters (replaying them with ``replay``); the exit code of the command."""
    # Imported here: aio-pika loads only for this command, not for every --help.
    from servicekit.events.dead_letters import NoSuchDeploymentError, dead_letters

    try:
        found = asyncio.run(dead_letters(url, prefix, replay=replay, limit=limit))
    except NoSuchDeploymentError as exc:
        console.print(f"[bold red]✗ {escape(str(exc))}[/]")
        return 1
    except Exception as exc:
        console.print(
            f"[bold red]✗ no broker answers at {escape(url)}[/] ({type(exc).__name__}: {escape(str(exc))})"
        )
        return 1
    if not found:
        console.print(f"No dead letters in {prefix}.dead.")
        return 0
    table = Table(
        title=f"{'Replayed' if replay else 'Dead letters in'} {prefix}.dead", title_justify="left"
    )
    for column in ("event", "checkout", "message id", "rejected by", "reason", "times"):
        table.add_column(column)
    for letter in found:
        table.add_row(
            letter.routing_key,
            letter.checkout_id or "?",
            letter.message_id or "?",
            letter.queue or "?",
            letter.reason or "?",
            str(letter.count),
        )
    console.print(table)
    if not replay:
        console.print("Fix the cause, then replay them: checkout-suite dead-letters --replay")
    return 0
