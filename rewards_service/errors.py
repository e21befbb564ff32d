"""Refusals of the rewards service, as problem+json."""

from servicekit.problems import ProblemError


class AccountNotFoundError(ProblemError):
    """The customer was never credited, so has no account."""

    status = 404
    type = "about:blank"
    title = "Not Found"


class TransactionNotFoundError(ProblemError):
    """No ledger transaction has this id."""

    status = 404
    type = "about:blank"
    title = "Not Found"


class CreditConflictError(ProblemError):
    """The checkout was already credited to this customer with a different number of points."""

    status = 409
    type = "urn:checkout-suite:problem:credit-conflict"
    title = "Credit conflict"


class NotReversibleError(ProblemError):
    """Only credits can be reversed; this transaction is itself a reversal."""

    status = 409
    type = "urn:checkout-suite:problem:not-reversible"
    title = "Not reversible"


class CheckoutVoidedError(ProblemError):
    """The checkout was voided (compensated) before it was credited: it can never be credited now."""

    status = 409
    type = "urn:checkout-suite:problem:checkout-voided"
    title = "Checkout voided"
