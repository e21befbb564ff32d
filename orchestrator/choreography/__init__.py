"""The orchestrator in COORDINATION=choreography: it records checkouts, and conducts nothing.

- ``placing``: ``POST /checkouts`` records the checkout with its ``checkout.placed`` event in one
  transaction (the outbox), and waits for the journal to see it end.
- ``feed``: the journal, fed by every checkout event the services publish, so a choreographed
  checkout reads like an orchestrated one (steps, statuses, timings, results, errors).

The services' reactions (``*_service/reactions.py``) do the work; ``servicekit.events`` is the
machinery they share (envelope, outbox, inbox, relay, broker, reactor).
"""
