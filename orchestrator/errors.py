"""Refusals of the orchestrator, as problem+json."""

from servicekit.problems import ProblemError


class CheckoutNotFoundError(ProblemError):
    """No checkout has this id."""

    status = 404
    type = "about:blank"
    title = "Not Found"


class IdempotencyKeyInFlightError(ProblemError):
    """The first request with this key has not been answered yet."""

    status = 409
    type = "urn:checkout-suite:problem:idempotency-key-in-flight"
    title = "Request with this key in flight"


class CheckoutTerminalError(ProblemError):
    """The operator action needs an unfinished checkout."""

    status = 409
    type = "urn:checkout-suite:problem:checkout-terminal"
    title = "Checkout already finished"


class CheckoutPastPivotError(ProblemError):
    """The checkout has started a step that cannot be undone; it can no longer be cancelled."""

    status = 409
    type = "urn:checkout-suite:problem:checkout-past-pivot"
    title = "Checkout past its pivot"


class CheckoutChoreographedError(ProblemError):
    """Retry and cancel are the orchestrator's to do, and no one conducts a choreographed checkout."""

    status = 409
    type = "urn:checkout-suite:problem:checkout-choreographed"
    title = "Checkout is choreographed"


class InvalidCursorError(ProblemError):
    """A pagination cursor this API did not hand out."""

    status = 422
    type = "about:blank"
    title = "Unprocessable Content"

    def __init__(self) -> None:
        super().__init__(
            "The cursor is not one this API handed out.",
            errors=[
                {"loc": ["query", "cursor"], "msg": "Invalid cursor", "type": "invalid_cursor"}
            ],
        )
