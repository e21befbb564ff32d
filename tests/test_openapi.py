"""Every service documents itself: summaries, descriptions, tags, examples and problem responses."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI

from email_service.main import create_app as email_app
from orchestrator.main import create_app as orchestrator_app
from rewards_service.main import create_app as rewards_app
from tests.support import running
from warehouse_service.main import create_app as warehouse_app

APPS: dict[str, Callable[..., FastAPI]] = {
    "orchestrator": orchestrator_app,
    "email": email_app,
    "warehouse": warehouse_app,
    "rewards": rewards_app,
}


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    ]


@pytest.mark.parametrize("name", APPS)
def test_every_route_is_documented(name: str) -> None:
    """Each operation has a summary, a one-sentence description and a tag."""
    spec = APPS[name]().openapi()
    for method, path, op in operations(spec):
        assert op.get("summary"), (method, path)
        assert op.get("description", "").strip().endswith("."), (method, path)
        assert op.get("tags"), (method, path)


@pytest.mark.parametrize("name", APPS)
def test_errors_are_documented_as_problems(name: str) -> None:
    """Every documented 4xx/5xx is application/problem+json, and every body-taking route documents 422."""
    spec = APPS[name]().openapi()
    assert "Problem" in spec["components"]["schemas"]
    for method, path, op in operations(spec):
        for status, response in op["responses"].items():
            if status[0] in "45":
                assert list(response["content"]) == ["application/problem+json"], (
                    method,
                    path,
                    status,
                )
        if "requestBody" in op:
            assert "422" in op["responses"], (method, path)


@pytest.mark.parametrize("name", APPS)
def test_request_bodies_carry_examples(name: str) -> None:
    """A reader can paste an example for every request body."""
    spec = APPS[name]().openapi()
    schemas = spec["components"]["schemas"]
    for method, path, op in operations(spec):
        if "requestBody" not in op:
            continue
        media = op["requestBody"]["content"]["application/json"]
        ref = media["schema"].get("$ref", "")
        schema = schemas.get(ref.rsplit("/", 1)[-1], {})
        assert media.get("examples") or media.get("example") or schema.get("examples"), (
            method,
            path,
        )


def test_the_checkout_example_is_a_valid_checkout() -> None:
    """The example shown in /docs for POST /checkouts passes validation as it is."""
    from orchestrator.schemas import CheckoutCreate

    spec = orchestrator_app().openapi()
    media = spec["paths"]["/checkouts"]["post"]["requestBody"]["content"]["application/json"]
    for example in media["examples"].values():
        CheckoutCreate.model_validate(example["value"])


@pytest.mark.anyio
@pytest.mark.parametrize("name", APPS)
async def test_docs_page_works_offline(name: str, tmp_path: Any) -> None:
    """/docs loads Swagger UI from the service itself, never from a CDN."""
    package = "orchestrator" if name == "orchestrator" else f"{name}_service"
    settings = importlib.import_module(f"{package}.settings").Settings(
        database_url=f"sqlite:///{tmp_path}/{name}.db"
    )
    built = APPS[name](settings)  # type: ignore[call-arg]
    async with running(built) as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert "cdn" not in page.text.lower()
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
            url = next(part for part in page.text.split('"') if part.endswith(asset))
            assert url.startswith("/"), url
            assert (await client.get(url)).status_code == 200
