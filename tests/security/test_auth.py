"""API keys on the orchestrator, service tokens on the services: 401s that store nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from email_service.main import create_app as email_app
from email_service.settings import Settings as EmailSettings
from rewards_service.main import create_app as rewards_app
from rewards_service.settings import Settings as RewardsSettings
from servicekit.auth import matches
from tests.suite import checkout_body, running_suite
from tests.support import running
from warehouse_service.main import create_app as warehouse_app
from warehouse_service.settings import Settings as WarehouseSettings

pytestmark = pytest.mark.anyio

TOKEN = "service-token-1"
OLD_TOKEN = "service-token-0"
API_KEY = "client-key-1"
OPEN_PATHS = ["/healthz", "/readyz", "/docs", "/openapi.json"]

SERVICES: dict[str, tuple[Callable[..., Any], Any, list[tuple[str, str, Any]]]] = {
    "warehouse": (
        warehouse_app,
        WarehouseSettings,
        [
            ("PUT", "/inventory/SKU-1", {"on_hand": 5}),
            (
                "POST",
                "/reservations",
                {"checkout_id": "c1", "items": [{"sku": "SKU-1", "quantity": 1}]},
            ),
            ("GET", "/inventory/SKU-1", None),
            ("GET", "/reservations?checkout_id=c1", None),
        ],
    ),
    "rewards": (
        rewards_app,
        RewardsSettings,
        [
            ("POST", "/accounts/c-42/transactions", {"checkout_id": "c1", "points": 5}),
            ("GET", "/accounts/c-42", None),
            ("GET", "/transactions?checkout_id=c1", None),
        ],
    ),
    "email": (
        email_app,
        EmailSettings,
        [
            (
                "POST",
                "/emails",
                {
                    "to": "ada@example.com",
                    "template": "order_confirmation",
                    "checkout_id": "c1",
                    "context": {},
                },
            ),
            ("GET", "/emails?to=ada@example.com", None),
        ],
    ),
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("name", SERVICES)
async def test_services_refuse_missing_or_wrong_tokens_and_store_nothing(
    name: str, database_url: Callable[[str], str]
) -> None:
    """Every endpoint but the probes and docs needs the service token; refusals change nothing."""
    factory, settings_class, calls = SERVICES[name]
    settings = settings_class(
        database_url=database_url(name), service_token=SecretStr(f"{TOKEN},{OLD_TOKEN}")
    )
    async with running(factory(settings)) as client:
        for method, path, body in calls:
            for headers in (
                {},
                bearer("wrong"),
                {"Authorization": f"Basic {TOKEN}"},
                {"Authorization": TOKEN},
            ):
                response = await client.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.headers["content-type"] == "application/problem+json"
                assert response.headers["www-authenticate"].startswith("Bearer")
        for path in OPEN_PATHS:
            assert (await client.get(path)).status_code == 200, path
        # Nothing the refused calls carried was stored: the reads, now authorised, show no trace.
        for method, path, _ in calls:
            if method == "GET":
                response = await client.get(path, headers=bearer(TOKEN))
                assert response.status_code in (200, 404), response.text
                if response.status_code == 200 and "items" in response.json():
                    assert response.json()["items"] == []
        # Both tokens of the list are accepted, so one can be rotated without downtime.
        for token in (TOKEN, OLD_TOKEN):
            method, path, body = calls[0]
            assert (
                await client.request(method, path, json=body, headers=bearer(token))
            ).status_code < 300


async def test_orchestrator_requires_an_api_key_and_stores_nothing_without_one(
    database_url: Callable[[str], str],
) -> None:
    """Without a valid API key every checkout route is 401 and no checkout is created."""
    async with running_suite(database_url, api_keys=SecretStr(f"{API_KEY},other-key")) as suite:
        await suite.stock("SKU-001", 10)
        for headers in ({}, bearer("nope")):
            placed = await suite.orchestrator.post(
                "/checkouts", json=checkout_body(), headers=headers
            )
            listed = await suite.orchestrator.get("/checkouts", headers=headers)
            bad_body = await suite.orchestrator.post(
                "/checkouts", json={"nonsense": 1}, headers=headers
            )
            for response in (placed, listed, bad_body):
                assert response.status_code == 401
                assert response.headers["content-type"] == "application/problem+json"
        assert (await suite.orchestrator.get("/healthz")).status_code == 200
        authorised = bearer(API_KEY)
        assert (await suite.orchestrator.get("/checkouts", headers=authorised)).json()[
            "items"
        ] == []
        assert (await suite.inventory("SKU-001"))["reserved"] == 0

        placed = await suite.orchestrator.post(
            "/checkouts", json=checkout_body(), headers=authorised
        )
        assert placed.status_code == 201
        assert placed.json()["status"] == "completed"


async def test_the_saga_carries_the_service_token(database_url: Callable[[str], str]) -> None:
    """With tokens set on both sides, the orchestrator's calls are accepted and the checkout completes."""

    async with running_suite(
        database_url, wrap=secured_transport, service_token=SecretStr(f"{TOKEN},{OLD_TOKEN}")
    ) as suite:
        await suite.stock("SKU-001", 10)
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()
        assert checkout["status"] == "completed"


async def test_a_wrong_service_token_parks_the_checkout(database_url: Callable[[str], str]) -> None:
    """A 401 from a service is a configuration error: the checkout parks, it does not fail."""

    settings = {
        "service_token": SecretStr("not-the-token"),
        "step_max_attempts": 2,
        "resume_delay_s": 3600,
    }
    async with running_suite(database_url, wrap=secured_transport, **settings) as suite:
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()
        assert checkout["status"] == "running"
        assert checkout["waiting"]["last_error"]["http_status"] == 401
        assert "parked" in checkout["waiting"]["reason"]


async def test_checkouts_are_rate_limited_per_key(database_url: Callable[[str], str]) -> None:
    """Past RATE_LIMIT a client gets 429 with Retry-After and nothing is stored; other keys are not affected."""
    async with running_suite(
        database_url, api_keys=SecretStr(f"{API_KEY},second-key"), rate_limit="3/minute"
    ) as suite:
        await suite.stock("SKU-001", 100)
        answers = [
            await suite.orchestrator.post(
                "/checkouts", json=checkout_body(), headers=bearer(API_KEY)
            )
            for _ in range(5)
        ]
        other = await suite.orchestrator.post(
            "/checkouts", json=checkout_body(), headers=bearer("second-key")
        )

        assert [a.status_code for a in answers] == [201, 201, 201, 429, 429]
        refused = answers[3]
        assert refused.headers["content-type"] == "application/problem+json"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert other.status_code == 201
        listed = (await suite.orchestrator.get("/checkouts", headers=bearer(API_KEY))).json()[
            "items"
        ]
        assert len(listed) == 4
        assert (await suite.inventory("SKU-001"))["reserved"] == 8


def test_token_comparison_accepts_only_listed_tokens() -> None:
    """matches() accepts exactly the configured tokens."""
    accepted = [SecretStr("a" * 32), SecretStr("b" * 32)]
    assert matches("a" * 32, accepted)
    assert matches("b" * 32, accepted)
    assert not matches("a" * 31, accepted)
    assert not matches("", accepted)
    assert not matches("a" * 32, [])


def test_secrets_never_appear_in_settings_reprs() -> None:
    """Tokens are SecretStr: printing settings (as a log line would) never shows them."""
    from orchestrator.settings import Settings

    settings = Settings(api_keys=SecretStr(API_KEY), service_token=SecretStr(TOKEN))
    assert API_KEY not in repr(settings)
    assert TOKEN not in str(settings)
    assert API_KEY not in settings.model_dump_json()


def secured_transport(
    _service: str, transport: httpx.AsyncBaseTransport
) -> httpx.AsyncBaseTransport:
    return RequireToken(transport)


class RequireToken(httpx.AsyncBaseTransport):
    """Checks that the orchestrator's calls carry the first service token, then passes them on."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return httpx.Response(
                401, json={"status": 401, "detail": "wrong token"}, request=request
            )
        return await self.inner.handle_async_request(request)


async def test_dashboard_needs_a_key_when_keys_are_set(database_url: Callable[[str], str]) -> None:
    """With API_KEYS set, /ui asks the browser to sign in (Basic, key as password) and shows nothing before."""
    async with running_suite(database_url, api_keys=SecretStr(API_KEY)) as suite:
        await suite.stock("SKU-001", 10)
        placed = await suite.orchestrator.post(
            "/checkouts", json=checkout_body(), headers=bearer(API_KEY)
        )
        checkout_id = placed.json()["id"]

        for path in ("/ui", f"/ui/checkouts/{checkout_id}"):
            refused = await suite.orchestrator.get(path)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Basic")
            assert checkout_id not in refused.text
            wrong = await suite.orchestrator.get(path, auth=("operator", "wrong-key"))
            assert wrong.status_code == 401
            signed_in = await suite.orchestrator.get(path, auth=("operator", API_KEY))
            assert signed_in.status_code == 200
            assert checkout_id in signed_in.text
        # Basic credentials never work for actions: a cross-site page could make the browser send them.
        action = await suite.orchestrator.post(
            f"/checkouts/{checkout_id}/cancel", auth=("operator", API_KEY)
        )
        assert action.status_code == 401
