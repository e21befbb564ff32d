"""What ``pool_pre_ping`` costs a service per request on PostgreSQL (``servicekit.db`` sets it).

``python -m bench.experiments.pre_ping [--url postgresql://postgres@127.0.0.1/postgres] [--n 3000]``

The services' hot path checks out one pooled connection per transaction function
(``servicekit.sql.Transactions``); with ``pool_pre_ping=True`` each checkout first sends a
``SELECT 1`` and waits for it. This times N checkouts each running one short transaction (an
idempotency-record lookup and a commit, as a replay does) on engines built like
``servicekit.db.create_sync_engine``'s with and without the ping: CPU of this process
(``time.process_time``) and wall time per transaction.
"""

from __future__ import annotations

import argparse
import time

from sqlalchemy import create_engine

from bench import emit


def measure(url: str, n: int, *, pre_ping: bool) -> tuple[float, float]:
    engine = create_engine(url, pool_pre_ping=pre_ping, pool_size=10, max_overflow=20)
    try:

        def once() -> None:
            connection = engine.raw_connection()
            try:
                cursor = connection.cursor()
                cursor.execute("SELECT 1 WHERE 'a' = %(k)s", {"k": "b"})
                cursor.fetchone()
                connection.commit()
            finally:
                connection.close()

        for _ in range(200):
            once()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(n):
            once()
        return (time.process_time() - cpu) * 1000 / n, (time.perf_counter() - wall) * 1000 / n
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1/postgres")
    parser.add_argument("--n", type=int, default=3000)
    args = parser.parse_args()
    for _ in range(2):
        for pre_ping in (True, False):
            cpu, wall = measure(args.url, args.n, pre_ping=pre_ping)
            emit(
                f"pool_pre_ping={pre_ping!s:5}  CPU {cpu:.3f} ms  wall {wall:.3f} ms per transaction"
            )


if __name__ == "__main__":
    main()
