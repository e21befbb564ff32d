"""Each service's own database, on SQLite (the embedded default) or PostgreSQL (scale-out).

- ``database``: ``Database``, the one engine every service and the orchestrator's journal run
  their transactions on (plain SQL, on the event loop when SQLite is free, else in a thread).
- ``statements``: ``SQL``, one statement written once for both drivers, and ``Transaction``.
- ``values``: how uuids and UTC timestamps are stored, for plain SQL and the ORM alike.
- ``sqlite``: connection set-up, BUSY, and the WAL checkpoint.
- ``urls``: ``DATABASE_URL`` parsing and the driver each backend uses.
- ``engines``: SQLAlchemy engines, for migrations and for tests that read through the ORM.
"""
