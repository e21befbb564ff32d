"""Delivery of rendered messages: over SMTP (``SMTP_URL`` set) or to the log (unset).

Failure taxonomy: anything that keeps the mail server from accepting the message (unreachable,
timeout, TLS or authentication failure, a 4xx/5xx reply) is a ``DeliveryError``; the message stays
in the outbox as ``failed`` and the caller is told to retry (503 + Retry-After). Each message has a
stable ``Message-ID`` derived from its id, so a receiver can recognise the rare duplicate of an
attempt whose outcome was lost (the server accepted it, then this process died before recording it).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Literal, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
import anyio

from email_service.models import utcnow

logger = logging.getLogger("email_service.delivery")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class DeliveryError(Exception):
    """The mail server did not accept the message."""


@dataclass(frozen=True)
class Outgoing:
    """A rendered message ready for delivery."""

    id: uuid.UUID
    to: str
    subject: str
    body: str


class Mailer(Protocol):
    """Delivers messages; ``delivered_status`` is the outbox status a success leaves."""

    @property
    def delivered_status(self) -> Literal["sent", "logged"]: ...

    @property
    def timeout_s(self) -> float: ...

    async def deliver(self, message: Outgoing) -> None:
        """Deliver ``message`` or raise ``DeliveryError``."""
        ...


def _domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    return address.rpartition("@")[2] or "localhost"


def to_mime(message: Outgoing, *, sender: str) -> EmailMessage:
    """The RFC 5322 form of ``message``, with a stable Message-ID."""
    mime = EmailMessage()
    mime["From"] = sender
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime["Date"] = format_datetime(utcnow())
    mime["Message-ID"] = f"<{message.id}@{_domain(sender)}>"
    mime.set_content(message.body)
    return mime


@dataclass(frozen=True)
class LogMailer:
    """Without SMTP_URL: messages are written to the log, and count as delivered ("logged")."""

    timeout_s: float = 1.0

    @property
    def delivered_status(self) -> Literal["sent", "logged"]:
        return "logged"

    async def deliver(self, message: Outgoing) -> None:
        """Write the message to the ``email_service.delivery`` log."""
        logger.info("email %s to %s: %s\n%s", message.id, message.to, message.subject, message.body)


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to reach the mail server."""

    hostname: str
    port: int
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    # None: STARTTLS if the server offers it (aiosmtplib's default); True: required; False: never.
    start_tls: bool | None = None


def parse_smtp_url(url: str) -> SmtpTarget:
    """``smtp://[user:pass@]host[:port][?starttls=true|false]`` or ``smtps://…`` (implicit TLS)."""
    parts = urlsplit(url)
    if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
        raise ValueError(f"SMTP_URL must look like smtp://host:port or smtps://host, not {url!r}")
    use_tls = parts.scheme == "smtps"
    start_tls: bool | None = None
    flags = parse_qs(parts.query).get("starttls")
    if flags:
        flag = flags[-1].lower()
        if flag not in _TRUE | _FALSE:
            raise ValueError(f"SMTP_URL starttls must be true or false, not {flags[-1]!r}")
        start_tls = flag in _TRUE
    if use_tls:
        start_tls = False
    default_port = 465 if use_tls else (587 if start_tls else 25)
    return SmtpTarget(
        hostname=parts.hostname,
        port=parts.port or default_port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=use_tls,
        start_tls=start_tls,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


@dataclass(frozen=True)
class SmtpMailer:
    """Sends messages with aiosmtplib, one connection per message."""

    target: SmtpTarget
    sender: str
    timeout_s: float

    @property
    def delivered_status(self) -> Literal["sent", "logged"]:
        return "sent"

    async def deliver(self, message: Outgoing) -> None:
        """Hand ``message`` to the mail server within ``timeout_s``, or raise ``DeliveryError``."""
        mime = to_mime(message, sender=self.sender)
        try:
            # aiosmtplib's timeout is per operation; fail_after bounds the whole exchange.
            with anyio.fail_after(self.timeout_s):
                await aiosmtplib.send(
                    mime,
                    hostname=self.target.hostname,
                    port=self.target.port,
                    username=self.target.username,
                    password=self.target.password,
                    use_tls=self.target.use_tls,
                    start_tls=self.target.start_tls,
                    timeout=self.timeout_s,
                )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(_describe(exc)) from exc
        logger.info("email %s sent to %s: %s", message.id, message.to, message.subject)


def build_mailer(*, smtp_url: str | None, sender: str, timeout_s: float) -> Mailer:
    """The mailer the settings ask for; raises ``ValueError`` for a malformed SMTP_URL or sender."""
    if "@" not in parseaddr(sender)[1]:
        raise ValueError(f"EMAIL_FROM must contain an address, not {sender!r}")
    if smtp_url is None:
        return LogMailer()
    return SmtpMailer(parse_smtp_url(smtp_url), sender=sender, timeout_s=timeout_s)
