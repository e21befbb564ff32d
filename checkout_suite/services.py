"""The four services as the suite sees them: name, package, port, migration history, database.

A service's own code is imported only when a command asks for it (``history``,
``default_database_url``), never when this module loads: ``up`` runs the services in child
processes that import them afresh (possibly from another ``PYTHONPATH``), and ``--help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servicekit.migrations import MigrationHistory


def _orchestrator_history() -> MigrationHistory:
    from orchestrator.migrations import HISTORY

    return HISTORY


def _email_history() -> MigrationHistory:
    from email_service.migrations import HISTORY

    return HISTORY


def _warehouse_history() -> MigrationHistory:
    from warehouse_service.migrations import HISTORY

    return HISTORY


def _rewards_history() -> MigrationHistory:
    from rewards_service.migrations import HISTORY

    return HISTORY


def _orchestrator_database_url() -> str:
    from orchestrator.settings import Settings

    return Settings().database_url


def _email_database_url() -> str:
    from email_service.settings import Settings

    return Settings().database_url


def _warehouse_database_url() -> str:
    from warehouse_service.settings import Settings

    return Settings().database_url


def _rewards_database_url() -> str:
    from rewards_service.settings import Settings

    return Settings().database_url


@dataclass(frozen=True)
class Service:
    """Where a service's code lives, the port the contract gives it, and how to migrate it.

    ``history()`` is the service's Alembic history (importing it loads the service's models);
    ``default_database_url()`` is the database the service itself would use, from its own
    ``Settings`` (so ``DATABASE_URL`` from the environment).
    """

    package: str
    port: int
    history: Callable[[], MigrationHistory]
    default_database_url: Callable[[], str]

    @property
    def app(self) -> str:
        """The uvicorn factory import string."""
        return f"{self.package}.main:create_app"


SERVICES: dict[str, Service] = {
    "orchestrator": Service(
        "orchestrator", 8000, _orchestrator_history, _orchestrator_database_url
    ),
    "email": Service("email_service", 8001, _email_history, _email_database_url),
    "warehouse": Service("warehouse_service", 8002, _warehouse_history, _warehouse_database_url),
    "rewards": Service("rewards_service", 8003, _rewards_history, _rewards_database_url),
}
# Started first and stopped last: the orchestrator calls them, they never call it.
DOWNSTREAM = ("email", "warehouse", "rewards")


class ServiceName(StrEnum):
    """A service ``serve`` can run (the keys of ``SERVICES``)."""

    orchestrator = "orchestrator"
    email = "email"
    warehouse = "warehouse"
    rewards = "rewards"
