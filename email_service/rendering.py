"""Subject and body of each template, rendered with Jinja2 from a caller's context.

The context is data from another service, so rendering is forgiving: a missing key renders as a
neutral default (``ChainableUndefined`` plus ``default`` filters; nulls count as missing),
``items`` keeps only its object entries, and the subject is folded to one line (no header injection). What still cannot be
rendered is a 422, never a 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from jinja2 import ChainableUndefined, Environment, PackageLoader, TemplateError

from email_service.errors import ContextNotRenderableError
from email_service.models import SUBJECT_MAX

TEMPLATES = ("order_confirmation", "order_cancelled")


@dataclass(frozen=True)
class Rendered:
    """A rendered email."""

    subject: str
    body: str


@cache
def _environment() -> Environment:
    # Plain-text emails: HTML autoescaping would corrupt names such as "O'Brien & Sons".
    return Environment(
        loader=PackageLoader("email_service", "templates"),
        autoescape=False,
        undefined=ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _present(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """``mapping`` without its null values, so a ``default`` filter covers null and missing alike."""
    return {key: value for key, value in mapping.items() if value is not None}


def _variables(context: Mapping[str, Any], checkout_id: str) -> dict[str, Any]:
    variables = _present(context)
    items = variables.get("items")
    variables["items"] = (
        [_present(item) for item in items if isinstance(item, Mapping)]
        if isinstance(items, list)
        else []
    )
    currency = variables.get("currency")
    variables["currency"] = currency if isinstance(currency, str) and currency else "USD"
    variables["checkout_id"] = checkout_id
    return variables


def _one_line(text: str) -> str:
    folded = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return folded[:SUBJECT_MAX]


def render(template: str, *, checkout_id: str, context: Mapping[str, Any]) -> Rendered:
    """Render ``template``'s subject and body; raises a 422 problem if that is impossible."""
    environment = _environment()
    variables = _variables(context, checkout_id)
    try:
        subject = environment.get_template(f"{template}.subject.j2").render(variables)
        body = environment.get_template(f"{template}.body.j2").render(variables)
    except (TemplateError, TypeError, ValueError, ArithmeticError) as exc:
        raise ContextNotRenderableError(
            f"The context cannot be rendered into {template}: {type(exc).__name__}.",
            errors=[{"loc": ["body", "context"], "msg": str(exc)[:200], "type": "render_error"}],
        ) from exc
    # PostgreSQL refuses NUL in text columns; nothing legitimate needs it in an email.
    return Rendered(subject=_one_line(subject), body=body.replace("\x00", ""))
