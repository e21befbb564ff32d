"""Every operation of every service, fuzzed from its own OpenAPI schema (schemathesis, in-process).

Generated requests, valid and invalid, must never get a 5xx, and every answer must match what the
schema documents: its status code, its content type (errors are ``application/problem+json``) and
its body schema. SQLite only: the point is the API's contract, not the backend.
"""

from __future__ import annotations

import uuid
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from orchestrator.schemas import MONEY_PATTERN
from tests.fuzz import apps
from warehouse_service.inventory import DEMO_CATALOG

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FUZZ = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def _schema(label: str, spec: dict[str, Any], start: apps.Starter) -> Any:
    # Loaded from the schema dict, not the app: the app's lifespan starts with the first request.
    schema = schemathesis.openapi.from_dict(spec)
    schema.app = apps.Fresh(label, start)
    return schema


def _catalog_checkouts() -> dict[str, Any]:
    """The orchestrator's schema with skus of the demo catalog, prices as decimal strings and
    plain addresses.

    (A JSON number cannot say "at most 2 decimal places" in a schema, and ``format: email`` allows
    special-use domains such as ``.test`` that the email check refuses: both are documented 422s.)
    """
    spec = apps.openapi("orchestrator")
    customer = spec["components"]["schemas"]["Customer"]["properties"]
    customer["email"] = {
        "type": "string",
        "pattern": r"^[a-z0-9]{1,12}@[a-z]{1,12}\.(com|org|net)$",
    }
    line = spec["components"]["schemas"]["LineItem"]["properties"]
    line["sku"] = {"type": "string", "enum": sorted(DEMO_CATALOG)}
    line["unit_price"] = {"type": "string", "pattern": MONEY_PATTERN}
    return spec


orchestrator = _schema("orchestrator", apps.openapi("orchestrator"), apps.start_suite)
warehouse = _schema("warehouse", apps.openapi("warehouse"), apps.start_service("warehouse"))
rewards = _schema("rewards", apps.openapi("rewards"), apps.start_service("rewards"))
email = _schema("email", apps.openapi("email"), apps.start_service("email"))
# Random skus only ever fail at the warehouse; these are valid checkouts of the demo catalog's
# skus, so sagas complete, or fail for stock (SKU-SOLDOUT, SKU-LAST, large quantities) and
# compensate what they did.
checkouts = _schema("orchestrator (catalog checkouts)", _catalog_checkouts(), apps.start_suite)
checkouts = checkouts.include(method="POST", path="/checkouts")
checkouts.config.generation.update(modes=[GenerationMode.POSITIVE])


@orchestrator.parametrize()
@FUZZ
def test_orchestrator_honours_its_schema(case: Any) -> None:
    """The orchestrator (services mounted in-process) answers every generated request as documented."""
    case.call_and_validate(checks=CHECKS)


@checkouts.parametrize()
@FUZZ
def test_valid_checkouts_complete_or_fail_as_documented(case: Any) -> None:
    """Valid checkouts of catalog skus run their sagas and answer 201/202 as documented."""
    if case.headers and "Idempotency-Key" in case.headers:
        # Generated keys repeat (the schema's example); a reused key is a documented 422.
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
    response = case.call_and_validate(checks=CHECKS)
    assert response.status_code in (201, 202), response.text
    assert response.json()["status"] in ("completed", "failed", "running", "pending")


@warehouse.parametrize()
@FUZZ
def test_warehouse_honours_its_schema(case: Any) -> None:
    """The warehouse answers every generated request as documented."""
    case.call_and_validate(checks=CHECKS)


@rewards.parametrize()
@FUZZ
def test_rewards_honours_its_schema(case: Any) -> None:
    """The rewards service answers every generated request as documented."""
    case.call_and_validate(checks=CHECKS)


@email.parametrize()
@FUZZ
def test_email_honours_its_schema(case: Any) -> None:
    """The email service answers every generated request as documented."""
    case.call_and_validate(checks=CHECKS)
