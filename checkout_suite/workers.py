"""``serve --workers N``: N uvicorn processes on one port, each listening on a socket of its own.

Why not uvicorn's own ``--workers``: its workers share one listening socket, and the event loop
that wakes first for it accepts every connection waiting there at once. A client that opens its
keep-alive connections together (a load balancer's pool, the bench's 32) so finds them all on one
worker while the others idle: measured with two workers under 32 connections, 10 s of CPU on one
and 1 s (its start-up) on the other, and no more checkouts per second than one process. Here each
worker binds its own socket with ``SO_REUSEPORT``, and the kernel spreads new connections across
them by their addresses.

The supervisor holds the port (bound, never listening, so it is given no connection) from before
the first worker starts until the last one ended: a port taken by another program fails at once,
and a worker started again after a crash finds it free. A worker that exits is started again,
unless it never got ready (a setting or the database refused it): then all stop, with uvicorn's
exit code for a failed start-up. SIGINT or SIGTERM asks every worker to finish its requests and
stop (uvicorn's graceful shutdown), within ``STOP_TIMEOUT_S``.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
import time
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

log = logging.getLogger("uvicorn.error")

# uvicorn's exit code when a server could not start (``uvicorn.main.STARTUP_FAILURE``).
STARTUP_FAILURE = 3
STOP_TIMEOUT_S = 30.0
POLL_S = 0.2


def supported() -> bool:
    """Whether this system lets several sockets listen on one port (Linux, the BSDs, macOS)."""
    return hasattr(socket, "SO_REUSEPORT")


def reuse_port_socket(host: str, port: int, *, listen: bool) -> socket.socket:
    """A TCP socket bound to ``host:port`` with SO_REUSEPORT, listening if ``listen``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(2048)  # uvicorn's default backlog
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def _worker(app: str, host: str, port: int, options: dict[str, Any]) -> None:
    """One worker: uvicorn serving ``app`` (an import string of a factory) on its own socket."""
    import uvicorn

    config = uvicorn.Config(app, factory=True, host=host, port=port, **options)
    server = uvicorn.Server(config)
    server.run(sockets=[reuse_port_socket(host, port, listen=True)])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def serve_workers(app: str, workers: int, *, host: str, port: int, **options: Any) -> int:
    """Run ``workers`` processes serving ``app`` until a signal stops them; the exit code.

    ``options`` go to ``uvicorn.Config`` (log level, access log…).
    """
    try:
        placeholder = reuse_port_socket(host, port, listen=False)
    except OSError as exc:
        # As uvicorn says it, and with its exit code, for a port another program holds.
        log.error(
            "error while attempting to bind on address (%s, %s): %s", host, port, exc.strerror
        )
        return 1
    context = multiprocessing.get_context("spawn")
    stopping: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def start() -> BaseProcess:
        process = context.Process(target=_worker, args=(app, host, port, options), daemon=False)
        process.start()
        return process

    processes = [start() for _ in range(workers)]
    code = 0
    try:
        while not stopping:
            for index, process in enumerate(processes):
                if process.is_alive():
                    continue
                if process.exitcode == STARTUP_FAILURE:
                    code = STARTUP_FAILURE
                    stopping.append(0)
                    break
                log.warning(
                    "worker %s exited with %s; starting another", process.pid, process.exitcode
                )
                processes[index] = start()
            time.sleep(POLL_S)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes its requests, then stops
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        placeholder.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
