"""``checkout-suite``: run the whole suite locally, run one service, migrate, or try it with a demo.

- ``up`` starts the four services as child processes and stops them on Ctrl-C or SIGTERM
  (``checkout_suite.processes``).
- ``serve NAME`` runs one service in the foreground (what the container image runs).
- ``migrate NAME|all`` upgrades database schemas without starting a service
  (``checkout_suite.migrate``).
- ``dead-letters`` lists (or ``--replay``s) the messages no consumer could apply, in
  choreography (``checkout_suite.dead_letters``).
- ``demo`` posts sample checkouts to a running suite and prints the outcome as a table
  (``checkout_suite.demo``).

This module is the Typer app only: options, help texts and exit codes; the work is elsewhere.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from checkout_suite.credentials import DEV_API_KEY
from checkout_suite.dead_letters import run_dead_letters
from checkout_suite.demo import run_demo
from checkout_suite.migrate import MigrateTarget, run_migrate
from checkout_suite.processes import run_suite
from checkout_suite.processes import serve as serve_service
from checkout_suite.services import SERVICES, ServiceName
from servicekit.events import DEFAULT_BROKER_URL, DEFAULT_PREFIX


class Coordination(StrEnum):
    orchestration = "orchestration"
    choreography = "choreography"


# The same option on `up` and `serve`.
AccessLog = Annotated[
    bool,
    typer.Option(
        envvar="ACCESS_LOG",
        help="One log line per HTTP request (uvicorn's access log). Off by default: each "
        "checkout already logs one line as it ends, and errors are logged where they happen.",
    ),
]

app = typer.Typer(
    name="checkout-suite",
    help="Run and try the checkout suite: an orchestrator plus warehouse, rewards and email services.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
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
    log_level: Annotated[
        str, typer.Option(envvar="LOG_LEVEL", help="Log level of the services.")
    ] = "info",
    access_log: AccessLog = False,
    coordination: Annotated[
        Coordination,
        typer.Option(
            envvar="COORDINATION",
            help="orchestration: the orchestrator calls the services in turn. choreography: "
            "the services react to each other's events through RabbitMQ (--broker-url).",
        ),
    ] = Coordination.orchestration,
    broker_url: Annotated[
        str, typer.Option(envvar="BROKER_URL", help="RabbitMQ, in choreography.")
    ] = DEFAULT_BROKER_URL,
) -> None:
    """Start all four services on SQLite, with a demo catalog in the warehouse, until Ctrl-C."""
    ports = {
        "orchestrator": orchestrator_port,
        "email": email_port,
        "warehouse": warehouse_port,
        "rewards": rewards_port,
    }
    code = run_suite(
        ports,
        data_dir=data_dir,
        host=host,
        ready_timeout=ready_timeout,
        grace_period=grace_period,
        log_level=log_level,
        access_log=access_log,
        coordination=coordination.value,
        broker_url=broker_url,
    )
    raise typer.Exit(code)


@app.command()
def serve(
    name: Annotated[ServiceName, typer.Argument(help="The service to run.")],
    host: Annotated[str, typer.Option(envvar="HOST", help="Bind address.")] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option(envvar="PORT", help="Port (default: the service's own, 8000–8003)."),
    ] = None,
    log_level: Annotated[str, typer.Option(envvar="LOG_LEVEL", help="Log level.")] = "info",
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes on one port (uvicorn --workers); each orchestrator worker is a "
            "replica of its own (its own lease owner) on the same database.",
        ),
    ] = 1,
    access_log: AccessLog = False,
) -> None:
    """Run one service in the foreground (no demo data); settings come from the environment."""
    serve_service(
        name.value,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        workers=workers,
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
    code = run_migrate(name, database_url=database_url, data_dir=data_dir, revision=revision)
    if code:
        raise typer.Exit(code)


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
    code = run_demo(url, wait=wait, api_key=api_key)
    if code:
        raise typer.Exit(code)


@app.command("dead-letters")
def dead_letters(
    replay: Annotated[
        bool,
        typer.Option(help="Publish each message again (consumers that applied it skip it)."),
    ] = False,
    broker_url: Annotated[
        str, typer.Option(envvar="BROKER_URL", help="RabbitMQ of the choreography.")
    ] = DEFAULT_BROKER_URL,
    events_prefix: Annotated[
        str,
        typer.Option(envvar="EVENTS_PREFIX", help="The deployment's exchange and queue prefix."),
    ] = DEFAULT_PREFIX,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many messages.")] = 100,
) -> None:
    """List the choreography's dead letters (messages no consumer could apply), or replay them."""
    code = run_dead_letters(broker_url, events_prefix, replay=replay, limit=limit)
    if code:
        raise typer.Exit(code)


def main() -> None:
    """Entry point of the ``checkout-suite`` console script."""
    app(prog_name="checkout-suite")


if __name__ == "__main__":
    main()
