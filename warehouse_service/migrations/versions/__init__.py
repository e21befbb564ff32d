"""Revisions of the warehouse schema, oldest first by their ``down_revision`` chain."""
