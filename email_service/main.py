"""Application factory of the email service: ``uvicorn email_service.main:create_app --factory``."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from email_service.api import router
from email_service.delivery import Mailer, build_mailer
from email_service.migrations import HISTORY
from email_service.reactions import reactions_with
from email_service.settings import Settings
from servicekit.logs import configure_logging
from servicekit.service import service_app


def _show_service_log() -> None:
    """Make the service's INFO log (where messages go without SMTP_URL) visible under uvicorn.

    uvicorn configures only its own loggers, so without this an INFO record of ``email_service``
    would be dropped. Left alone when the host application configured logging itself.
    """
    logger = logging.getLogger("email_service")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)


def create_app(settings: Settings | None = None, *, mailer: Mailer | None = None) -> FastAPI:
    """Build the email app; settings come from the environment unless given.

    ``mailer`` replaces the one ``SMTP_URL`` selects (tests use it to hold a delivery open).
    """
    settings = settings or Settings()
    # First, so the service's log goes to the suite's structured handler, not a handler of its own.
    configure_logging()
    _show_service_log()
    # Built now, so a malformed SMTP_URL or EMAIL_FROM stops the process at start.
    chosen = mailer or build_mailer(
        smtp_url=settings.smtp_url, sender=settings.email_from, timeout_s=settings.smtp_timeout_s
    )

    return service_app(
        service="email",
        title="Email service",
        description="An outbox of order emails: each is rendered from a template, recorded, then "
        "sent over SMTP (or written to the log without SMTP_URL). At most one message per "
        "checkout and template, so a confirmation is never sent twice.",
        tags=[{"name": "emails", "description": "Messages of the outbox and their delivery."}],
        router=router,
        service_token=settings.service_token,
        coordination=settings,
        reactions=reactions_with(chosen),
        database_url=settings.database_url,
        history=HISTORY,
        state={"mailer": chosen},
    )
