"""Probes, OpenAPI documentation, settings and SMTP_URL parsing."""

from __future__ import annotations

import httpx
import pytest

from email_service.delivery import LogMailer, SmtpMailer, SmtpTarget, build_mailer, parse_smtp_url
from email_service.main import create_app
from email_service.settings import Settings


@pytest.mark.anyio
async def test_probes_answer(client: httpx.AsyncClient) -> None:
    """/healthz and /readyz answer ok when the database answers."""
    for path in ("/healthz", "/readyz"):
        response = await client.get(path)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "ok"}


@pytest.mark.anyio
async def test_docs_are_served_offline(client: httpx.AsyncClient) -> None:
    """/docs is an HTML page that loads no asset from a CDN."""
    response = await client.get("/docs")

    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "cdn.jsdelivr.net" not in response.text


@pytest.mark.anyio
async def test_openapi_documents_routes(client: httpx.AsyncClient) -> None:
    """Every email route has a tag, summary and description; POST has an example and problem answers."""
    schema = (await client.get("/openapi.json")).json()

    post = schema["paths"]["/emails"]["post"]
    assert post["tags"] == ["emails"]
    assert {"201", "200", "409", "415", "422", "503"} <= post["responses"].keys()
    assert "application/problem+json" in post["responses"]["503"]["content"]
    body_ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert schema["components"]["schemas"][body_ref.rsplit("/", 1)[1]]["examples"]
    for path in ("/emails", "/emails/{email_id}"):
        for operation in schema["paths"][path].values():
            assert operation["summary"]
            assert operation["description"]
    assert {tag["name"] for tag in schema["tags"]} == {"emails", "health"}


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without environment the service listens on 127.0.0.1:8001, SQLite under data/, no SMTP."""
    for name in ("DATABASE_URL", "HOST", "PORT", "SMTP_URL", "EMAIL_FROM"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()

    assert (settings.host, settings.port) == ("127.0.0.1", 8001)
    assert settings.database_url == "sqlite:///data/email.db"
    assert settings.smtp_url is None


def test_blank_smtp_url_means_log() -> None:
    """SMTP_URL set to an empty string is the same as unset: messages go to the log."""
    settings = Settings(smtp_url="  ")
    mailer = build_mailer(smtp_url=settings.smtp_url, sender=settings.email_from, timeout_s=1)

    assert isinstance(mailer, LogMailer)
    assert mailer.delivered_status == "logged"


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("smtp://127.0.0.1:1025", SmtpTarget("127.0.0.1", 1025)),
        ("smtp://mail.example", SmtpTarget("mail.example", 25)),
        (
            "smtp://user%40x:p%3Ass@mail.example:587?starttls=true",
            SmtpTarget("mail.example", 587, "user@x", "p:ss", start_tls=True),
        ),
        ("smtp://mail.example?starttls=false", SmtpTarget("mail.example", 25, start_tls=False)),
        ("smtps://mail.example", SmtpTarget("mail.example", 465, use_tls=True, start_tls=False)),
    ],
)
def test_smtp_url_is_parsed(url: str, target: SmtpTarget) -> None:
    """SMTP_URL gives host, port, credentials and the TLS mode."""
    assert parse_smtp_url(url) == target


@pytest.mark.parametrize(
    "url", ["http://mail.example", "smtp://", "smtp://mail.example?starttls=maybe"]
)
def test_malformed_smtp_url_stops_the_app(url: str) -> None:
    """A malformed SMTP_URL fails when the app is built, not at the first email."""
    with pytest.raises(ValueError, match="SMTP_URL"):
        create_app(Settings(smtp_url=url))


def test_smtp_url_selects_smtp_delivery() -> None:
    """With SMTP_URL messages are sent and count as "sent"."""
    mailer = build_mailer(smtp_url="smtp://127.0.0.1:1025", sender="a@b.example", timeout_s=2)

    assert isinstance(mailer, SmtpMailer)
    assert mailer.delivered_status == "sent"
