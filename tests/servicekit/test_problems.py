"""servicekit.problems: every error of a service leaves as RFC 9457 problem+json."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import httpx
import psycopg
import psycopg_pool
import pytest
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from servicekit.app import create_service_app
from servicekit.problems import (
    PROBLEM_MEDIA_TYPE,
    BadRequestInputError,
    ProblemError,
    problem_response,
    status_title,
)

pytestmark = pytest.mark.anyio

SECRET = "hunter2-do-not-echo"


class Line(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=5)
    count: int = Field(ge=1, le=10)


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: str = Field(min_length=1, max_length=8)
    lines: list[Line] = Field(min_length=1)


class TeapotError(ProblemError):
    status = 418
    type = "urn:test:problem:teapot"
    title = "I'm a teapot"


def _app() -> FastAPI:
    app = create_service_app(title="kit test")

    @app.post("/orders")
    async def create_order(order: Order) -> Order:
        return order

    @app.get("/items/{item_id}")
    async def read_item(item_id: int, limit: int = 10) -> dict[str, int]:
        return {"item_id": item_id, "limit": limit}

    @app.get("/teapot")
    async def teapot() -> None:
        raise TeapotError("Short and stout.", headers={"Retry-After": "7"}, spout="left")

    @app.get("/bad-rule")
    async def bad_rule() -> None:
        raise BadRequestInputError(
            "The owner may not order this.",
            errors=[{"loc": ["body", "owner"], "msg": "not allowed", "type": "forbidden"}],
        )

    @app.get("/http/{status}")
    async def http_error(status: int) -> None:
        raise HTTPException(status, detail="Custom detail.", headers={"X-Reason": "test"})

    @app.get("/http-dict")
    async def http_dict_detail() -> None:
        raise StarletteHTTPException(403, detail={"secret": SECRET})  # type: ignore[arg-type]

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"database password is {SECRET}")

    database_errors = {
        # As the kit's statements raise them (servicekit.db.statements.wrapped), and raw.
        "shutdown": DBAPIError.instance(
            "SELECT 1", None, psycopg.OperationalError(f"terminating {SECRET}"), psycopg.Error
        ),
        "pool": psycopg_pool.PoolTimeout("couldn't get a connection after 30.00 sec"),
        "locked": DBAPIError.instance(
            "SELECT 1", None, sqlite3.OperationalError("database is locked"), sqlite3.Error
        ),
        "no-table": DBAPIError.instance(
            "SELECT 1", None, sqlite3.OperationalError(f"no such table: {SECRET}"), sqlite3.Error
        ),
        "constraint": DBAPIError.instance(
            "INSERT", None, psycopg.IntegrityError(f"duplicate key {SECRET}"), psycopg.Error
        ),
    }

    @app.get("/database/{kind}")
    async def database_error(kind: str) -> None:
        raise database_errors[kind]

    return app


@pytest.fixture
async def client(anyio_backend: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a small app built on the kit; app exceptions become responses, as under a server."""
    del anyio_backend  # requested so the fixture runs on the test's event loop
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def _problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= body.keys()
    return body


async def test_validation_error_lists_every_field_without_echoing_input(
    client: httpx.AsyncClient,
) -> None:
    """A 422 lists every invalid field with exactly loc, msg and type, and never repeats the input."""
    response = await client.post(
        "/orders",
        json={
            "owner": SECRET,
            "lines": [{"name": SECRET, "count": 0}, {"count": "x" + SECRET}],
            "note": SECRET,
        },
    )

    body = _problem(response, 422)
    assert body["title"] == "Unprocessable Content"
    assert body["type"] == "about:blank"
    errors = body["errors"]
    assert isinstance(errors, list)
    assert sorted(tuple(e["loc"]) for e in errors) == sorted(
        [
            ("body", "owner"),
            ("body", "lines", 0, "name"),
            ("body", "lines", 0, "count"),
            ("body", "lines", 1, "name"),
            ("body", "lines", 1, "count"),
            ("body", "note"),
        ]
    )
    for error in errors:
        assert error.keys() == {"loc", "msg", "type"}
        assert isinstance(error["msg"], str)
        assert isinstance(error["type"], str)
    assert "body.lines.0.count" in str(body["detail"])
    assert SECRET not in response.text


async def test_validation_error_names_path_and_query_fields(client: httpx.AsyncClient) -> None:
    """Invalid path and query parameters are both named, with their location first."""
    body = _problem(await client.get("/items/abc", params={"limit": "many"}), 422)

    assert sorted(tuple(e["loc"]) for e in body["errors"]) == [  # type: ignore[attr-defined]
        ("path", "item_id"),
        ("query", "limit"),
    ]


async def test_malformed_json_is_a_422_problem(client: httpx.AsyncClient) -> None:
    """A body that does not parse is a 422 problem pointing into the body, without the raw text."""
    response = await client.post(
        "/orders",
        content=b'{"owner": "' + SECRET.encode() + b'", ',
        headers={"Content-Type": "application/json"},
    )

    body = _problem(response, 422)
    assert [e["loc"][0] for e in body["errors"]] == ["body"]  # type: ignore[attr-defined,index]
    assert SECRET not in response.text


async def test_problem_error_carries_type_title_headers_and_extensions(
    client: httpx.AsyncClient,
) -> None:
    """A ProblemError subclass becomes its status, type and title, with its headers and extensions."""
    response = await client.get("/teapot")

    body = _problem(response, 418)
    assert body == {
        "type": "urn:test:problem:teapot",
        "title": "I'm a teapot",
        "status": 418,
        "detail": "Short and stout.",
        "spout": "left",
    }
    assert response.headers["retry-after"] == "7"


async def test_bad_request_input_error_lists_its_errors(client: httpx.AsyncClient) -> None:
    """BadRequestInputError is a 422 whose errors name the fields a rule refused."""
    body = _problem(await client.get("/bad-rule"), 422)

    assert body["errors"] == [{"loc": ["body", "owner"], "msg": "not allowed", "type": "forbidden"}]
    assert body["detail"] == "The owner may not order this."


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 429, 503])
async def test_http_exception_is_problem_json(client: httpx.AsyncClient, status: int) -> None:
    """An HTTPException raised by a route is a problem with its status, detail and headers."""
    response = await client.get(f"/http/{status}")

    body = _problem(response, status)
    assert body["detail"] == "Custom detail."
    assert body["title"] == status_title(status)
    assert response.headers["x-reason"] == "test"


async def test_http_exception_with_structured_detail_does_not_leak_it(
    client: httpx.AsyncClient,
) -> None:
    """A non-string HTTPException detail is replaced by the status phrase."""
    response = await client.get("/http-dict")

    assert _problem(response, 403)["detail"] == "Forbidden"
    assert SECRET not in response.text


async def test_router_404_and_405_are_problems(client: httpx.AsyncClient) -> None:
    """The router's own 404 and 405 answers are problem+json too."""
    not_found = _problem(await client.get("/no/such/path"), 404)
    assert not_found["title"] == "Not Found"
    assert not_found["detail"] == "There is nothing at this path."

    wrong_method = await client.delete("/teapot")
    _problem(wrong_method, 405)
    assert wrong_method.headers["allow"] == "GET"


async def test_unexpected_exception_is_500_without_internals(client: httpx.AsyncClient) -> None:
    """An unhandled exception is a 500 problem revealing neither its message nor its type."""
    response = await client.get("/boom")

    body = _problem(response, 500)
    assert body["title"] == "Internal Server Error"
    assert SECRET not in response.text
    assert "RuntimeError" not in response.text
    assert "Traceback" not in response.text


@pytest.mark.parametrize("kind", ["shutdown", "pool", "locked"])
async def test_an_unreachable_or_busy_database_is_503_with_retry_after(
    client: httpx.AsyncClient, kind: str
) -> None:
    """A restart, a cut link, an empty pool or a locked SQLite file: retry, nothing was kept."""
    response = await client.get(f"/database/{kind}")

    body = _problem(response, 503)
    assert response.headers["retry-after"] == "1"
    assert "nothing of this request was kept" in body["detail"]
    assert SECRET not in response.text


@pytest.mark.parametrize("kind", ["no-table", "constraint"])
async def test_other_database_errors_stay_500_without_internals(
    client: httpx.AsyncClient, kind: str
) -> None:
    """A database error that a retry would not cure is the server's fault: 500, no internals."""
    response = await client.get(f"/database/{kind}")

    _problem(response, 500)
    assert "retry-after" not in response.headers
    assert SECRET not in response.text


async def test_unexpected_exception_still_reaches_the_server() -> None:
    """The 500 answer does not swallow the exception: the server still sees (and logs) it."""
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with pytest.raises(RuntimeError, match="database password"):
            await client.get("/boom")


def test_problem_response_builds_problem_json() -> None:
    """problem_response sets the media type, the RFC 9110 title and any extensions."""
    response = problem_response(413, "Too big.", headers={"X-A": "b"}, limit=10)

    assert response.status_code == 413
    assert response.media_type == PROBLEM_MEDIA_TYPE
    assert response.headers["x-a"] == "b"
    assert response.body == (
        b'{"type":"about:blank","title":"Content Too Large","status":413,'
        b'"detail":"Too big.","limit":10}'
    )


@pytest.mark.parametrize(
    ("status", "title"),
    [
        (404, "Not Found"),
        (413, "Content Too Large"),
        (415, "Unsupported Media Type"),
        (422, "Unprocessable Content"),
        (500, "Internal Server Error"),
    ],
)
def test_status_title_uses_rfc_9110_phrases(status: int, title: str) -> None:
    """Titles are RFC 9110 reason phrases, including the two it renamed."""
    assert status_title(status) == title


async def test_openapi_documents_the_problem_schema(client: httpx.AsyncClient) -> None:
    """Every kit app's OpenAPI has a Problem schema, even if no route names it."""
    schema = (await client.get("/openapi.json")).json()

    problem = schema["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "errors"} <= problem["properties"].keys()
    assert "FieldError" in schema["components"]["schemas"]
