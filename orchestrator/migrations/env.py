"""Alembic environment of the orchestrator schema; ``servicekit.migrations`` runs it."""

from servicekit.migrations import run_env

run_env()
