"""The operators' dashboard: server-rendered pages under ``/ui``, left out of the OpenAPI schema.

Every page sets ``<base href>`` to the application's root, written relative to the page's own URL
(``./`` for ``/ui``, ``../../`` for ``/ui/checkouts/{id}``), and every link, asset and API call is
relative to that base. So the dashboard works behind any host, port or path prefix, and the HTML
fragments the page polls for keep working when they are swapped in.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from typing import Annotated, Any
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from orchestrator.api import JournalDep
from orchestrator.errors import InvalidCursorError
from orchestrator.journal.journal import Journal
from orchestrator.statuses import TERMINAL_STATUSES
from orchestrator.ui import present, queries

router = APIRouter(include_in_schema=False)

POLL_MS = 4000
MAX_SEARCH_CHARS = 200
_ASSETS = {"ui.css": "text/css; charset=utf-8", "ui.js": "text/javascript; charset=utf-8"}


@functools.cache
def templates() -> jinja2.Environment:
    """The Jinja2 environment of the package's templates, autoescaping every ``.html``."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("orchestrator.ui", "templates"),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=present.when, duration=present.duration, error_text=present.error_text)
    env.globals.update(
        reason=present.reason,
        statuses=queries.STATUSES,
        asset_version=asset_version,
        poll_ms=POLL_MS,
        KIND_HINTS=present.KIND_HINTS,
        plan_text=present.plan_text,
    )
    return env


@functools.cache
def _asset(name: str) -> tuple[bytes, str]:
    """A static file's bytes and its ETag."""
    data = resources.files("orchestrator.ui").joinpath("static", name).read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:16]


def asset_version(name: str) -> str:
    """The content hash of a static file, appended to its URL so a new release busts caches."""
    return _asset(name)[1]


def _render(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = templates().get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


def _url(path: str, **params: str | int | None) -> str:
    """A link relative to the base: ``ui?status=failed&q=c-42``, without empty parameters."""
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"{path}?{query}" if query else path


def _clean_search(q: str | None) -> str | None:
    text = (q or "").strip()[:MAX_SEARCH_CHARS]
    return text or None


async def _list_context(
    journal: Journal,
    *,
    status: str | None,
    q: str | None,
    cursor: str | None,
    limit: int,
    coordination: str | None = None,
) -> tuple[dict[str, Any], int]:
    status = status if status in queries.STATUSES else None
    coordination = coordination if coordination in queries.COORDINATIONS else None
    text = _clean_search(q)
    cursor = cursor or None
    error = None
    try:
        listing = await queries.search(
            journal,
            status=status,
            text=text,
            limit=limit,
            cursor=cursor,
            coordination=coordination,
        )
    except InvalidCursorError:
        listing = queries.Listing([], None, False)
        error = "This page link is not valid (its cursor was not handed out by this dashboard)."
    counts = await queries.status_counts(journal)
    keep: dict[str, str | int | None] = {
        "q": text,
        "limit": limit if limit != 50 else None,
        "coordination": coordination,
    }
    context = {
        "status": status,
        "coordination": coordination,
        "coordination_urls": {
            mode: _url("ui", status=status, **(keep | {"coordination": mode}))
            for mode in (None, *queries.COORDINATIONS)
        },
        "q": text or "",
        "cursor": cursor,
        "limit": limit,
        "listing": listing,
        "counts": counts,
        "total": sum(counts.values()),
        "error": error,
        "filter_urls": {s: _url("ui", status=s, **keep) for s in (None, *queries.STATUSES)},
        "first_url": _url("ui", status=status, **keep),
        "next_url": (
            _url("ui", status=status, cursor=listing.next_cursor, **keep)
            if listing.next_cursor
            else None
        ),
        "fragment_url": _url("ui/fragments/list", status=status, cursor=cursor, **keep),
        "clear_url": _url("ui", status=status, coordination=coordination),
    }
    return context, 400 if error else 200


Status = Annotated[str | None, Query()]
Search = Annotated[str | None, Query()]
Cursor = Annotated[str | None, Query(max_length=512)]
Limit = Annotated[int, Query(ge=1, le=200)]
CoordinationFilter = Annotated[str | None, Query()]


@router.get("/ui", response_class=HTMLResponse)
@router.get("/ui/", response_class=HTMLResponse, include_in_schema=False)
async def ui_list_checkouts(
    request: Request,
    journal: JournalDep,
    status: Status = None,
    q: Search = None,
    cursor: Cursor = None,
    limit: Limit = 50,
    coordination: CoordinationFilter = None,
) -> HTMLResponse:
    """The dashboard: checkouts newest first, with counts per status, filters and search.

    Served at ``/ui/`` too, without a redirect (whose absolute URL a path prefix would break);
    the page's base is relative to whichever path it was opened at.
    """
    context, code = await _list_context(
        journal, status=status, q=q, cursor=cursor, limit=limit, coordination=coordination
    )
    root = "../" if request.url.path.endswith("/") else "./"
    return _render("list.html", code, root=root, **context)


@router.get("/ui/fragments/list", response_class=HTMLResponse)
async def ui_list_fragment(
    journal: JournalDep,
    status: Status = None,
    q: Search = None,
    cursor: Cursor = None,
    limit: Limit = 50,
    coordination: CoordinationFilter = None,
) -> HTMLResponse:
    """The live part of the list page (counts, rows, pager), polled by the page."""
    context, code = await _list_context(
        journal, status=status, q=q, cursor=cursor, limit=limit, coordination=coordination
    )
    return _render("_list_body.html", code, **context)


async def _detail_context(journal: Journal, checkout_id: str) -> dict[str, Any] | None:
    checkout = await queries.read(journal, checkout_id)
    if checkout is None:
        return None
    return {
        "c": checkout,
        "terminal": checkout.status in TERMINAL_STATUSES,
        "tl": present.timeline(checkout),
        "compensated": present.compensated_steps(checkout),
    }


@router.get("/ui/checkouts/{checkout_id}", response_class=HTMLResponse)
async def ui_read_checkout(checkout_id: str, journal: JournalDep) -> HTMLResponse:
    """One checkout: its request, its steps on a timeline, and the operator's actions."""
    context = await _detail_context(journal, checkout_id)
    if context is None:
        return _render("not_found.html", 404, root="../../", checkout_id=checkout_id)
    return _render("detail.html", root="../../", **context)


@router.get("/ui/checkouts/{checkout_id}/fragment", response_class=HTMLResponse)
async def ui_checkout_fragment(checkout_id: str, journal: JournalDep) -> HTMLResponse:
    """The live part of a checkout's page, polled until the checkout is finished."""
    context = await _detail_context(journal, checkout_id)
    if context is None:
        return HTMLResponse("<p>No checkout has this id.</p>", status_code=404)
    return _render("_detail_body.html", **context)


@router.get("/ui/static/{name}")
async def ui_static(name: str, request: Request) -> Response:
    """The dashboard's stylesheet and script (a fixed list: no path ever reaches the disk)."""
    if name not in _ASSETS:
        return Response("Not found", status_code=404, media_type="text/plain")
    data, etag = _asset(name)
    headers = {"ETag": f'"{etag}"', "Cache-Control": "public, max-age=86400"}
    if request.headers.get("if-none-match") == f'"{etag}"':
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=_ASSETS[name], headers=headers)
