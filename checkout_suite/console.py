"""The one rich console every command prints to: stdout (the services log to stderr)."""

from __future__ import annotations

from rich.console import Console

console = Console()
