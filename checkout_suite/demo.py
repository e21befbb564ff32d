"""``demo``: place sample checkouts on a running suite and print how each one ended."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from rich.markup import escape
from rich.table import Table

from checkout_suite.console import console

TERMINAL = frozenset({"completed", "failed"})

# scenario, customer id, name, rewards member, sku, quantity, unit price
DEMO_ORDERS = (
    ("member: earns points", "c-ada", "Ada Lovelace", True, "SKU-001", 2, "19.99"),
    ("non-member: rewards skipped", "c-grace", "Grace Hopper", False, "SKU-002", 1, "12.50"),
    ("sold out: checkout fails", "c-alan", "Alan Turing", True, "SKU-SOLDOUT", 1, "9.99"),
)


def _demo_body(cid: str, name: str, member: bool, sku: str, qty: int, price: str) -> dict[str, Any]:
    email = f"{name.split()[0].lower()}@example.com"
    customer = {"id": cid, "email": email, "name": name, "rewards_member": member}
    items = [{"sku": sku, "quantity": qty, "unit_price": price}]
    return {"customer": customer, "items": items, "currency": "USD"}


def _place(client: httpx.Client, body: dict[str, Any], wait: float) -> dict[str, Any]:
    """Post one checkout and follow a 202 until it is terminal or ``wait`` seconds pass."""
    response = client.post("/checkouts", json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
    if response.status_code not in (201, 202):
        raise httpx.HTTPStatusError(
            f"HTTP {response.status_code}: {response.text[:300]}",
            request=response.request,
            response=response,
        )
    checkout: dict[str, Any] = response.json()
    deadline = time.monotonic() + wait
    while checkout.get("status") not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.25)
        checkout = client.get(f"/checkouts/{checkout['id']}").raise_for_status().json()
    return checkout


def _styled(status: str) -> str:
    colour = {"completed": "green", "succeeded": "green", "failed": "red", "skipped": "dim"}.get(
        status, "yellow"
    )
    return f"[{colour}]{escape(status)}[/]"


def _new_table(base: str) -> Table:
    table = Table(title=f"Demo checkouts on {base}", title_justify="left", show_lines=True)
    table.add_column("customer")
    table.add_column("status", no_wrap=True, min_width=9)
    table.add_column("total", justify="right")
    table.add_column("points", justify="right")
    # Never truncate a step: it is the point of the demo (widest: "warehouse:compensated(1)").
    table.add_column("steps (attempts)", no_wrap=True, min_width=24)
    return table


def run_demo(url: str, *, wait: float, api_key: str) -> int:
    """Place the demo orders on the suite at ``url`` and print a table; the exit code of ``demo``.

    0: every order was taken (the sold-out one fails by design); 1: the suite is unreachable,
    not ready, or refused an order.
    """
    base = url.rstrip("/")
    table = _new_table(base)
    refusals: list[str] = []
    try:
        headers = {"Authorization": f"Bearer {api_key}"}
        with httpx.Client(base_url=base, timeout=40.0, headers=headers) as client:
            ready = client.get("/readyz", timeout=5.0)
            if ready.status_code != 200:
                status = f"GET /readyz → {ready.status_code}"
                console.print(f"[red]The suite at {escape(base)} is not ready ({status}).[/]")
                return 1
            for scenario, cid, customer, member, sku, qty, price in DEMO_ORDERS:
                body = _demo_body(cid, customer, member, sku, qty, price)
                who = f"{escape(customer)}\n[dim]{escape(scenario)}[/]"
                try:
                    checkout = _place(client, body, wait)
                except httpx.HTTPStatusError as exc:
                    refusals.append(f"{customer}: {exc}")
                    table.add_row(who, "[red]refused[/]", "", "", "")
                    continue
                steps = "\n".join(
                    f"{escape(s['name'])}:{_styled(s['status'])}({s['attempts']})"
                    for s in checkout.get("steps", [])
                )
                table.add_row(
                    who,
                    _styled(str(checkout.get("status"))),
                    escape(f"{checkout.get('total', '')} {checkout.get('currency', '')}".strip()),
                    str(checkout.get("points", "")),
                    steps,
                )
    except httpx.TransportError as exc:
        console.print(
            f"[bold red]Cannot reach the checkout suite at {escape(base)}[/] "
            f"({type(exc).__name__}: {escape(str(exc)) or 'no answer'}).\n"
            "Start it with [bold]checkout-suite up[/] (or docker compose up), or pass --url."
        )
        return 1
    console.print(table)
    if refusals:
        console.print("[red]The suite refused checkouts it should have taken:[/]")
        for refusal in refusals:
            console.print(refusal, markup=False, highlight=False)
        return 1
    return 0
