"""The orchestrator's journal: every checkout and every step, durable before each call.

- ``journal``: ``Journal``, the store of one replica (its identity, leases, fenced writes).
- ``lease``: ``LeasedCheckout``, one checkout being driven: its records and its writes.
- ``records``: ``CheckoutRecord``, ``StepRecord`` (the rows) and ``Transition`` (a change).
- ``checkouts``: the SQL of the ``checkout`` and ``step`` tables, and nothing else has any.
"""
