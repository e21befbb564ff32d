"""Alembic environment of the rewards schema; ``servicekit.migrations`` runs it."""

from servicekit.migrations import run_env

run_env()
