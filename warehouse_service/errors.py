"""Refusals of the warehouse, as problem+json."""

from servicekit.problems import ProblemError


class InsufficientStockError(ProblemError):
    """A line asks for more units than are available; nothing was reserved."""

    status = 409
    type = "urn:checkout-suite:problem:insufficient-stock"
    title = "Insufficient stock"


class UnknownSkuError(ProblemError):
    """A line names a sku the warehouse has never stocked."""

    status = 422
    type = "urn:checkout-suite:problem:unknown-sku"
    title = "Unknown sku"


class ReservationConflictError(ProblemError):
    """The checkout already holds a reservation with other lines."""

    status = 409
    type = "urn:checkout-suite:problem:reservation-conflict"
    title = "Reservation conflict"


class CheckoutVoidedError(ProblemError):
    """The checkout was voided (compensated) before it reserved: it can never reserve now."""

    status = 409
    type = "urn:checkout-suite:problem:checkout-voided"
    title = "Checkout voided"


class ReservationNotFoundError(ProblemError):
    """No reservation has this id."""

    status = 404
    type = "about:blank"
    title = "Not Found"


class SkuNotFoundError(ProblemError):
    """The sku was never stocked."""

    status = 404
    type = "about:blank"
    title = "Not Found"


class StockBelowReservedError(ProblemError):
    """The new on-hand count would be below what is already reserved."""

    status = 409
    type = "urn:checkout-suite:problem:stock-below-reserved"
    title = "Stock below reserved"
