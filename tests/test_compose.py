"""compose.yaml, the Dockerfile and the postgres init script, checked offline (no Docker engine).

The compose-spec JSON schema catches unknown keys and bad values; the tests below cover what a schema
cannot see: references between services, environment names against each service's Settings, ports
and probes against the contract, and agreement with what ``checkout-suite up`` starts.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from checkout_suite.services import SERVICES

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
INIT_SQL = ROOT / "deploy" / "postgres" / "init-databases.sql"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from this repository's Dockerfile."""
    return {name: spec for name, spec in compose["services"].items() if "build" in spec}


def environment(spec: dict[str, Any]) -> dict[str, str]:
    """A service's environment, whether written as a mapping or as a list of NAME=value, as
    compose sets it with nothing exported (``${NAME:-default}`` is the default)."""
    env = spec.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value)) for name, value in env.items()}


def depends_on(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = spec.get("depends_on", {})
    return {name: {} for name in deps} if isinstance(deps, list) else deps


def healthcheck_command(spec: dict[str, Any]) -> str:
    test = spec["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def test_compose_file_matches_the_compose_spec_schema() -> None:
    """check-jsonschema validates compose.yaml against its bundled compose-spec schema, offline."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            COMPOSE,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_has_no_top_level_name(compose: dict[str, Any]) -> None:
    """No top-level `name:` key, which Debian's docker-compose 1.29 rejects."""
    assert "name" not in compose
    assert "version" not in compose


def test_depends_on_names_existing_services_and_waits_for_health(compose: dict[str, Any]) -> None:
    """Every depends_on names a service of the file, and waits for health where one is declared."""
    services = compose["services"]
    for name, spec in services.items():
        for dependency, options in depends_on(spec).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            assert dependency != name
            if "healthcheck" in services[dependency]:
                assert options.get("condition") == "service_healthy", (name, dependency)


def test_compose_starts_the_same_services_as_up(compose: dict[str, Any]) -> None:
    """The image-built services are exactly those `checkout-suite up` starts, on the same ports."""
    built = app_services(compose)
    assert set(built) == set(SERVICES)
    for name, spec in built.items():
        assert spec["build"] == "."
        assert spec["command"] == [name], "the entrypoint is `checkout-suite serve`; NAME follows"
        env = environment(spec)
        assert env["PORT"] == str(SERVICES[name].port)
        assert env["HOST"] == "0.0.0.0"


def test_orchestrator_is_published_on_8000_and_mailpit_on_8025(compose: dict[str, Any]) -> None:
    """The orchestrator's API and Mailpit's web inbox are reachable from the host."""
    assert "8000:8000" in compose["services"]["orchestrator"]["ports"]
    assert "8025:8025" in compose["services"]["mailpit"]["ports"]


@pytest.mark.parametrize("service", list(SERVICES))
def test_environment_names_are_settings_of_the_service(
    compose: dict[str, Any], service: str
) -> None:
    """Each variable compose sets is a field of that service's Settings and has a valid value."""
    module_name = f"{SERVICES[service].package}.settings"
    module = importlib.import_module(module_name)
    settings_class = module.Settings
    # OTEL_* belong to OpenTelemetry's SDK (servicekit.tracing reads them), not to Settings.
    env = {
        name: value
        for name, value in environment(compose["services"][service]).items()
        if not name.startswith("OTEL_")
    }
    unknown = {name for name in env if name.lower() not in settings_class.model_fields}
    assert not unknown, f"{service} has no setting for {sorted(unknown)}"
    assert all(name == name.upper() for name in env)
    # Values parse as the declared types (PORT an int, SEED_DEMO_CATALOG a bool…).
    settings_class.model_validate({name.lower(): value for name, value in env.items()})


def test_choreography_is_one_variable_away_and_every_service_reaches_rabbitmq(
    compose: dict[str, Any],
) -> None:
    """COORDINATION is the same variable on all four (orchestration unless exported), and each
    reaches RabbitMQ by its compose name with the user the broker container creates."""
    broker = compose["services"]["rabbitmq"]
    user = environment(broker)["RABBITMQ_DEFAULT_USER"]
    password = environment(broker)["RABBITMQ_DEFAULT_PASS"]
    assert "15672:15672" in broker["ports"]  # the management UI
    for name, spec in app_services(compose).items():
        assert spec["environment"]["COORDINATION"] == "${COORDINATION:-orchestration}", name
        assert environment(spec)["BROKER_URL"] == f"amqp://{user}:{password}@rabbitmq:5672/"
        assert depends_on(spec)["rabbitmq"] == {"condition": "service_healthy"}


def test_every_service_uses_its_own_postgres_database(compose: dict[str, Any]) -> None:
    """DATABASE_URL names the postgres service and a database the init script creates."""
    created = set(re.findall(r"CREATE DATABASE (\w+);", INIT_SQL.read_text()))
    for name, spec in app_services(compose).items():
        url = environment(spec)["DATABASE_URL"]
        assert re.fullmatch(rf"postgresql://[^@/]+@postgres:5432/{name}", url), url
        assert name in created
        assert depends_on(spec)["postgres"]["condition"] == "service_healthy"
    mount = f"./{INIT_SQL.relative_to(ROOT)}:/docker-entrypoint-initdb.d/"
    assert any(v.startswith(mount) for v in compose["services"]["postgres"]["volumes"])


def test_orchestrator_reaches_services_by_compose_name(compose: dict[str, Any]) -> None:
    """The orchestrator's service URLs use compose names and the services' ports."""
    env = environment(compose["services"]["orchestrator"])
    for name in ("email", "warehouse", "rewards"):
        assert env[f"{name.upper()}_URL"] == f"http://{name}:{SERVICES[name].port}"


def test_email_sends_through_mailpit_and_warehouse_seeds_demo_catalog(
    compose: dict[str, Any],
) -> None:
    """Email delivers to Mailpit's SMTP port; the warehouse starts with the demo catalog."""
    assert environment(compose["services"]["email"])["SMTP_URL"] == "smtp://mailpit:1025"
    assert environment(compose["services"]["warehouse"])["SEED_DEMO_CATALOG"] == "true"


def test_healthchecks_probe_readyz_on_the_service_port(compose: dict[str, Any]) -> None:
    """Each service's healthcheck fetches its own /readyz with the Python in the image (no curl)."""
    for name, spec in app_services(compose).items():
        command = healthcheck_command(spec)
        assert f"http://127.0.0.1:{SERVICES[name].port}/readyz" in command
        assert spec["healthcheck"]["test"][:2] == ["CMD", "python"]
        assert "$" not in command, "compose would interpolate it"
    assert "pg_isready" in healthcheck_command(compose["services"]["postgres"])


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_runs_checkout_suite_serve_as_non_root() -> None:
    """The image's entrypoint is the console script's `serve`, run by a non-root user."""
    instructions = dockerfile_instructions()
    values = dict(instructions)  # the last of each keyword is the one in force
    assert values["FROM"] == "python:3.11-slim"
    assert json.loads(values["ENTRYPOINT"]) == ["checkout-suite", "serve"]
    assert values["USER"] not in ("root", "0")
    assert "HOST=0.0.0.0" in " ".join(v for k, v in instructions if k == "ENV")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["checkout-suite"] == "checkout_suite.cli:main"


def test_dockerfile_copies_every_package() -> None:
    """Every package the suite installs is copied into the build, and .dockerignore keeps it."""
    sources = {
        source
        for keyword, value in dockerfile_instructions()
        if keyword == "COPY"
        for source in value.split()[:-1]
    }
    ignored = (ROOT / ".dockerignore").read_text().split()
    for package in {
        "servicekit",
        "checkout_suite",
        *(service.package for service in SERVICES.values()),
    }:
        assert package in sources
        assert package not in ignored
    assert ".venv" in ignored
    assert "data" in ignored
