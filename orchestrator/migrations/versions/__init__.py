"""Revisions of the orchestrator schema, oldest first by their ``down_revision`` chain."""
