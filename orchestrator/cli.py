"""``checkout-suite``: run the whole suite locally, run one service, or try it with a demo.

- ``up`` starts the four services as child processes, each with its own environment as in a
  container (SQLite files under ``--data-dir``, a demo catalog in the warehouse), waits until each
  answers ``/readyz``, and stops them all on Ctrl-C or SIGTERM.
- ``serve NAME`` runs one service in the foreground (what the container image runs).
- ``demo`` posts sample checkouts to a running suite and prints the outcome as a table.

The services are named here only by import string: importing this module loads none of them.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NamedTuple

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table


class Service(NamedTuple):
    """Where a service's code lives and the port the contract gives it."""

    package: str
    port: int

    @property
    def app(self) -> str:
        """The uvicorn factory import string."""
        return f"{self.package}.main:create_app"


SERVICES: dict[str, Service] = {
    "orchestrator": Service("orchestrator", 8000),
    "email": Service("email_service", 8001),
    "warehouse": Service("warehouse_service", 8002),
    "rewards": Service("rewards_service", 8003),
}
# Started first and stopped last: the orchestrator calls them, they never call it.
DOWNSTREAM = ("email", "warehouse", "rewards")
TERMINAL = frozenset({"completed", "failed"})


class ServiceName(StrEnum):
    """A service ``serve`` can run (the keys of ``SERVICES``)."""

    orchestrator = "orchestrator"
    email = "email"
    warehouse = "warehouse"
    rewards = "rewards"


console = Console()
app = typer.Typer(
    name="checkout-suite",
    help="Run and try the checkout suite: an orchestrator plus warehouse, rewards and email services.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


class SuiteError(Exception):
    """``up`` cannot go on: a child exited, did not get ready, or a port is taken."""


@dataclass
class Child:
    """A service process started by ``up``."""

    name: str
    url: str
    process: subprocess.Popen[bytes]


@dataclass
class SignalLatch:
    """Records SIGINT/SIGTERM; the loops of ``up`` poll it, so no handler interrupts a spawn."""

    received: list[int] = field(default_factory=list)
    _previous: dict[int, Any] = field(default_factory=dict)

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """On Linux, have the kernel send SIGTERM to the child if ``up`` itself is killed (-9)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _client_host(host: str) -> str:
    """The address clients use to reach a server bound to ``host``."""
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)


def _url(host: str, port: int) -> str:
    address = _client_host(host)
    return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"


def _check_port_free(name: str, host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Same option as uvicorn, so a port left in TIME_WAIT counts as free, as it is for it.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SuiteError(
                f"{name} cannot use {host}:{port}: {exc.strerror}. Is another suite running? "
                f"Choose another port with --{name}-port."
            ) from exc


# The key `up` gives clients when API_KEYS is not set: for a developer's machine only.
DEV_API_KEY = "dev-checkout-key"
# Likewise the token the orchestrator presents to the services (and a developer to read them).
DEV_SERVICE_TOKEN = "dev-service-token"


def _credentials() -> tuple[str, str]:
    """The client API key and the service token `up` runs with (from the environment if set)."""
    api_key = os.environ.get("API_KEYS", "").split(",")[0].strip() or DEV_API_KEY
    service_token = os.environ.get("SERVICE_TOKEN", "").split(",")[0].strip() or DEV_SERVICE_TOKEN
    return api_key, service_token


def _child_env(
    name: str,
    host: str,
    port: int,
    data_dir: Path,
    urls: dict[str, str],
    credentials: tuple[str, str],
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DATABASE_URL=f"sqlite:///{data_dir / name}.db", HOST=host, PORT=str(port))
    api_key, service_token = credentials
    env.setdefault("API_KEYS", api_key)
    env.setdefault("SERVICE_TOKEN", service_token)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if name == "warehouse":
        env["SEED_DEMO_CATALOG"] = "true"
    if name == "orchestrator":
        env.update(
            EMAIL_URL=urls["email"], WAREHOUSE_URL=urls["warehouse"], REWARDS_URL=urls["rewards"]
        )
    return env


def _spawn(
    name: str, host: str, port: int, env: dict[str, str], log_level: str
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", SERVICES[name].app, "--factory"]
    command += ["--host", host, "--port", str(port), "--log-level", log_level]
    # A process group of its own: a terminal's Ctrl-C reaches only `up`, which then stops the
    # children in order (orchestrator first) instead of all four racing to exit at once.
    return subprocess.Popen(command, env=env, process_group=0, preexec_fn=_die_with_parent)


def _wait_ready(children: list[Child], latch: SignalLatch, timeout: float) -> None:
    """Return once every child answers ``/readyz`` with 200; raise ``SuiteError`` otherwise."""
    deadline = time.monotonic() + timeout
    pending = list(children)
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while pending and not latch.received:
            for child in list(pending):
                code = child.process.poll()
                if code is not None:
                    raise SuiteError(f"{child.name} exited with code {code} before it was ready")
                try:
                    ready = client.get(f"{child.url}/readyz").status_code == 200
                except httpx.HTTPError:
                    ready = False
                if ready:
                    pending.remove(child)
                    console.print(f"[green]✓[/] {child.name} is ready at {child.url}")
            if pending and time.monotonic() > deadline:
                names = ", ".join(child.name for child in pending)
                raise SuiteError(f"{names} did not answer /readyz within {timeout:g} s")
            if pending:
                time.sleep(0.2)


def _wait_exit(
    children: list[Child], latch: SignalLatch, deadline: float, signals_seen: int
) -> None:
    """Wait for ``children`` to exit until ``deadline`` or until another signal arrives."""
    while any(c.process.poll() is None for c in children):
        if time.monotonic() >= deadline or len(latch.received) > signals_seen:
            return
        time.sleep(0.1)


def _stop(children: list[Child], latch: SignalLatch, grace: float) -> None:
    """SIGTERM the orchestrator, then the services; SIGKILL what is left after ``grace`` seconds.

    A second Ctrl-C (or SIGTERM) while waiting skips the rest of the grace period.
    """
    deadline = time.monotonic() + grace
    seen = len(latch.received)
    first = [c for c in children if c.name not in DOWNSTREAM]
    for group in (first, [c for c in children if c.name in DOWNSTREAM]):
        for child in group:
            if child.process.poll() is None:
                child.process.terminate()
        _wait_exit(group, latch, deadline, seen)
    for child in children:
        if child.process.poll() is None:
            console.print(f"[red]{child.name} did not stop within {grace:g} s: killing it[/]")
            child.process.kill()
        child.process.wait()


def _demo_catalog_table(warehouse_url: str, service_token: str) -> Table:
    """The demo catalog as the running warehouse sees it (a reused data dir keeps its stock)."""
    table = Table(title="Demo catalog", title_justify="left")
    for column in ("sku", "on hand", "reserved", "available"):
        table.add_column(column, justify="left" if column == "sku" else "right")
    catalog: dict[str, int] = importlib.import_module("warehouse_service.store").DEMO_CATALOG
    headers = {"Authorization": f"Bearer {service_token}"}
    with httpx.Client(
        base_url=warehouse_url, timeout=2.0, trust_env=False, headers=headers
    ) as client:
        for sku, seeded in catalog.items():
            try:
                item = client.get(f"/inventory/{sku}").raise_for_status().json()
                values = [str(item["on_hand"]), str(item["reserved"]), str(item["available"])]
            except (httpx.HTTPError, ValueError, KeyError):
                values = [str(seeded), "?", "?"]
            table.add_row(sku, *values)
    return table


def _print_summary(children: list[Child], data_dir: Path, credentials: tuple[str, str]) -> None:
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


@app.command()
def up(
    data_dir: Annotated[
        Path, typer.Option(help="Directory of the SQLite databases (one file per service).")
    ] = Path("data"),
    host: Annotated[str, typer.Option(help="Address every service binds to.")] = "127.0.0.1",
    orchestrator_port: Annotated[int, typer.Option()] = SERVICES["orchestrator"].port,
    email_port: Annotated[int, typer.Option()] = SERVICES["email"].port,
    warehouse_port: Annotated[int, typer.Option()] = SERVICES["warehouse"].port,
    rewards_port: Annotated[int, typer.Option()] = SERVICES["rewards"].port,
    ready_timeout: Annotated[
        float, typer.Option(help="Seconds each start phase may take to answer /readyz.")
    ] = 30.0,
    grace_period: Annotated[
        float, typer.Option(help="Seconds to let the services stop before killing them.")
    ] = 10.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level of the services.")] = "info",
) -> None:
    """Start all four services on SQLite, with a demo catalog in the warehouse, until Ctrl-C."""
    ports = {
        "orchestrator": orchestrator_port,
        "email": email_port,
        "warehouse": warehouse_port,
        "rewards": rewards_port,
    }
    if len(set(ports.values())) != len(ports):
        console.print(f"[red]Each service needs a port of its own; got {ports}[/]")
        raise typer.Exit(2)
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    urls = {name: _url(host, port) for name, port in ports.items()}
    credentials = _credentials()
    children: list[Child] = []
    latch = SignalLatch()
    latch.install()
    code = 0
    try:
        for name, port in ports.items():
            _check_port_free(name, host, port)
        for phase in (list(DOWNSTREAM), ["orchestrator"]):
            if latch.received:
                break
            started = []
            for name in phase:
                env = _child_env(name, host, ports[name], data_dir, urls, credentials)
                process = _spawn(name, host, ports[name], env, log_level)
                started.append(Child(name, urls[name], process))
            children += started
            _wait_ready(started, latch, ready_timeout)
        if not latch.received:
            _print_summary(children, data_dir, credentials)
        while not latch.received:
            for child in children:
                exit_code = child.process.poll()
                if exit_code is not None:
                    raise SuiteError(f"{child.name} exited unexpectedly with code {exit_code}")
            time.sleep(0.2)
        console.print(
            f"\n{signal.Signals(latch.received[0]).name} received: stopping the services…"
        )
    except SuiteError as exc:
        console.print(f"[bold red]✗ {escape(str(exc))}[/]; stopping the other services.")
        code = 1
    finally:
        _stop(children, latch, grace_period)
        latch.restore()
    if code == 0:
        console.print("[green]All services stopped.[/]")
    raise typer.Exit(code)


@app.command()
def serve(
    name: Annotated[ServiceName, typer.Argument(help="The service to run.")],
    host: Annotated[str, typer.Option(envvar="HOST", help="Bind address.")] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option(envvar="PORT", help="Port (default: the service's own, 8000–8003)."),
    ] = None,
) -> None:
    """Run one service in the foreground (no demo data); settings come from the environment."""
    import uvicorn

    service = SERVICES[name.value]
    port = port or service.port
    # The service's own Settings read HOST/PORT too; keep them in line with where it listens.
    os.environ["HOST"], os.environ["PORT"] = host, str(port)
    uvicorn.run(service.app, factory=True, host=host, port=port)


class MigrateTarget(StrEnum):
    """What ``migrate`` upgrades: one service's database, or all four under ``--data-dir``."""

    orchestrator = "orchestrator"
    email = "email"
    warehouse = "warehouse"
    rewards = "rewards"
    all = "all"


def _migrate_one(name: str, url: str, revision: str) -> None:
    from sqlalchemy.engine import make_url

    from servicekit.migrations import current, upgrade

    history = importlib.import_module(f"{SERVICES[name].package}.migrations").HISTORY
    shown = make_url(url).render_as_string(hide_password=True)
    before = upgrade(url, history, revision)
    after = current(url, history)
    change = "already there" if before == after else f"was {before or 'empty'}"
    console.print(
        f"[green]✓[/] {name}: {escape(shown)} at {after} ({change})",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def migrate(
    name: Annotated[
        MigrateTarget, typer.Argument(help="The service whose database to upgrade, or all.")
    ],
    database_url: Annotated[
        str | None,
        typer.Option(
            envvar="DATABASE_URL",
            help="The service's database (default: its own default, sqlite:///data/NAME.db).",
        ),
    ] = None,
    data_dir: Annotated[
        Path, typer.Option(help="With all: the directory of the SQLite databases `up` uses.")
    ] = Path("data"),
    revision: Annotated[str, typer.Option(help="The revision to reach (one service).")] = "head",
) -> None:
    """Upgrade a database's schema to its latest migration without starting the service."""
    if name is MigrateTarget.all:
        if database_url is not None or revision != "head":
            console.print(
                "[red]Each service owns its database: run migrate NAME with its DATABASE_URL "
                "(or --revision) per service; all upgrades the SQLite files under --data-dir.[/]"
            )
            raise typer.Exit(2)
        targets = {n: f"sqlite:///{data_dir.resolve() / n}.db" for n in SERVICES}
    else:
        settings = importlib.import_module(f"{SERVICES[name.value].package}.settings")
        targets = {name.value: database_url or settings.Settings().database_url}
    try:
        for service, url in targets.items():
            _migrate_one(service, url, revision)
    except Exception as exc:
        console.print(f"[bold red]✗ migration failed: {type(exc).__name__}: {escape(str(exc))}[/]")
        raise typer.Exit(1) from None


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


@app.command()
def demo(
    url: Annotated[
        str, typer.Option(help="Base URL of the orchestrator.")
    ] = "http://127.0.0.1:8000",
    wait: Annotated[
        float, typer.Option(help="Seconds to follow a checkout still running after its 202.")
    ] = 60.0,
    api_key: Annotated[
        str,
        typer.Option(
            envvar="CHECKOUT_API_KEY",
            help="Bearer key for the orchestrator (default: up's dev key).",
        ),
    ] = DEV_API_KEY,
) -> None:
    """Place three sample checkouts on a running suite and print how each one ended."""
    base = url.rstrip("/")
    table = Table(title=f"Demo checkouts on {base}", title_justify="left", show_lines=True)
    table.add_column("customer")
    table.add_column("status", no_wrap=True, min_width=9)
    table.add_column("total", justify="right")
    table.add_column("points", justify="right")
    # Never truncate a step: it is the point of the demo (widest: "warehouse:compensated(1)").
    table.add_column("steps (attempts)", no_wrap=True, min_width=24)
    refusals: list[str] = []
    try:
        headers = {"Authorization": f"Bearer {api_key}"}
        with httpx.Client(base_url=base, timeout=40.0, headers=headers) as client:
            ready = client.get("/readyz", timeout=5.0)
            if ready.status_code != 200:
                status = f"GET /readyz → {ready.status_code}"
                console.print(f"[red]The suite at {escape(base)} is not ready ({status}).[/]")
                raise typer.Exit(1)
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
        raise typer.Exit(1) from None
    console.print(table)
    if refusals:
        console.print("[red]The suite refused checkouts it should have taken:[/]")
        for refusal in refusals:
            console.print(refusal, markup=False, highlight=False)
        raise typer.Exit(1)


def main() -> None:
    """Entry point of the ``checkout-suite`` console script."""
    app(prog_name="checkout-suite")


if __name__ == "__main__":
    main()
