"""``checkout-suite migrate``: upgrade a service's database without starting it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from checkout_suite.cli import app
from tests.migrations.helpers import INITIAL, SERVICES, differences, version_of

runner = CliRunner()
NO_DATABASE_URL: dict[str, str | None] = {"DATABASE_URL": None}


def test_migrate_all_upgrades_the_four_sqlite_databases_of_up(tmp_path: Path) -> None:
    """``migrate all`` brings each file under --data-dir to head; a second run changes nothing."""
    args = ["migrate", "all", "--data-dir", str(tmp_path)]
    first = runner.invoke(app, args, env=NO_DATABASE_URL)
    assert first.exit_code == 0, first.output
    for name, service in SERVICES.items():
        url = f"sqlite:///{tmp_path / name}.db"
        assert version_of(url, service.history) == [service.head]
        assert differences(url, service.history) == []
    assert first.output.count("(was empty)") == 4
    second = runner.invoke(app, args, env=NO_DATABASE_URL)
    assert second.exit_code == 0, second.output
    assert second.output.count("(already there)") == 4


def test_migrate_one_service_reads_database_url_and_takes_a_revision(
    database_url: Callable[[str], str],
) -> None:
    """``migrate NAME`` uses DATABASE_URL like ``serve``; --revision stops at an older revision."""
    url = database_url("warehouse")
    history = SERVICES["warehouse"].history
    env: dict[str, str | None] = {"DATABASE_URL": url}
    older = runner.invoke(app, ["migrate", "warehouse", "--revision", INITIAL], env=env)
    assert older.exit_code == 0, older.output
    assert version_of(url, history) == [INITIAL]
    newest = runner.invoke(app, ["migrate", "warehouse"], env=env)
    assert newest.exit_code == 0, newest.output
    assert f"(was {INITIAL})" in newest.output
    assert version_of(url, history) == [SERVICES["warehouse"].head]


def test_migrate_all_refuses_one_database_url_for_four_services(tmp_path: Path) -> None:
    """One DATABASE_URL cannot hold the four services (their tables share names): exit 2, nothing done."""
    env: dict[str, str | None] = {"DATABASE_URL": f"sqlite:///{tmp_path / 'one.db'}"}
    result = runner.invoke(app, ["migrate", "all", "--data-dir", str(tmp_path)], env=env)
    assert result.exit_code == 2
    assert "Each service owns its database" in result.output
    assert list(tmp_path.iterdir()) == []


def test_migrate_reports_an_unreachable_database() -> None:
    """A database that does not answer fails with exit 1 and the reason, not a traceback."""
    args = ["migrate", "rewards", "--database-url", "postgresql://nobody@127.0.0.1:1/none"]
    result = runner.invoke(app, args, env=NO_DATABASE_URL)
    assert result.exit_code == 1
    assert "migration failed: OperationalError" in result.output
