"""Summarise a py-spy ``--format raw`` profile (collapsed stacks): where the CPU goes.

``python -m bench.profile_summary profile.txt`` prints three tables:

- by component, *inclusive*: the share of samples with at least one frame of that component on
  the stack (a sample counts for several: the journal's SQLAlchemy frames sit under our store's);
- by component, *exclusive*: each sample charged to the component of its innermost known frame;
- the top functions by inclusive and by self share.

py-spy leaves out idle threads, so samples are CPU (of every thread, aiosqlite's included).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench import emit

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# (component, path fragments), most specific first; matched against py-spy's short file names.
COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("orchestrator: journal (journal/)", ("orchestrator/journal/",)),
    ("orchestrator: read view (views.py)", ("orchestrator/views.py",)),
    ("orchestrator: saga runner", ("orchestrator/saga/",)),
    (
        "orchestrator: clients.py, service_http.py",
        ("orchestrator/clients.py", "orchestrator/service_http.py"),
    ),
    ("orchestrator: api.py", ("orchestrator/api.py",)),
    (
        "services: warehouse, rewards, email",
        ("warehouse_service/", "rewards_service/", "email_service/"),
    ),
    ("servicekit: database engine (db/)", ("servicekit/db/",)),
    ("servicekit (bodyguard, problems, idempotency)", ("servicekit/",)),
    ("SQLAlchemy ORM", ("sqlalchemy/orm/",)),
    (
        "SQLAlchemy asyncio glue",
        ("sqlalchemy/ext/asyncio", "sqlalchemy/util/_concurrency", "greenlet"),
    ),
    ("SQLAlchemy core/engine/sql", ("sqlalchemy/",)),
    ("sqlmodel", ("sqlmodel/",)),
    ("aiosqlite (thread hops)", ("aiosqlite/",)),
    ("sqlite3 driver", ("sqlite3/",)),
    ("psycopg", ("psycopg",)),
    ("aiohttp / yarl / multidict", ("aiohttp/", "yarl/", "multidict/")),
    ("httpx", ("httpx/",)),
    ("httpcore", ("httpcore/",)),
    ("h11", ("h11/",)),
    ("anyio", ("anyio/",)),
    ("sniffio", ("sniffio/",)),
    ("stamina / tenacity (retry)", ("stamina/", "tenacity/")),
    ("pydantic", ("pydantic/", "pydantic_core/")),
    ("fastapi", ("fastapi/",)),
    ("starlette", ("starlette/",)),
    ("uvicorn / httptools", ("uvicorn/", "httptools/")),
    ("json / orjson", ("json/", "orjson")),
    ("jinja2 (email templates)", ("jinja2/", "markupsafe/")),
    ("logging / structlog", ("logging/", "structlog/")),
    ("opentelemetry / prometheus", ("opentelemetry/", "prometheus")),
    (
        "uuid / datetime / decimal / email",
        ("uuid.py", "datetime.py", "_pydecimal", "email/", "email_validator/"),
    ),
    (
        "asyncio / uvloop (event loop)",
        ("asyncio/", "uvloop/", "concurrent/futures", "threading.py", "queue.py", "selectors.py"),
    ),
]


# What the process was doing, from the stack as a whole (first rule that matches wins). Stacks
# that start inside SQLAlchemy's greenlet (no caller frames) are journal work of the main thread.
ACTIVITIES: list[tuple[str, tuple[str, ...]]] = [
    ("journal: aiosqlite worker threads", ("aiosqlite/core.py:_connection_worker_thread",)),
    (
        "journal: its SQL (the event loop and the worker thread), views.py reads",
        (
            "orchestrator/journal/",
            "servicekit/db/",
            "orchestrator/views.py",
            "sqlalchemy/",
            "aiosqlite/",
        ),
    ),
    (
        "service calls: aiohttp (clients.py, service_http.py)",
        (
            "orchestrator/clients.py",
            "orchestrator/service_http.py",
            "aiohttp/",
            "yarl/",
            "multidict/",
            "httpx/",
            "httpcore/",
            "h11/",
        ),
    ),
    ("saga runner and retry (stamina)", ("orchestrator/saga/", "stamina/", "tenacity/")),
]
TELEMETRY = "telemetry: opentelemetry / prometheus (own frames)"
SERVING = (
    "serving POST /checkouts: uvicorn, starlette, fastapi, pydantic, servicekit, api.py",
    ("uvicorn/", "starlette/", "fastapi/", "pydantic", "servicekit/", "orchestrator/api.py"),
)


def activity_of(frames: list[tuple[str, str]]) -> str:
    keys = [f"{file}:{func}" for func, file in frames]
    for name, fragments in ACTIVITIES:
        if any(fragment in key for key in keys for fragment in fragments):
            return name
    innermost = next((c for c in (component_of(file) for _, file in reversed(frames)) if c), None)
    if innermost == "opentelemetry / prometheus":
        return TELEMETRY
    if any(fragment in key for key in keys for fragment in SERVING[1]):
        return SERVING[0]
    return "event loop and other"


def component_of(file: str) -> str | None:
    for name, fragments in COMPONENTS:
        if any(fragment in file for fragment in fragments):
            return name
    return None


def parse(text: str) -> list[tuple[list[tuple[str, str]], int]]:
    """Collapsed stacks as ([(function, file), ...] root first, sample count)."""
    stacks = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = []
        for raw in stack.split(";"):
            match = _FRAME.match(raw)
            if match is None:
                continue  # "process ..." or "thread ..." pseudo-frames
            frames.append((match["func"], match["file"]))
        stacks.append((frames, int(count)))
    return stacks


def summarize(text: str, top: int = 25) -> dict[str, Any]:
    stacks = parse(text)
    total = sum(n for _, n in stacks) or 1
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    functions_incl: Counter[str] = Counter()
    functions_self: Counter[str] = Counter()
    activities: Counter[str] = Counter()
    for frames, n in stacks:
        activities[activity_of(frames)] += n
        seen_components = set()
        seen_functions = set()
        innermost = None
        for func, file in frames:
            component = component_of(file)
            if component is not None:
                seen_components.add(component)
                innermost = component
            seen_functions.add(f"{func} ({file})")
        for component in seen_components:
            inclusive[component] += n
        exclusive[innermost or "other (native / unknown)"] += n
        for function in seen_functions:
            functions_incl[function] += n
        if frames:
            func, file = frames[-1]
            functions_self[f"{func} ({file})"] += n
    pct = lambda c: [(k, 100 * v / total) for k, v in c.most_common(top)]  # noqa: E731
    return {
        "samples": total,
        "activities": pct(activities),
        "inclusive": pct(inclusive),
        "exclusive": pct(exclusive),
        "functions_inclusive": pct(functions_incl),
        "functions_self": pct(functions_self),
    }


def render(summary: dict[str, Any], *, markdown: bool = False, top: int = 20) -> str:
    sections = [
        ("activity (each sample once, first matching rule)", summary.get("activities", [])),
        ("component, inclusive (any frame on the stack)", summary["inclusive"]),
        ("component, exclusive (innermost known frame)", summary["exclusive"]),
        ("function, inclusive", summary["functions_inclusive"][:top]),
        ("function, self", summary["functions_self"][:top]),
    ]
    out = [f"{summary['samples']} samples"]
    for title, items in sections:
        out.append("")
        if markdown:
            out += [f"| {title} | % of CPU samples |", "|---|---|"]
            out += [f"| `{name}` | {share:.1f} |" for name, share in items]
        else:
            out.append(title)
            out += [f"  {share:5.1f}%  {name}" for name, share in items]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    if not args:
        raise SystemExit("usage: python -m bench.profile_summary PROFILE.txt [--markdown]")
    emit(render(summarize(Path(args[0]).read_text()), markdown="--markdown" in args))


if __name__ == "__main__":
    main()
