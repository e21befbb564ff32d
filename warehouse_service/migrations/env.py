"""Alembic environment of the warehouse schema; ``servicekit.migrations`` runs it."""

from servicekit.migrations import run_env

run_env()
