"""The ``restate`` target: Restate 1.7 and its Python SDK running the baselines' checkout.

The issue's comparison ("throughput at C=32 ≥ 3× Restate's, Restate 1.7 + Python SDK"), measured
in the same run as the orchestrator, against the same stand-ins:

- ``restate-server`` 1.7.12, installed with npm (``@restatedev/restate-server``, whose platform
  package holds the binary) into ``~/.cache/checkout-suite/restate-1.7.12`` (``--restate-dir``)
  the first time a run needs it, and reused after. Without npm, or when the install or the binary
  fails, the target is skipped with the reason.
- Started with its defaults (24 partitions, RocksDB with fsync, journal kept a day) on a fresh
  base directory of the run, every listener on 127.0.0.1 and TCP only: ingress, admin and
  node-to-node ports free ones, so nothing clashes with the bench's other processes or a
  Restate already running on 8080 / 9070 / 5122.
- The workflow, ``bench.restate_app``, served by hypercorn over HTTP/2 (``--restate-http 1.1``:
  uvicorn over HTTP/1.1, the SDK in request-response mode), registered through the admin API
  (``POST /deployments``).
- The load posts to the ingress, ``POST /Checkout/create``, which waits for the workflow and
  answers 200 with its JSON.

Its CPU per checkout is restate-server's plus the SDK process's (each also reported alone).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

import httpx

from bench.procs import OwnProcess, Server, free_port, spawn

VERSION = "1.7.12"
PACKAGE = "@restatedev/restate-server"
APP_MODULE = "bench.restate_app"
INGRESS_PATH = "/Checkout/create"
INGRESS_OK_STATUS = 200
INSTALL_TIMEOUT_S = 300.0
READY_TIMEOUT_S = 60.0
# How the SDK process is served, by ``--restate-http`` (bench.restate_app.serve says why).
SERVING = {
    "2": "served by hypercorn over HTTP/2",
    "1.1": "served by uvicorn over HTTP/1.1 (the SDK in request-response mode)",
}
# npm's names for the platforms the package ships a binary for (its optionalDependencies).
_NPM_OS = {"Linux": "linux", "Darwin": "darwin"}
_NPM_CPU = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}


class RestateUnavailable(Exception):
    """restate-server cannot be installed or run here; the message says why."""


def default_install_dir() -> Path:
    """Where the npm install is kept between runs (and between clones): the user's cache."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "checkout-suite" / f"restate-{VERSION}"


def npm_platform(system: str, machine: str) -> str | None:
    """``Linux``, ``x86_64`` → ``linux-x64``: the suffix of the package holding the binary."""
    npm_os, cpu = _NPM_OS.get(system), _NPM_CPU.get(machine.lower())
    return f"{npm_os}-{cpu}" if npm_os and cpu else None


def binary_path(install_dir: Path, npm_platform_name: str) -> Path:
    """Where npm puts the binary of ``@restatedev/restate-server-<platform>`` under the prefix."""
    package = install_dir / "node_modules" / "@restatedev" / f"restate-server-{npm_platform_name}"
    return package / "bin" / "restate-server"


def find_binary(install_dir: Path, npm_platform_name: str) -> Path | None:
    """The installed binary, if it is there and executable."""
    path = binary_path(install_dir, npm_platform_name)
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _version_of(binary: Path) -> str:
    """``restate-server --version``'s answer (``restate-server 1.7.12``)."""
    try:
        done = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        raise RestateUnavailable(f"{binary} does not run here ({exc})") from exc
    if done.returncode != 0:
        raise RestateUnavailable(f"{binary} --version exited with {done.returncode}: {done.stderr}")
    return done.stdout.strip()


def install(install_dir: Path) -> Path:
    """The restate-server binary, installed with npm into ``install_dir`` unless already there.

    npm installs into a staging folder beside ``install_dir``, renamed into place once the binary
    is in it: an interrupted install is never taken for a finished one, and two runs installing
    at once each finish with a whole folder. ``--ignore-scripts``: nothing of the packages is run
    at install (the binary needs no post-install step; it spares the telemetry one).
    """
    name = npm_platform(platform.system(), platform.machine())
    if name is None:
        raise RestateUnavailable(
            f"{PACKAGE} ships no binary for {platform.system()} {platform.machine()}"
        )
    binary = find_binary(install_dir, name)
    if binary is None:
        npm = shutil.which("npm")
        if npm is None:
            raise RestateUnavailable(
                f"npm is not installed (needed to install {PACKAGE}@{VERSION})"
            )
        install_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = install_dir.with_name(f".{install_dir.name}.installing-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            _npm_install(npm, staging)
            if find_binary(staging, name) is None:
                raise RestateUnavailable(
                    f"npm installed {PACKAGE}@{VERSION} without its {name} binary "
                    f"(no {binary_path(staging, name).relative_to(staging)})"
                )
            try:
                staging.rename(install_dir)
            except OSError:
                if find_binary(install_dir, name) is None:  # not another run's finished install
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        binary = binary_path(install_dir, name)
    version = _version_of(binary)
    if version.split()[-1:] != [VERSION]:
        raise RestateUnavailable(f"{binary} says {version!r}, not {VERSION}")
    return binary


def _npm_install(npm: str, prefix: Path) -> None:
    command = [
        npm, "install", "--prefix", str(prefix), "--no-save", "--no-package-lock", "--no-audit",
        "--no-fund", "--ignore-scripts", "--loglevel=error",
        # npm's own defaults wait up to 5 min per request, retried twice: an unreachable registry
        # is told sooner (the tarball is about 80 MB).
        "--fetch-timeout=120000", "--fetch-retries=1",
        f"{PACKAGE}@{VERSION}",
    ]  # fmt: skip
    env = os.environ | {"SCARF_ANALYTICS": "false", "NPM_CONFIG_UPDATE_NOTIFIER": "false"}
    try:
        done = subprocess.run(
            command,
            cwd=prefix,
            env=env,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RestateUnavailable(
            f"npm install {PACKAGE}@{VERSION} did not finish in {INSTALL_TIMEOUT_S:.0f} s"
        ) from exc
    if done.returncode != 0:
        raise RestateUnavailable(
            f"npm install {PACKAGE}@{VERSION} exited with {done.returncode}: "
            + npm_error_summary(done.stderr or done.stdout)
        )


def npm_error_summary(output: str) -> str:
    """npm's error in one line: ``ECONNREFUSED: FetchError: request to … failed, …``.

    npm prints its error code, then the message, then a stack trace and advice; only the first
    two say why.
    """
    lines = [
        line.removeprefix("npm error").removeprefix("npm ERR!").strip()
        for line in output.strip().splitlines()
    ]
    code = next((line.split()[1] for line in lines if line.startswith("code ")), "")
    details = ("code ", "syscall ", "errno ", "at ")
    message = next((line for line in lines if line and not line.startswith(details)), "")
    return ": ".join(part for part in (code, message) if part) or "no output"


def sdk_unavailable_reason(http: str) -> str | None:
    """Why the SDK process cannot start here (a dependency not installed), or None."""
    needed = ["restate", "hypercorn"] if http == "2" else ["restate"]
    missing = [name for name in needed if find_spec(name) is None]
    if missing:
        return f"{', '.join(missing)} not installed (`make install` installs the dev dependencies)"
    return None


@dataclass
class RestateServer(OwnProcess):
    """One restate-server process on free ports of 127.0.0.1, its data under ``workdir``."""

    binary: Path
    workdir: Path
    ingress_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    node_port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def log(self) -> Path:
        return self.workdir / "restate-server.log"

    def start(self) -> RestateServer:
        base_dir = self.workdir / "restate-data"
        shutil.rmtree(base_dir, ignore_errors=True)
        command = [
            str(self.binary), "--no-logo", "--base-dir", str(base_dir), "--node-name", "bench",
            # TCP only: no Unix sockets under the base directory (whose paths can be too long).
            "--listen-mode", "tcp", "--bind-ip", "127.0.0.1", "--advertised-host", "127.0.0.1",
            "--bind-port", str(self.node_port),
        ]  # fmt: skip
        # The caller's RESTATE_* settings would change what is measured: none are passed on.
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("RESTATE_")}
        env |= {
            "RESTATE_INGRESS__BIND_PORT": str(self.ingress_port),
            "RESTATE_ADMIN__BIND_PORT": str(self.admin_port),
            "RESTATE_DISABLE_TELEMETRY": "true",
            "RESTATE_LOG_DISABLE_ANSI_CODES": "true",
        }
        self.popen = spawn(command, self.workdir, env, self.log)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        checks = [f"{self.admin_url}/health", f"{self.ingress_url}/restate/health"]
        with httpx.Client(timeout=2) as client:
            while checks:
                assert self.popen is not None
                if self.popen.poll() is not None:
                    raise RuntimeError(
                        f"restate-server exited with {self.popen.returncode}:\n{self.tail()}"
                    )
                try:
                    if client.get(checks[0]).status_code == 200:
                        checks.pop(0)
                        continue
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"restate-server not ready in {READY_TIMEOUT_S} s:\n{self.tail()}"
                    )
                time.sleep(0.1)

    def register(self, uri: str, *, http_11: bool) -> None:
        """Register the deployment at ``uri`` (the admin API discovers its services)."""
        answer = httpx.post(
            f"{self.admin_url}/deployments",
            json={"uri": uri, "use_http_11": http_11},
            timeout=30,
        )
        if answer.status_code not in (200, 201):
            raise RuntimeError(
                f"registering {uri} with restate-server answered {answer.status_code}: "
                f"{answer.text[:500]}"
            )


@dataclass
class RestateRun:
    """restate-server and the SDK process, started and registered: what a load is aimed at."""

    server: RestateServer
    sdk: Server

    @property
    def url(self) -> str:
        return self.server.ingress_url

    def cpu_parts(self) -> list[tuple[str, RestateServer | Server]]:
        """The processes whose CPU is the target's, each named in the report."""
        return [("restate-server", self.server), ("SDK service", self.sdk)]

    def rss_bytes(self) -> int:
        return self.server.rss_bytes() + self.sdk.rss_bytes()

    def stop(self) -> None:
        self.server.stop()
        self.sdk.stop()


@dataclass
class Restate:
    """The target's two halves: ``prepare`` installs (or skips), ``start`` runs a fresh pair."""

    install_dir: Path
    workdir: Path
    http: str = "2"  # "2" (hypercorn) or "1.1" (uvicorn, request-response)
    binary: Path | None = None

    def prepare(self) -> str | None:
        """None once restate-server and the SDK are ready to start, else why the target is skipped."""
        reason = sdk_unavailable_reason(self.http)
        if reason is not None:
            return reason
        try:
            self.binary = install(self.install_dir)
        except (RestateUnavailable, OSError) as exc:
            return str(exc)
        return None

    def start(self, env: dict[str, str]) -> RestateRun:
        """restate-server and the SDK process (``env``: the stand-ins' URLs), registered."""
        assert self.binary is not None, "prepare() first"
        sdk = Server(
            "restate-sdk",
            APP_MODULE,
            env,
            self.workdir,
            module=APP_MODULE,
            ready_path="/health",
            extra_args=["--http", self.http],
        ).start()
        try:
            server = RestateServer(self.binary, self.workdir).start()
        except BaseException:
            sdk.stop()
            raise
        run = RestateRun(server, sdk)
        try:
            server.register(sdk.url, http_11=self.http == "1.1")
        except BaseException:
            run.stop()
            raise
        return run
