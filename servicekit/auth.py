"""Bearer-token authentication shared by the services.

Clients present ``Authorization: Bearer <token>``; a service accepts any token of its configured
list (several, so a token can be rotated without downtime) and answers 401 problem+json
otherwise. Tokens are compared in constant time (``hmac.compare_digest`` against every accepted
token, whether or not one already matched), are ``SecretStr`` so they never reach a log or a
repr, and with no token configured the service is open and says so loudly at start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Callable, Sequence

from fastapi import Request
from fastapi.security import HTTPBearer
from pydantic import SecretStr

from servicekit.problems import ProblemError

log = logging.getLogger("servicekit.auth")


class UnauthorizedError(ProblemError):
    """Missing or wrong credentials."""

    status = 401
    type = "urn:checkout-suite:problem:unauthorized"
    title = "Unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="checkout-suite"'})


def split_secrets(value: SecretStr | None) -> list[SecretStr]:
    """The comma-separated tokens of one setting, each kept secret."""
    if value is None:
        return []
    return [SecretStr(part.strip()) for part in value.get_secret_value().split(",") if part.strip()]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _matches_digest(given: bytes, expected: Sequence[bytes]) -> bool:
    found = False
    for digest in expected:
        found |= hmac.compare_digest(given, digest)
    return found


def matches(presented: str, accepted: Sequence[SecretStr]) -> bool:
    """Whether ``presented`` is one of ``accepted``, in time independent of which (or whether)."""
    return _matches_digest(
        _digest(presented), [_digest(secret.get_secret_value()) for secret in accepted]
    )


def key_id(digest: bytes) -> str:
    """A short, non-reversible name for a token (from its digest), safe for logs and rate limits."""
    return digest.hex()[:12]


class _BearerGuard(HTTPBearer):
    """``HTTPBearer`` (so ``/docs`` shows an "Authorize" button) that also checks the token.

    One dependency instead of a guard depending on the scheme: FastAPI resolves each dependency
    at a cost of its own on every request.
    """

    def __init__(self, accepted: Sequence[SecretStr], *, scheme_name: str, description: str):
        super().__init__(auto_error=False, scheme_name=scheme_name, description=description)
        # Hashed once, not on every request.
        self._expected = [_digest(secret.get_secret_value()) for secret in accepted]

    async def __call__(self, request: Request) -> str | None:  # type: ignore[override]
        if not self._expected:
            return None
        credentials = await super().__call__(request)
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise UnauthorizedError("Send Authorization: Bearer <token>.")
        given = _digest(credentials.credentials)
        if not _matches_digest(given, self._expected):
            raise UnauthorizedError("The bearer token is not valid.")
        request.state.key_id = key_id(given)
        return request.state.key_id  # type: ignore[no-any-return]


def bearer_guard(
    accepted: Sequence[SecretStr], *, scheme_name: str, description: str
) -> Callable[..., object]:
    """A dependency that requires one of ``accepted`` as a bearer token (open when empty).

    It also declares the security scheme, so ``/docs`` shows an "Authorize" button.
    """
    return _BearerGuard(accepted, scheme_name=scheme_name, description=description)


def warn_if_open(service: str, setting: str, accepted: Sequence[SecretStr]) -> None:
    """Say loudly at start-up that a service accepts anyone."""
    if not accepted:
        log.warning(
            "%s is not set: %s accepts requests from anyone. Set it (comma-separated bearer tokens) "
            "anywhere but on a developer's machine.",
            setting,
            service,
        )


def service_token_guard(service: str, token: SecretStr | None) -> Callable[..., object]:
    """The guard of a service called only by the orchestrator (``SERVICE_TOKEN``)."""
    accepted = split_secrets(token)
    warn_if_open(service, "SERVICE_TOKEN", accepted)
    return bearer_guard(
        accepted,
        scheme_name="ServiceToken",
        description="The orchestrator's SERVICE_TOKEN. Every endpoint but the probes, /metrics and the docs requires it.",
    )


def browser_guard(accepted: Sequence[SecretStr], *, realm: str) -> Callable[..., object]:
    """A guard for pages a person opens: HTTP Basic (any user name, a key as the password) or Bearer.

    The browser asks for the key itself and resends it to this origin. Pages guarded this way
    must only read: a browser also sends Basic credentials on cross-site requests, so actions
    (POST) stay behind ``bearer_guard``, whose header a cross-site page cannot set.
    """

    async def require_key(request: Request) -> None:
        if not accepted:
            return
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        presented = ""
        if scheme.lower() == "bearer":
            presented = value.strip()
        elif scheme.lower() == "basic":
            try:
                presented = (
                    base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
                )
            except (ValueError, UnicodeDecodeError):
                presented = ""
        if not presented or not matches(presented, accepted):
            raise BrowserSignInError(realm)

    return require_key


class BrowserSignInError(UnauthorizedError):
    """401 asking the browser for a key (HTTP Basic: any user name, the key as password)."""

    def __init__(self, realm: str) -> None:
        super().__init__("Sign in with an API key as the password (any user name).")
        self.headers = {"WWW-Authenticate": f'Basic realm="{realm}", charset="UTF-8"'}
