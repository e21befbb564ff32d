"""Revisions of the rewards schema, oldest first by their ``down_revision`` chain."""
