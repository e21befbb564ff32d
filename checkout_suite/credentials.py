"""The credentials ``up`` runs the suite with, and ``demo`` calls it with, on a developer's machine."""

from __future__ import annotations

import os

# The key `up` gives clients when API_KEYS is not set: for a developer's machine only.
DEV_API_KEY = "dev-checkout-key"
# Likewise the token the orchestrator presents to the services (and a developer to read them).
DEV_SERVICE_TOKEN = "dev-service-token"


def credentials() -> tuple[str, str]:
    """The client API key and the service token `up` runs with (from the environment if set)."""
    api_key = os.environ.get("API_KEYS", "").split(",")[0].strip() or DEV_API_KEY
    service_token = os.environ.get("SERVICE_TOKEN", "").split(",")[0].strip() or DEV_SERVICE_TOKEN
    return api_key, service_token
