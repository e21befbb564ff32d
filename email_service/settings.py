"""Settings of the email service, read from its own environment."""

from pydantic import Field, field_validator

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Environment variables of the email process."""

    database_url: str = "sqlite:///data/email.db"
    port: int = 8001
    # Unset: messages are recorded and written to the log instead of being sent.
    # Set: smtp://[user:pass@]host[:port][?starttls=true|false] or smtps://… (implicit TLS).
    smtp_url: str | None = None
    email_from: str = "Checkout Suite <orders@checkout.example>"
    # Bounds a whole delivery (connect to QUIT). Below the orchestrator's 5 s STEP_TIMEOUT_S,
    # so a dead mail server is answered with 503 + Retry-After rather than a caller timeout.
    smtp_timeout_s: float = Field(default=4.0, gt=0, le=300)

    @field_validator("smtp_url")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return value.strip() or None
