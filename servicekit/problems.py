"""RFC 9457 problem details: one error base, one place that registers every handler.

Every error leaves a service as ``application/problem+json`` with ``type``, ``title``,
``status`` and ``detail``; a 422 for bad input adds ``errors``, naming every invalid field.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from servicekit.db.outage import DATABASE_ERRORS, unavailable
from servicekit.logs import get_logger

log = get_logger("servicekit.problems")

PROBLEM_MEDIA_TYPE = "application/problem+json"
# RFC 9110 renamed these two; http.HTTPStatus still has the old phrases.
_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}


def status_title(status: int) -> str:
    """The RFC 9110 reason phrase of ``status``."""
    return _TITLES.get(status) or HTTPStatus(status).phrase


class FieldError(BaseModel):
    """One invalid field of a request."""

    loc: list[str | int] = Field(
        description="Where the field is: body, query, path or header, then its path."
    )
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(default="about:blank", examples=["about:blank"])
    title: str = Field(examples=["Not Found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["No checkout has the id 3f0c2a9e-8a1c-4c7a-9a55-2f1d5f2b7c11."])
    errors: list[FieldError] | None = Field(
        default=None, description="Present on 422 for bad input: every invalid field."
    )


class ProblemError(Exception):
    """Base of every domain error; subclasses set ``status``, ``type`` and ``title``."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "about:blank"
    title: ClassVar[str] = "Internal Server Error"

    def __init__(
        self, detail: str, *, headers: dict[str, str] | None = None, **extensions: Any
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions


class BadRequestInputError(ProblemError):
    """Input that passed the schema but not a rule the schema cannot express."""

    status = 422
    type = "about:blank"
    title = "Unprocessable Content"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]]) -> None:
        super().__init__(detail, errors=errors)


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """Build a problem+json response."""
    body: dict[str, Any] = {
        "type": type_,
        "title": title or status_title(status),
        "status": status,
        "detail": detail,
        **extensions,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def field_errors(errors: Any) -> list[dict[str, Any]]:
    """Reduce pydantic errors to ``loc``/``msg``/``type``; inputs and contexts are not echoed."""
    return [
        {
            "loc": [p if isinstance(p, int) else str(p) for p in e["loc"]],
            "msg": e["msg"],
            "type": e["type"],
        }
        for e in errors
    ]


async def _problem_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(
        exc.status,
        exc.detail,
        title=exc.title,
        type_=exc.type,
        headers=exc.headers,
        **exc.extensions,
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc.errors())
    fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors)
    return problem_response(422, f"The request has invalid fields: {fields}.", errors=errors)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = "There is nothing at this path."
    return problem_response(exc.status_code, detail, headers=dict(exc.headers or {}))


# Long enough for a restarting server to come back, short enough for a shopper's retry.
DATABASE_RETRY_AFTER_S = 1


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if not unavailable(exc):
        log.error("database error", path=request.url.path, exc_info=exc)
        return await _unexpected_error(request, exc)
    log.warning("database unavailable", path=request.url.path, detail=str(exc).splitlines()[0])
    return problem_response(
        503,
        "The database is unavailable for a moment; nothing of this request was kept. Retry it.",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


async def _unexpected_error(_: Request, __: Exception) -> JSONResponse:
    # The traceback goes to the server log (uvicorn logs it); the client learns nothing internal.
    return problem_response(500, "The server met an unexpected error; it has been logged.")


def install_problem_handlers(app: FastAPI) -> None:
    """Register every error handler of a service, so all errors are problem+json."""
    app.add_exception_handler(ProblemError, _problem_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for database_error in DATABASE_ERRORS:
        app.add_exception_handler(database_error, _database_error)
    app.add_exception_handler(Exception, _unexpected_error)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting problem+json answers."""
    return {
        status: {
            "model": Problem,
            "description": status_title(status),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
