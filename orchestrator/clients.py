"""Calls to the three services over one shared HTTP client (``service_http``), and what their failures mean.

Failure taxonomy (what the saga runner decides from):

- ``StepRefusedError`` — the service answered a 4xx other than 408/429: a business refusal
  (out of stock, unknown sku). Retrying would get the same answer; not retryable.
- ``StepTransientError`` — the call may succeed if repeated: the connection was refused or
  dropped, the call timed out, or the service answered 408, 429, 5xx, 409 with
  ``Retry-After`` (the same request is being handled right now), or 401 (the orchestrator's
  ``SERVICE_TOKEN`` is wrong: fixing the configuration lets the parked checkout finish). ``retry_after`` carries
  a ``Retry-After`` the service sent. ``ambiguous`` is true when the request may have reached
  the service and been applied (a read timeout, a dropped connection after sending, a 5xx):
  the runner repeats it with the same Idempotency-Key, or compensates it by voiding the checkout.

Every mutating call carries ``Idempotency-Key: {checkout_id}:{step}:{action}``, so a repeat,
whether a retry or a replay after a crash, is applied at most once by the service.
The service models below declare only the fields the orchestrator reads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, ValidationError

from orchestrator.service_http import Answer, CallFailed, ServiceHTTP
from orchestrator.settings import Settings


class StepError(Exception):
    """A downstream call that did not succeed."""

    retryable = False

    def __init__(
        self, detail: str, *, http_status: int | None = None, problem: dict[str, Any] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.http_status = http_status
        self.problem = problem or {}

    def as_json(self) -> dict[str, Any]:
        """What the journal records of this error."""
        return {
            "kind": type(self).__name__,
            "retryable": self.retryable,
            "detail": self.detail,
            "http_status": self.http_status,
            "problem_type": self.problem.get("type"),
        }


class StepRefusedError(StepError):
    """The service refused for good (a 4xx): not retried."""


class StepTransientError(StepError):
    """The call may succeed if repeated: retried with backoff."""

    retryable = True

    def __init__(
        self,
        detail: str,
        *,
        http_status: int | None = None,
        problem: dict[str, Any] | None = None,
        ambiguous: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail, http_status=http_status, problem=problem)
        self.ambiguous = ambiguous
        self.retry_after = retry_after

    def as_json(self) -> dict[str, Any]:
        return super().as_json() | {"ambiguous": self.ambiguous, "retry_after": self.retry_after}


class Reservation(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    status: str


class PointTransaction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    points: int


class Reversal(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    reverses_id: str


class CheckoutVoid(BaseModel):
    model_config = ConfigDict(extra="ignore")
    reversals: list[Reversal]


class EmailMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    status: str


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _problem(answer: Answer) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class ServiceClients:
    """The orchestrator's view of warehouse, rewards and email."""

    def __init__(self, http: ServiceHTTP, settings: Settings) -> None:
        self._http = http
        self.warehouse_url = settings.warehouse_url.rstrip("/")
        self.rewards_url = settings.rewards_url.rstrip("/")
        self.email_url = settings.email_url.rstrip("/")

    async def _call(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        key: str | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        try:
            answer = await self._http.request(method, url, json=json, key=key, params=params)
        except CallFailed as exc:
            # Not sent: nothing can have been applied. Sent without an answer: it may have been.
            raise StepTransientError(f"{exc.name} calling {url}", ambiguous=exc.sent) from exc
        status = answer.status
        # A 409 with Retry-After is "busy with this very request" (a twin in flight), not a refusal.
        busy = status == 409 and "Retry-After" in answer.headers
        # A 401 is a wrong SERVICE_TOKEN: a configuration error, not the checkout's fault. Retrying
        # (and parking) lets the checkout finish once an operator fixes the token.
        if status in (401, 408, 429) or status >= 500 or busy:
            raise StepTransientError(
                f"{method} {url} answered {status}",
                http_status=status,
                problem=_problem(answer),
                ambiguous=status >= 500 or busy,
                retry_after=_retry_after_seconds(answer.headers.get("Retry-After")),
            )
        if status >= 400:
            problem = _problem(answer)
            raise StepRefusedError(
                str(problem.get("detail") or f"{method} {url} answered {status}"),
                http_status=status,
                problem=problem,
            )
        try:
            body = answer.json()
        except ValueError as exc:
            raise StepTransientError(
                f"{method} {url} answered {status} without JSON", http_status=status
            ) from exc
        return status, body

    @staticmethod
    def _parse(model: type[BaseModel], body: Any, what: str) -> Any:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise StepTransientError(f"{what}: unexpected answer", ambiguous=True) from exc

    async def reserve(
        self, *, checkout_id: str, items: list[dict[str, Any]], key: str
    ) -> tuple[int, Reservation]:
        """Hold the checkout's stock."""
        body = {
            "checkout_id": checkout_id,
            "items": [{"sku": i["sku"], "quantity": i["quantity"]} for i in items],
        }
        status, answer = await self._call(
            "POST", f"{self.warehouse_url}/reservations", json=body, key=key
        )
        return status, self._parse(Reservation, answer, "warehouse reserve")

    async def void_reservation(self, *, checkout_id: str, key: str) -> tuple[int, Reservation]:
        """Release the checkout's reservation, or bar it from reserving later (compensation)."""
        url = f"{self.warehouse_url}/checkouts/{quote(checkout_id, safe='')}/void"
        status, answer = await self._call("POST", url, key=key)
        return status, self._parse(Reservation, answer, "warehouse void")

    async def credit(
        self, *, customer_id: str, checkout_id: str, points: int, key: str
    ) -> tuple[int, PointTransaction]:
        """Credit the checkout's points."""
        url = f"{self.rewards_url}/accounts/{quote(customer_id, safe='')}/transactions"
        status, answer = await self._call(
            "POST", url, json={"checkout_id": checkout_id, "points": points}, key=key
        )
        return status, self._parse(PointTransaction, answer, "rewards credit")

    async def void_credit(self, *, checkout_id: str, key: str) -> tuple[int, CheckoutVoid]:
        """Reverse the checkout's credit, or bar it from being credited later (compensation)."""
        url = f"{self.rewards_url}/checkouts/{quote(checkout_id, safe='')}/void"
        status, answer = await self._call("POST", url, key=key)
        return status, self._parse(CheckoutVoid, answer, "rewards void")

    async def send_email(
        self, *, to: str, template: str, checkout_id: str, context: dict[str, Any], key: str
    ) -> tuple[int, EmailMessage]:
        """Send one message from a template."""
        body = {"to": to, "template": template, "checkout_id": checkout_id, "context": context}
        status, answer = await self._call("POST", f"{self.email_url}/emails", json=body, key=key)
        return status, self._parse(EmailMessage, answer, "email send")

    async def find_email(self, *, checkout_id: str, template: str) -> EmailMessage | None:
        """The checkout's message of ``template``, if email recorded one."""
        _, answer = await self._call(
            "GET", f"{self.email_url}/emails", params={"checkout_id": checkout_id}
        )
        found = [m for m in answer.get("items") or [] if m.get("template") == template]
        return self._parse(EmailMessage, found[0], "email find") if found else None
