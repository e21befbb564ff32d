"""Settings of the orchestrator, read from its own environment."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from orchestrator.saga.plan import DEFAULT_PLAN, Plan, PlanError, parse_plan
from servicekit.events.runtime import CoordinationSettings

MIN_STEP_TIMEOUT_S = 2.0


class Settings(CoordinationSettings):
    """Environment variables of the orchestrator process (and ``COORDINATION``, ``BROKER_URL``,
    ``EVENTS_PREFIX``, the same on all four services)."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = "sqlite:///data/orchestrator.db"
    host: str = "127.0.0.1"
    port: int = 8000
    email_url: str = "http://127.0.0.1:8001"
    warehouse_url: str = "http://127.0.0.1:8002"
    rewards_url: str = "http://127.0.0.1:8003"
    # Groups in sequence separated by ",", steps of a group run at once joined by "+"
    # (orchestrator/saga/plan.py: the kinds and the rules a plan must keep).
    checkout_steps: str = DEFAULT_PLAN
    # Bearer keys clients must present (comma-separated, so a key can be rotated); unset: open.
    api_keys: SecretStr | None = None
    # Sent to the services as a bearer token (a comma-separated list: the first is sent, for rotation).
    service_token: SecretStr | None = None
    # Per client (API key, or address when open) on POST /checkouts; "" turns it off. The default
    # is about three times what one replica serves at best (~650 checkouts/s, BENCHMARKS.md), so
    # a shop's front end, one client, is never capped by one replica, while a runaway client's
    # flood past it is answered with cheap 429s instead of queueing journal writes.
    rate_limit: str = "2000/second"
    rate_limit_storage_url: str = "memory://"
    # Per HTTP call: connecting (with any wait for a pooled connection), then each wait for the
    # answer's bytes; values below 2 s are raised to 2 s.
    step_timeout_s: float = 5.0
    checkout_sync_deadline_s: float = Field(default=30.0, ge=0)
    # Retries of transient failures (connect errors, timeouts, 5xx, 429).
    step_max_attempts: int = Field(default=5, ge=1)
    step_deadline_s: float = Field(default=60.0, gt=0)
    retry_initial_delay_s: float = Field(default=0.2, ge=0)
    retry_max_delay_s: float = Field(default=10.0, ge=0)
    retry_jitter_s: float = Field(default=0.2, ge=0)
    # A checkout whose step keeps failing transiently is parked and resumed RESUME_DELAY_S later,
    # until CHECKOUT_DEADLINE_S after it was placed (or last retried); then it fails and compensates.
    checkout_deadline_s: float = Field(default=900.0, gt=0)
    resume_delay_s: float = Field(default=30.0, ge=0)
    # A replica owns a checkout while its lease lasts; a dead replica's checkouts are taken over.
    lease_ttl_s: float = Field(default=30.0, gt=0)
    recovery_interval_s: float = Field(default=2.0, gt=0)
    # On SIGTERM, in-flight sagas get this long to finish; the rest are handed back for resumption.
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    # Test-only: kill this process at named saga points (see orchestrator/saga/crashpoints.py).
    crash_points: str = ""

    @field_validator("step_timeout_s")
    @classmethod
    def _at_least_two_seconds(cls, value: float) -> float:
        return max(value, MIN_STEP_TIMEOUT_S)

    @field_validator("checkout_steps")
    @classmethod
    def _a_valid_plan(cls, value: str) -> str:
        try:
            return str(parse_plan(value))
        except PlanError as exc:
            # A ValueError's message reaches the start-up error as written.
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _sequential_when_choreographed(self) -> Settings:
        if self.coordination == "choreography" and self.plan.concurrent:
            raise ValueError(
                f"CHECKOUT_STEPS {self.checkout_steps!r} runs steps at once ('+'), which only "
                "orchestration does: under COORDINATION=choreography each service acts on the "
                "event of the step before it, so the steps run in sequence (use ',' only)"
            )
        return self

    @property
    def plan(self) -> Plan:
        """The groups of steps, their kinds and their pivot."""
        return parse_plan(self.checkout_steps)

    @property
    def step_order(self) -> list[str]:
        """Step names in the order the saga records them (group by group)."""
        return self.plan.order
