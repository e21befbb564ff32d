"""What the fuzzing found, pinned down: each bug it (or the review of its finding) uncovered.

1. A JSON body that is not UTF-8 text got FastAPI's own ``400 There was an error parsing the
   body``, documented nowhere; it is malformed JSON like any other, so now a 422 ``json_invalid``.
2. The body guard's 413 and 415 were documented on the orchestrator's and the email service's
   body-taking routes only; every such route documents them now.
3. ``unit_price``'s string form was documented as any string; the schema now gives its pattern,
   and every string matching it is accepted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestrator.main import create_app as create_orchestrator_app
from orchestrator.schemas import MONEY_PATTERN, LineItem
from orchestrator.settings import Settings as OrchestratorSettings
from tests.fuzz import apps
from tests.support import running

# One body-taking route per service: (method, URL, path template in the schema).
BODY_ROUTES = {
    "orchestrator": ("POST", "/checkouts", "/checkouts"),
    "warehouse": ("POST", "/reservations", "/reservations"),
    "rewards": ("POST", "/accounts/c-1/transactions", "/accounts/{customer_id}/transactions"),
    "email": ("POST", "/emails", "/emails"),
}


def _build(name: str, data_dir: Path) -> Any:
    if name == "orchestrator":
        settings = OrchestratorSettings(database_url=f"sqlite:///{data_dir}/orchestrator.db")
        return create_orchestrator_app(settings)
    return apps.build(name, data_dir)


def _body_operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(BODY_ROUTES))
@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Content-Type": "application/json"}, b'{"a": "\xff\xfe\x10"}', 422),
        ({"Content-Type": "text/plain"}, b"hello", 415),
        ({"Content-Type": "application/json"}, b"[" + b"0," * 40_000 + b"0]", 413),
    ],
    ids=["not-utf8", "not-json", "too-large"],
)
async def test_the_body_guard_answers_documented_problems(
    name: str, headers: dict[str, str], body: bytes, status: int, tmp_path: Path
) -> None:
    """Undecodable, non-JSON and oversized bodies get 422/415/413 problem+json, each documented."""
    method, url, path = BODY_ROUTES[name]
    app = _build(name, tmp_path)
    async with running(app) as client:
        response = await client.request(method, url, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status
    if status == 422:
        assert response.json()["errors"] == [
            {"loc": ["body"], "msg": "JSON decode error", "type": "json_invalid"}
        ]
    documented = app.openapi()["paths"][path][method.lower()]["responses"]
    assert str(status) in documented


@pytest.mark.parametrize("name", sorted(BODY_ROUTES))
def test_every_body_taking_route_documents_the_body_guard(name: str) -> None:
    """Each operation with a request body documents 413, 415 and 422 as problem+json."""
    spec = apps.openapi(name)
    for method, path, operation in _body_operations(spec):
        for status in ("413", "415", "422"):
            response = operation["responses"].get(status)
            assert response is not None, (method, path, status)
            assert list(response["content"]) == ["application/problem+json"]


def test_the_unit_price_schema_states_its_pattern() -> None:
    """The string form of unit_price is documented with the pattern of a 2-place decimal."""
    spec = apps.openapi("orchestrator")
    price = spec["components"]["schemas"]["LineItem"]["properties"]["unit_price"]
    assert {"type": "string", "pattern": MONEY_PATTERN} in price["anyOf"]
    assert all(re.fullmatch(MONEY_PATTERN, example) for example in price["examples"])


@settings(max_examples=200, deadline=None)
@given(text=st.from_regex(MONEY_PATTERN, fullmatch=True))
def test_every_price_the_schema_allows_is_accepted(text: str) -> None:
    """A unit_price string matching the documented pattern always validates."""
    LineItem.model_validate({"sku": "SKU-1", "quantity": 1, "unit_price": text})


def test_prices_outside_the_pattern_are_refused() -> None:
    """The pattern's edges: three places, above a million, or not a number, are all refused."""
    for text in ("1.001", "1000000.01", "abc", "NaN"):
        assert not re.fullmatch(MONEY_PATTERN, text)
        with pytest.raises(ValidationError):
            LineItem.model_validate({"sku": "SKU-1", "quantity": 1, "unit_price": text})
