"""A thin kit shared by the four services: problem+json errors, databases, health and idempotency.

It knows no service and no domain noun; services pass it URLs, engines and callables.
"""
