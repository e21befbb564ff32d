"""Alembic environment of the email schema; ``servicekit.migrations`` runs it."""

from servicekit.migrations import run_env

run_env()
