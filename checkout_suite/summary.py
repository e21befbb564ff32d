"""What ``up`` prints once the suite is ready: the services, the demo catalog, how to try it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from rich.table import Table

from checkout_suite.console import console

if TYPE_CHECKING:
    from checkout_suite.processes import Child


def _demo_catalog_table(warehouse_url: str, service_token: str) -> Table:
    """The demo catalog as the running warehouse sees it (a reused data dir keeps its stock)."""
    # Imported here, once the warehouse is up: loading the module pulls in its models.
    from warehouse_service.inventory import DEMO_CATALOG

    table = Table(title="Demo catalog", title_justify="left")
    for column in ("sku", "on hand", "reserved", "available"):
        table.add_column(column, justify="left" if column == "sku" else "right")
    headers = {"Authorization": f"Bearer {service_token}"}
    with httpx.Client(
        base_url=warehouse_url, timeout=2.0, trust_env=False, headers=headers
    ) as client:
        for sku, seeded in DEMO_CATALOG.items():
            try:
                item = client.get(f"/inventory/{sku}").raise_for_status().json()
                values = [str(item["on_hand"]), str(item["reserved"]), str(item["available"])]
            except (httpx.HTTPError, ValueError, KeyError):
                values = [str(seeded), "?", "?"]
            table.add_row(sku, *values)
    return table


def print_summary(
    children: Sequence[Child],
    data_dir: Path,
    credentials: tuple[str, str],
    coordination: str = "orchestration",
) -> None:
    """Print where each service listens, the demo catalog, the credentials and a sample checkout."""
    api_key, service_token = credentials
    services = Table(title="Services", title_justify="left")
    for column in ("service", "url", "api docs", "pid"):
        services.add_column(column)
    for child in children:
        services.add_row(child.name, child.url, f"{child.url}/docs", str(child.process.pid))
    console.print()
    console.print(services)
    warehouse = next(c.url for c in children if c.name == "warehouse")
    console.print(_demo_catalog_table(warehouse, service_token))
    orchestrator = next(c.url for c in children if c.name == "orchestrator")
    body = (
        '{"customer": {"id": "c-42", "email": "ada@example.com", "name": "Ada Lovelace", '
        '"rewards_member": true}, "items": [{"sku": "SKU-001", "quantity": 2, '
        '"unit_price": "19.99"}], "currency": "USD"}'
    )
    console.print(f"SQLite databases: {data_dir}", markup=False, highlight=False)
    console.print(
        f"Coordination: {coordination}"
        + (
            " (the services react to each other's events through RabbitMQ; nobody conducts)"
            if coordination == "choreography"
            else " (the orchestrator calls the services)"
        ),
        markup=False,
        highlight=False,
    )
    # The orchestrator validated it at start; "," runs groups in turn, "+" steps at once.
    steps = os.environ.get("CHECKOUT_STEPS", "warehouse,rewards,email").replace(" ", "")
    console.print(
        f"Steps (CHECKOUT_STEPS): {' → '.join(group.replace('+', ' + ') for group in steps.split(','))}"
        + (" ('+': at once)" if "+" in steps else ""),
        markup=False,
        highlight=False,
    )
    console.print(f"\nAPI key (API_KEYS): {api_key}", markup=False, highlight=False)
    console.print(
        f"Service token (SERVICE_TOKEN, to read the services directly): {service_token}",
        markup=False,
        highlight=False,
    )
    console.print(
        "Send it as 'Authorization: Bearer <key>'; in /docs, click Authorize and paste it.",
        markup=False,
        highlight=False,
    )
    console.print("\nTry a checkout:", style="bold")
    console.print(
        f"curl -s -X POST {orchestrator}/checkouts -H 'Authorization: Bearer {api_key}' "
        f"-H 'Content-Type: application/json' -d '{body}'",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"or run: checkout-suite demo --url {orchestrator}", markup=False, highlight=False
    )
    console.print(
        "\n[bold green]Checkout suite is ready.[/] Press Ctrl-C to stop all four services."
    )
