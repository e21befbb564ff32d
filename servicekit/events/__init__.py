"""Choreography's machinery: events, a transactional outbox and inbox, a relay, the broker.

- ``envelope``: the ``Event`` every service publishes (``message_id``, ``checkout_id``,
  ``causation_id``, W3C ``traceparent``) and its JSON.
- ``tables``: the outbox and inbox columns; each service declares the two tables on its own base.
- ``store``: their SQL: enqueue an event in the effect's transaction, claim and drop what the
  relay published, record an applied message id.
- ``broker``: RabbitMQ through aio-pika: the topic exchange, a queue per consumer, the dead
  letters.
- ``relay``: publishes the outbox with publisher confirms, then deletes what was confirmed.
- ``reactor``: consumes a queue; each message's reaction, its inbox row and the events it causes
  commit in one transaction, so a redelivered message is acknowledged and skipped.
- ``saga``: the checkout's choreography: which event each step reacts to, what it answers.
- ``telemetry``: the consumers' and the relay's counters, and spans that continue the trace.
- ``runtime``: ``COORDINATION``/``BROKER_URL``, and all of the above for a service's lifetime.
"""

# Here rather than in ``broker``, so the command line reads them without importing aio-pika.
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_PREFIX = "checkout"
