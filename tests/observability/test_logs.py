"""Structured logs: JSON lines naming checkout, step, attempt and outcome; customer emails masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from servicekit.logs import configure_logging, get_logger, log_formatter, mask
from tests.faults import faulty_suite
from tests.observability.conftest import metric, scrape
from tests.suite import checkout_body
from tests.support import wait_finished


@pytest.fixture
def json_lines(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Everything logged at INFO and above, as the suite's JSON handler renders it."""
    caplog.set_level(logging.INFO)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(log_formatter(json=True))
    logging.getLogger().addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logging.getLogger().removeHandler(handler)


def saga_events(lines: list[dict[str, Any]], checkout_id: str) -> list[tuple[Any, ...]]:
    """(event, step, attempt, outcome) of the checkout's saga lines, in order."""
    return [
        (line["event"], line.get("step"), line.get("attempt"), line["outcome"])
        for line in lines
        if line["logger"] == "orchestrator.saga" and line["checkout_id"] == checkout_id
    ]


@pytest.mark.anyio
async def test_at_info_a_checkout_that_goes_well_is_one_line_naming_its_steps(
    database_url: Callable[[str], str], json_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    """The default level: `checkout completed` with each step's status/attempts and the duration."""
    async with faulty_suite(database_url) as (suite, _):
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()
    assert checkout["status"] == "completed"

    lines = json_lines()
    assert saga_events(lines, checkout["id"]) == [("checkout completed", None, None, "completed")]
    [completed] = [line for line in lines if line["event"] == "checkout completed"]
    assert completed["level"] == "info"
    assert completed["steps"] == "warehouse=succeeded/1 rewards=succeeded/1 email=succeeded/1"
    assert 0 < completed["duration_ms"] < 10_000
    assert completed["request_id"]


@pytest.mark.anyio
async def test_at_info_a_retry_is_still_seen(
    database_url: Callable[[str], str], json_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    """A 503 then a success: the failed attempt (warning) and the retry, then completed with 2 attempts."""
    async with faulty_suite(database_url) as (suite, faults):
        faults["warehouse"].add("POST", "/reservations", "status", status=503)
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()
    assert checkout["status"] == "completed"

    lines = json_lines()
    assert saga_events(lines, checkout["id"]) == [
        ("step attempt failed", "warehouse", 1, "transient"),
        ("step retrying", "warehouse", 2, "retrying"),
        ("checkout completed", None, None, "completed"),
    ]
    failed = next(line for line in lines if line["event"] == "step attempt failed")
    assert failed["level"] == "warning"
    assert failed["http_status"] == 503
    assert failed["request_id"]
    assert failed["timestamp"].endswith("Z")
    completed = next(line for line in lines if line["event"] == "checkout completed")
    assert completed["steps"].startswith("warehouse=succeeded/2 ")


@pytest.mark.anyio
async def test_at_debug_every_step_attempt_and_retry_is_a_json_line_with_its_outcome(
    database_url: Callable[[str], str],
    json_lines: Callable[[], list[dict[str, Any]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """LOG_LEVEL=debug: started, failed (transient), retrying, succeeded for each step; completed."""
    caplog.set_level(logging.DEBUG)
    async with faulty_suite(database_url) as (suite, faults):
        faults["warehouse"].add("POST", "/reservations", "status", status=503)
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()
    assert checkout["status"] == "completed"

    assert saga_events(json_lines(), checkout["id"]) == [
        ("step attempt started", "warehouse", 1, "started"),
        ("step attempt failed", "warehouse", 1, "transient"),
        ("step retrying", "warehouse", 2, "retrying"),
        ("step attempt succeeded", "warehouse", 2, "succeeded"),
        ("step attempt started", "rewards", 1, "started"),
        ("step attempt succeeded", "rewards", 1, "succeeded"),
        ("step attempt started", "email", 1, "started"),
        ("step attempt succeeded", "email", 1, "succeeded"),
        ("checkout completed", None, None, "completed"),
    ]


@pytest.mark.anyio
async def test_a_refusal_logs_the_failure_and_each_compensation(
    database_url: Callable[[str], str], json_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    """A refusal by rewards, at INFO: the failure, failing, the warehouse compensated, failed."""
    async with faulty_suite(database_url) as (suite, faults):
        faults["rewards"].add("POST", "/accounts/*/transactions", "status", status=422)
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()
    assert checkout["status"] == "failed"

    lines = json_lines()
    assert saga_events(lines, checkout["id"]) == [
        ("step attempt failed", "rewards", 1, "refused"),
        ("checkout failing", "rewards", 1, "failing"),
        ("step compensated", "warehouse", 1, "compensated"),
        ("checkout failed", None, None, "failed"),
    ]
    failed = next(line for line in lines if line["event"] == "checkout failed")
    assert failed["steps"] == "warehouse=compensated/1 rewards=failed/1 email=skipped/0"


@pytest.mark.anyio
async def test_a_parked_checkout_and_its_recovery_are_logged_and_counted(
    database_url: Callable[[str], str], json_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    """A step out of attempts parks the checkout; the recovery loop resumes and completes it."""
    settings = {"step_max_attempts": 1, "resume_delay_s": 0, "recovery_interval_s": 0.05}
    async with faulty_suite(database_url, **settings) as (suite, faults):
        faults["warehouse"].add("POST", "/reservations", "status", status=503)
        placed = await suite.orchestrator.post(
            "/checkouts", json=checkout_body(), headers={"Prefer": "respond-async"}
        )
        checkout = await wait_finished(suite.orchestrator, f"/checkouts/{placed.json()['id']}")
        text = await scrape(suite.orchestrator)
    assert checkout["status"] == "completed"

    lines = json_lines()
    events = saga_events(lines, checkout["id"])
    assert events[:2] == [
        ("step attempt failed", "warehouse", 1, "transient"),
        ("checkout parked", "warehouse", 1, "parked"),
    ]
    assert events[-1] == ("checkout completed", None, None, "completed")
    resumed = [
        line
        for line in lines
        if line["event"] == "checkout resumed" and line["checkout_id"] == checkout["id"]
    ]
    assert resumed
    assert resumed[0]["outcome"] == "recovered"
    assert resumed[0]["logger"] == "orchestrator.supervisor"
    assert metric(text, "checkout_parked_total") == 1
    assert metric(text, "checkout_finished_total", status="completed") == 1


@pytest.mark.anyio
async def test_customer_emails_are_masked_in_every_log_line(
    database_url: Callable[[str], str], json_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    """The email service logs the message it sends, with the address masked as a***@example.com."""
    async with faulty_suite(database_url) as (suite, _):
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()
    assert checkout["status"] == "completed"

    lines = json_lines()
    delivered = [line for line in lines if line["logger"] == "email_service.delivery"]
    assert len(delivered) == 1
    assert " to a***@example.com: " in delivered[0]["event"]
    assert delivered[0]["request_id"]
    assert "ada@example.com" not in json.dumps(lines)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("ada@example.com", "a***@example.com"),
        ("to: Grace.Hopper+orders@mail.example.co.uk.", "to: G***@mail.example.co.uk."),
        ("smtp://orders:s3cret@mailpit:1025", "smtp://orders:***@mailpit:1025"),
        ("a***@example.com", "a***@example.com"),
        ("no address @ here", "no address @ here"),
    ],
)
def test_mask_hides_addresses_and_url_passwords(text: str, masked: str) -> None:
    """Email local parts and URL passwords are masked; masking twice changes nothing."""
    assert mask(text) == masked


def test_console_format_is_key_value_lines(caplog: pytest.LogCaptureFixture) -> None:
    """On a terminal each event is one readable line: the event, then key=value pairs."""
    caplog.set_level(logging.INFO)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(log_formatter(json=False))
    logger = logging.getLogger("tests.console")
    logger.addHandler(handler)
    try:
        get_logger("tests.console").info("checkout completed", checkout_id="c-1", outcome="done")
        logger.info("plain %s for ada@example.com", "record")
    finally:
        logger.removeHandler(handler)
    first, second = stream.getvalue().splitlines()
    assert "checkout completed" in first
    assert "checkout_id=c-1" in first
    assert "outcome=done" in first
    assert "plain record for a***@example.com" in second


def test_configure_logging_leaves_a_host_config_alone_and_installs_one_handler() -> None:
    """Under a host's handlers it does nothing; forced, calling it twice leaves one handler of ours."""
    root = logging.getLogger()
    before_handlers, before_level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    assert before_handlers, "pytest's own capture handlers are on the root logger"
    assert configure_logging() is None
    assert root.handlers == before_handlers
    stream = io.StringIO()
    try:
        configure_logging(stream=stream, force=True)
        handler = configure_logging(stream=stream, force=True)
        assert handler is not None
        assert [h for h in root.handlers if h not in before_handlers] == [handler]
        logging.getLogger("tests.configured").info("hello")
        assert json.loads(stream.getvalue())["event"] == "hello", "not a terminal: JSON"
    finally:
        for extra in [h for h in root.handlers if h not in before_handlers]:
            root.removeHandler(extra)
        root.setLevel(before_level)
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
