"""HTTP surface of the warehouse: unknown routes and methods, probes and documentation."""

from __future__ import annotations

import httpx
import pytest

from tests.support import assert_problem

pytestmark = pytest.mark.anyio


async def test_unknown_route_is_404_problem(client: httpx.AsyncClient) -> None:
    """A path no route serves is a 404 problem+json."""
    for method, path in (("GET", "/nope"), ("POST", "/inventory"), ("GET", "/inventory/")):
        assert_problem(await client.request(method, path), 404)


async def test_wrong_method_is_405_problem(client: httpx.AsyncClient) -> None:
    """A known path with a method it does not serve is a 405 problem+json with an Allow header."""
    response = await client.delete("/inventory/SKU-A")

    assert_problem(response, 405)
    # Starlette names the methods of the first route matching the path only.
    assert "GET" in response.headers["allow"]
    assert_problem(await client.get("/reservations/x/release"), 405)


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    """/healthz and /readyz answer 200 while the database answers."""
    for path in ("/healthz", "/readyz"):
        response = await client.get(path)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "ok"}


async def test_docs_use_local_assets(client: httpx.AsyncClient) -> None:
    """/docs is HTML whose scripts and styles are served by the app itself, not by a CDN."""
    response = await client.get("/docs")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "cdn." not in html
    assert "https://" not in html.split("</head>")[0]
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        url = f"/static-offline-docs/{asset}"
        assert url in html
        served = await client.get(url)
        assert served.status_code == 200
        assert served.content


async def test_openapi_lists_the_routes(client: httpx.AsyncClient) -> None:
    """/openapi.json documents every route of the warehouse and the Problem schema."""
    response = await client.get("/openapi.json")

    assert response.status_code == 200
    schema = response.json()
    operations = {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "post", "put", "delete", "patch"}
    }
    assert {
        ("POST", "/reservations"),
        ("GET", "/reservations"),
        ("GET", "/reservations/{reservation_id}"),
        ("POST", "/reservations/{reservation_id}/release"),
        ("POST", "/checkouts/{checkout_id}/void"),
        ("GET", "/inventory/{sku}"),
        ("PUT", "/inventory/{sku}"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
    } <= operations
    assert "Problem" in schema["components"]["schemas"]
    conflict = schema["paths"]["/reservations"]["post"]["responses"]["409"]
    assert "application/problem+json" in conflict["content"]
