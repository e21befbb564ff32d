"""The FastAPI application every service starts from: offline docs, problem+json, body guard."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from servicekit.bodyguard import DEFAULT_MAX_BODY_BYTES, BodyGuardMiddleware
from servicekit.problems import Problem, install_problem_handlers, status_title


def create_service_app(
    *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, **fastapi_kwargs: Any
) -> FastAPI:
    """A FastAPI app whose ``/docs`` works offline and whose every error is problem+json.

    ``fastapi_kwargs`` go to FastAPI (title, description, version, lifespan, openapi_tags…).
    """
    # Swagger UI ships inside the fastapi-offline package, so /docs renders without a CDN.
    # One schema per model in /docs, not "-Input"/"-Output" twins of the same thing.
    fastapi_kwargs.setdefault("separate_input_output_schemas", False)
    app = FastAPIOffline(**fastapi_kwargs)
    install_problem_handlers(app)
    app.add_middleware(BodyGuardMiddleware, max_body_bytes=max_body_bytes)
    _register_problem_schema(app)
    return app


def _register_problem_schema(app: FastAPI) -> None:
    """Make ``#/components/schemas/Problem`` exist even when no route names it as a model."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in problem.pop("$defs", {}).items():
                components.setdefault(name, definition)
            components.setdefault("Problem", problem)
            _errors_as_problems(schema)
            for unused in ("HTTPValidationError", "ValidationError"):
                components.pop(unused, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _errors_as_problems(schema: dict[str, Any]) -> None:
    """Document every 4xx/5xx answer as problem+json, including FastAPI's default 422."""
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if "requestBody" in operation:  # BodyGuardMiddleware answers these for every body
                for status in ("413", "415", "422"):
                    operation["responses"].setdefault(
                        status, {"description": status_title(int(status))}
                    )
            for status, response in operation.get("responses", {}).items():
                if status[:1] in ("4", "5"):
                    response["content"] = problem
                    if response.get("description") == "Validation Error":
                        response["description"] = (
                            "Invalid input: every invalid field is listed in `errors`"
                        )
