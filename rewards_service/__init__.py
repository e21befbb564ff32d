"""Rewards service: point accounts per customer and their append-only ledger."""
