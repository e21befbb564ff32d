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
"""
