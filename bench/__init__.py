"""Benchmark of the orchestrator against non-durable baselines (``make bench``; see BENCHMARKS.md).

- ``bench.standins``: a raw-ASGI, in-memory stand-in for warehouse, rewards and email.
- ``bench.baselines``: two non-durable checkout apps (httpx, aiohttp) making the same three calls.
- ``bench.restate`` (with its workflow ``bench.restate_app``): Restate 1.7 and its Python SDK making
  them, each call a journaled step; restate-server installed with npm on first use.
- ``bench.load``: the load generator, run as its own process so its CPU is not charged to a target.
- ``bench.runner``: starts everything as uvicorn subprocesses, measures, prints and writes the report.
- ``bench.experiments``: one-off estimates: the pieces of the hot path (``hot_path``), the saga and
  journal alone (``saga_cost``), HTTP clients (``http_clients``).
- ``bench.services_cost`` (with its load process ``bench.services_load``): CPU per request of the
  three services' hot endpoints, next to a FastAPI hello, on SQLite and PostgreSQL.
"""

import sys


def emit(text: str = "") -> None:
    """Write a line to stdout at once (the load generator's handshake and every report line)."""
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()
