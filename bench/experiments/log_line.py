"""What one JSON log line costs: ``python -m bench.experiments.log_line [--n 20000]``.

The saga's ``checkout completed`` event rendered by the suite's JSON formatter
(``servicekit.logs.log_formatter``) into memory, CPU µs per line, and the same line with the
formatter's earlier choices for comparison: the stdlib ``json`` encoder instead of orjson, and
the email/password masks run on every string value instead of only on values holding an ``@``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import time
from typing import Any

import structlog

from bench import emit
from servicekit import logs

EVENT = {
    "checkout_id": "5354ff1a-8af7-4302-a959-8b1fdc2845de",
    "outcome": "completed",
    "steps": "warehouse=succeeded/1 rewards=succeeded/1 email=succeeded/1",
    "duration_ms": 12.3,
}


def _mask_always(_: Any, __: str, event_dict: Any) -> Any:
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = logs._EMAIL.sub(r"\1***@\2", logs._URL_PASSWORD.sub(r"\1***@", value))
    return event_dict


def earlier_formatter() -> logging.Formatter:
    """The JSON formatter before: stdlib json, masks on every value."""
    return structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _mask_always,
            structlog.processors.JSONRenderer(serializer=json.dumps),
        ],
        foreign_pre_chain=logs._shared_processors(),
    )


def per_line_us(formatter: logging.Formatter, n: int) -> float:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    try:
        log = logs.get_logger("bench.log_line")
        started = time.process_time()
        for _ in range(n):
            log.info("checkout completed", **EVENT)
        spent = time.process_time() - started
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
    assert re.search(r'"event":\s?"checkout completed"', stream.getvalue().splitlines()[0])
    return spent / n * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.experiments.log_line")
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args(argv)
    for _ in range(2):
        now = per_line_us(logs.log_formatter(json=True), args.n)
        before = per_line_us(earlier_formatter(), args.n)
        emit(f"JSON line: {now:.1f} µs now (orjson, masks on '@' only), {before:.1f} µs before")


if __name__ == "__main__":
    main()
