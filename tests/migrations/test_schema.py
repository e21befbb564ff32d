"""Each service's migration history builds exactly the schema its models declare, on both backends."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from servicekit.db.engines import create_sync_engine
from servicekit.migrations import current, upgrade
from tests.migrations.helpers import INITIAL, SERVICES, differences, snapshot, version_of

NAMES = sorted(SERVICES)


@pytest.mark.parametrize("name", NAMES)
def test_head_has_no_difference_from_the_models(
    name: str, database_url: Callable[[str], str]
) -> None:
    """After upgrading to head, ``alembic check`` (compare_metadata) finds nothing to change."""
    service = SERVICES[name]
    url = database_url(name)
    upgrade(url, service.history)
    assert differences(url, service.history) == []
    assert version_of(url, service.history) == [service.head]
    assert current(url, service.history) == service.head


@pytest.mark.parametrize("name", NAMES)
def test_head_is_what_create_all_makes(name: str, database_url: Callable[[str], str]) -> None:
    """Columns, keys, indexes and checks after the upgrade equal those of create_all on the models."""
    service = SERVICES[name]
    migrated, reference = database_url(name), database_url(f"{name}_ref")
    upgrade(migrated, service.history)
    engine = create_sync_engine(reference)
    try:
        service.history.metadata.create_all(engine)
    finally:
        engine.dispose()
    assert snapshot(migrated) == snapshot(reference)
    assert snapshot(migrated)  # not two empty schemas


@pytest.mark.parametrize("name", NAMES)
def test_initial_revision_differs_only_by_the_later_ones(
    name: str, database_url: Callable[[str], str]
) -> None:
    """At the first revision the check does see a difference: what the later revisions change."""
    service = SERVICES[name]
    url = database_url(name)
    upgrade(url, service.history, INITIAL)
    found = differences(url, service.history)
    assert found
    # Indexes (every service's second revision), rewards' voided_checkout table (its third), the
    # event outbox and inbox tables and the checkout's coordination columns (the latest).
    assert {change[0] for change in found} <= {
        "add_index",
        "remove_index",
        "add_table",
        "add_column",
    }
    upgrade(url, service.history)
    assert differences(url, service.history) == []


@pytest.mark.parametrize("name", NAMES)
def test_a_second_upgrade_is_a_no_op(
    name: str, database_url: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    """Upgrading a database already at head runs no migration and changes nothing."""
    service = SERVICES[name]
    url = database_url(name)
    upgrade(url, service.history)
    before = snapshot(url)
    with caplog.at_level(logging.INFO, logger="alembic"):
        upgrade(url, service.history)
    assert not [r for r in caplog.records if "Running upgrade" in r.getMessage()]
    assert snapshot(url) == before
    assert version_of(url, service.history) == [service.head]


@pytest.mark.parametrize("name", NAMES)
def test_a_database_made_by_create_all_before_migrations_is_adopted(
    name: str, database_url: Callable[[str], str]
) -> None:
    """Tables without a version table (made by create_all before this release) are stamped, then upgraded."""
    service = SERVICES[name]
    url = database_url(name)
    upgrade(url, service.history, INITIAL)  # exactly what create_all made before migrations
    engine = create_sync_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE {service.history.version_table}"))
    finally:
        engine.dispose()
    upgrade(url, service.history)
    assert version_of(url, service.history) == [service.head]
    assert differences(url, service.history) == []


def test_services_sharing_one_database_keep_separate_version_tables(
    database_url: Callable[[str], str],
) -> None:
    """Each history records its revision in its own table, so two services never read each other's."""
    url = database_url("shared")
    upgrade(url, SERVICES["orchestrator"].history)
    assert current(url, SERVICES["warehouse"].history) is None
    upgrade(url, SERVICES["email"].history)
    assert version_of(url, SERVICES["orchestrator"].history) == [SERVICES["orchestrator"].head]
    assert version_of(url, SERVICES["email"].history) == [SERVICES["email"].head]
    engine = create_sync_engine(url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"alembic_version_orchestrator", "alembic_version_email"} <= tables
