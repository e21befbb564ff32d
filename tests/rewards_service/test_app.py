"""Settings, health probes and the OpenAPI document of the rewards service."""

from __future__ import annotations

import httpx
import pytest

from rewards_service.main import create_app
from rewards_service.settings import Settings

ROUTES = {
    ("post", "/accounts/{customer_id}/transactions"),
    ("get", "/accounts/{customer_id}"),
    ("get", "/accounts/{customer_id}/transactions"),
    ("post", "/transactions/{transaction_id}/reverse"),
    ("post", "/checkouts/{checkout_id}/void"),
    ("get", "/transactions/{transaction_id}"),
    ("get", "/transactions"),
}


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without environment, rewards uses SQLite under ./data and 127.0.0.1:8003."""
    for name in ("DATABASE_URL", "HOST", "PORT"):
        monkeypatch.delenv(name, raising=False)

    settings = Settings()

    assert settings.database_url == "sqlite:///data/rewards.db"
    assert (settings.host, settings.port) == ("127.0.0.1", 8003)


def test_settings_read_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """DATABASE_URL, HOST and PORT come from the environment; unrelated variables are ignored."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db/rewards")
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("PORT", "9003")
    monkeypatch.setenv("EMAIL_URL", "http://elsewhere")

    settings = Settings()

    assert settings.database_url == "postgresql://u@db/rewards"
    assert (settings.host, settings.port) == ("0.0.0.0", 9003)


@pytest.mark.anyio
async def test_health_probes_answer(client: httpx.AsyncClient) -> None:
    """/healthz and /readyz answer ok when the database answers."""
    for path in ("/healthz", "/readyz"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


@pytest.mark.anyio
async def test_docs_are_served_without_a_cdn(client: httpx.AsyncClient) -> None:
    """/docs renders Swagger UI from the service itself, not from a CDN."""
    response = await client.get("/docs")

    assert response.status_code == 200
    assert "swagger-ui" in response.text
    assert "cdn.jsdelivr.net" not in response.text


def test_openapi_documents_every_route() -> None:
    """Every route has a tag, a summary, a description and its problem answers documented."""
    schema = create_app(Settings(database_url="sqlite:///unused.db")).openapi()

    documented = {
        (method, path)
        for path, operations in schema["paths"].items()
        for method in operations
        if not path.endswith("z")
    }
    assert documented == ROUTES
    for method, path in ROUTES:
        operation = schema["paths"][path][method]
        assert operation["tags"]
        assert operation["summary"]
        assert operation["description"]
        for status, answer in operation["responses"].items():
            if status.startswith(("4", "5")):
                assert "HTTPValidationError" not in str(answer)
                assert "application/problem+json" in answer["content"]
    credit = schema["paths"]["/accounts/{customer_id}/transactions"]["post"]
    assert {"200", "201", "409", "422"} <= credit["responses"].keys()
    assert "404" in schema["paths"]["/transactions/{transaction_id}/reverse"]["post"]["responses"]
    example = schema["components"]["schemas"]["TransactionCreate"]["examples"][0]
    assert example.keys() == {"checkout_id", "points"}
    assert "Problem" in schema["components"]["schemas"]
