"""Refusals of the email service, as problem+json."""

from servicekit.problems import ProblemError


class EmailNotFoundError(ProblemError):
    """No message has this id."""

    status = 404
    type = "about:blank"
    title = "Not Found"


class RecipientConflictError(ProblemError):
    """The checkout already has a message of this template addressed to someone else."""

    status = 409
    type = "urn:checkout-suite:problem:email-recipient-conflict"
    title = "Email recipient conflict"


class DeliveryInProgressError(ProblemError):
    """Another request is delivering this message right now; retry after ``Retry-After``."""

    status = 409
    type = "urn:checkout-suite:problem:email-delivery-in-progress"
    title = "Email delivery in progress"


class DeliveryFailedError(ProblemError):
    """The mail server refused the message or could not be reached; it stays in the outbox."""

    status = 503
    type = "urn:checkout-suite:problem:email-delivery-failed"
    title = "Email delivery failed"


class ContextNotRenderableError(ProblemError):
    """The template cannot be rendered with the given context."""

    status = 422
    type = "about:blank"
    title = "Unprocessable Content"
