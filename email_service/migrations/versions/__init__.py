"""Revisions of the email schema, oldest first by their ``down_revision`` chain."""
