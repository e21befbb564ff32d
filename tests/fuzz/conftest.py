"""Reporting of the fuzz tests: how many requests each app handled."""

from __future__ import annotations

from typing import Any

from tests.fuzz import apps


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how many requests the fuzzer made each app handle (the orchestrator's calls apart)."""
    if apps.REQUESTS:
        counts = ", ".join(f"{name}: {n}" for name, n in sorted(apps.REQUESTS.items()))
        terminalreporter.write_line(f"fuzz: requests handled per app: {counts}")
