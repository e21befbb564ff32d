"""Settings every service called by the orchestrator reads: where it listens, who may call it,
and how the checkout is coordinated (``COORDINATION``, ``BROKER_URL``, ``EVENTS_PREFIX``)."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from servicekit.events.runtime import CoordinationSettings


class ServiceSettings(CoordinationSettings):
    """A service's environment; each service adds its own ``database_url`` and ``port`` defaults."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str
    host: str = "127.0.0.1"
    port: int
    # Bearer tokens the orchestrator must present (comma-separated to rotate); unset: open.
    service_token: SecretStr | None = None
