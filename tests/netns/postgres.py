"""A PostgreSQL server of the test network's own: initdb into a temporary folder, run in one host.

It listens only on its host's address inside the test network (and a socket in its folder), so
stopping, restarting or partitioning it touches nothing else on the machine. PostgreSQL refuses
to run as root: the folder belongs to the ``postgres`` user and the server runs as that user.
"""

from __future__ import annotations

import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

BINARIES = Path("/usr/lib/postgresql")
DATABASES = ("orchestrator", "warehouse", "rewards", "email")
READY_TIMEOUT_S = 30.0
PORT = 5432


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian's layout), or None."""
    found = sorted(BINARIES.glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def unavailable() -> str | None:
    """Why this server cannot be started here, or None."""
    if binaries() is None:
        return f"no PostgreSQL server binaries under {BINARIES} (initdb, postgres)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres user to run the server as (it refuses to run as root)"
    if shutil.which("setpriv") is None:
        return "util-linux's setpriv is not installed"
    return None


class TestPostgres:
    """One server in ``launcher``'s namespace at ``address``; ``restart`` keeps its data."""

    def __init__(self, launcher: tuple[str, ...], address: str, log: Path) -> None:
        bin_dir = binaries()
        assert bin_dir is not None
        self.postgres = bin_dir / "postgres"
        self.launcher = launcher
        self.address = address
        self.log = log
        self.folder = Path(tempfile.mkdtemp(prefix="checkout-netns-pg-"))
        shutil.chown(self.folder, "postgres", "postgres")
        self.data = self.folder / "data"
        self._as_postgres(
            [str(bin_dir / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres"]
        )
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 10.231.0.0/16 trust\n")
        self.process: subprocess.Popen[bytes] | None = None

    def _as_postgres(self, command: list[str]) -> None:
        subprocess.run(
            ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *command],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def url(self, database: str) -> str:
        return f"postgresql://postgres@{self.address}:{PORT}/{database}"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        command = [
            *self.launcher,
            "setpriv",
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            str(self.postgres),
            "-D",
            str(self.data),
            "-c",
            f"listen_addresses={self.address}",
            "-c",
            f"port={PORT}",
            "-c",
            f"unix_socket_directories={self.folder}",
            "-c",
            "max_connections=300",
            # The disk is not what these tests put under stress (a restart is a clean shutdown).
            "-c",
            "fsync=off",
        ]
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
            )
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"PostgreSQL exited with {self.process.returncode}: {self.log}"
                )
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def create_databases(self) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            for name in DATABASES:
                connection.execute(f'CREATE DATABASE "{name}"')

    def stop(self, mode: signal.Signals = signal.SIGINT) -> None:
        """SIGINT: a fast shutdown (what ``pg_ctl restart`` does); SIGQUIT: an immediate one."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(mode)
            self.process.wait(timeout=60)

    def restart(self, *, down_s: float = 0.0, mode: signal.Signals = signal.SIGINT) -> None:
        """Stop (``mode`` as in ``stop``), stay down ``down_s`` (clients find nobody
        listening), start again: after an immediate stop, the start replays the WAL."""
        self.stop(mode)
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        try:
            self.stop()
        except subprocess.TimeoutExpired:
            assert self.process is not None
            self.process.kill()
        shutil.rmtree(self.folder, ignore_errors=True)
