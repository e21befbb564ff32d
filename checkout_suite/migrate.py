"""``migrate``: bring a service's database schema to a revision without starting the service."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from rich.markup import escape

from checkout_suite.console import console
from checkout_suite.services import SERVICES


class MigrateTarget(StrEnum):
    """What ``migrate`` upgrades: one service's database, or all four under ``--data-dir``."""

    orchestrator = "orchestrator"
    email = "email"
    warehouse = "warehouse"
    rewards = "rewards"
    all = "all"


def _migrate_one(name: str, url: str, revision: str) -> None:
    # Alembic and SQLAlchemy are imported by this command only, not by every other one.
    from sqlalchemy.engine import make_url

    from servicekit.migrations import current, upgrade

    history = SERVICES[name].history()
    shown = make_url(url).render_as_string(hide_password=True)
    before = upgrade(url, history, revision)
    after = current(url, history)
    change = "already there" if before == after else f"was {before or 'empty'}"
    console.print(
        f"[green]✓[/] {name}: {escape(shown)} at {after} ({change})",
        highlight=False,
        soft_wrap=True,
    )


def run_migrate(
    target: MigrateTarget, *, database_url: str | None, data_dir: Path, revision: str
) -> int:
    """Upgrade the target's database(s); the exit code of ``migrate``.

    0: every database is at the revision; 1: an upgrade failed (reason printed, no traceback);
    2: ``all`` was given a DATABASE_URL or a revision, which only one service can take.
    """
    if target is MigrateTarget.all:
        if database_url is not None or revision != "head":
            console.print(
                "[red]Each service owns its database: run migrate NAME with its DATABASE_URL "
                "(or --revision) per service; all upgrades the SQLite files under --data-dir.[/]"
            )
            return 2
        targets = {n: f"sqlite:///{data_dir.resolve() / n}.db" for n in SERVICES}
    else:
        service = SERVICES[target.value]
        targets = {target.value: database_url or service.default_database_url()}
    try:
        for name, url in targets.items():
            _migrate_one(name, url, revision)
    except Exception as exc:
        console.print(f"[bold red]✗ migration failed: {type(exc).__name__}: {escape(str(exc))}[/]")
        return 1
    return 0
