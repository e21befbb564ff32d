"""Several hosts on one machine: a network namespace per host, joined by the switch of ``switch.py``.

``TestNetwork(["db", "warehouse", ...])`` makes, for each host, a namespace with loopback and an
``eth0`` at 10.231.N.k/24, and one more port left in the namespace running the tests (the
"client", at .1), so the test reaches every host the way a client on that network would and
nothing listens on any address outside it. ``launcher(host)`` is the command prefix that runs a
program inside a host's namespace; ``impair`` and ``partition`` change links while the processes
keep running. ``close`` ends the switch (its TAP devices go with it) and deletes the namespaces.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CLIENT = "client"


def unavailable() -> str | None:
    """Why these tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "iproute2's ip command is not installed"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun: the kernel has no TAP devices"
    probe = f"ckprobe{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add fails here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class TestNetwork:
    """Hosts in their own namespaces on one switched /24; the switch applies the impairments."""

    def __init__(self, hosts: list[str], workdir: Path) -> None:
        assert CLIENT not in hosts
        self.tag = secrets.token_hex(2)
        # One /24 per network; the tag keeps two test runs on one machine apart.
        subnet = 16 + int(self.tag, 16) % 200
        self.addresses = {CLIENT: f"10.231.{subnet}.1"}
        self.addresses |= {host: f"10.231.{subnet}.{k}" for k, host in enumerate(hosts, 2)}
        self.namespaces = {host: f"ck{self.tag}-{host}" for host in hosts}
        self._taps = {host: f"ck{self.tag}{k}" for k, host in enumerate(self.addresses)}
        self._log = (workdir / f"switch-{self.tag}.log").open("wb")
        self._switch = subprocess.Popen(
            [sys.executable, "-m", "tests.netns.switch"]
            + [f"{host}={tap}" for host, tap in self._taps.items()],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        try:
            assert self._switch.stdout is not None
            ready = self._switch.stdout.readline().strip()
            assert ready == "ready", f"the switch did not start: {ready!r}"
            self._wire()
        except BaseException:
            self.close()
            raise

    def _wire(self) -> None:
        client_tap = self._taps[CLIENT]
        _ip("addr", "add", f"{self.addresses[CLIENT]}/24", "dev", client_tap)
        _ip("link", "set", client_tap, "up")
        for host, namespace in self.namespaces.items():
            _ip("netns", "add", namespace)
            _ip("link", "set", self._taps[host], "netns", namespace)
            _ip("-n", namespace, "link", "set", self._taps[host], "name", "eth0")
            _ip("-n", namespace, "addr", "add", f"{self.addresses[host]}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            _ip("-n", namespace, "link", "set", "lo", "up")

    def launcher(self, host: str) -> tuple[str, ...]:
        """The command prefix that runs a program inside ``host``'s namespace."""
        return ("ip", "netns", "exec", self.namespaces[host])

    def _command(self, **command: Any) -> dict[str, Any]:
        assert self._switch.stdin is not None
        assert self._switch.stdout is not None
        self._switch.stdin.write(json.dumps(command) + "\n")
        answer: dict[str, Any] = json.loads(self._switch.stdout.readline())
        assert answer["ok"], answer
        return answer

    def impair(
        self,
        src: list[str],
        dst: list[str],
        *,
        delay_ms: float = 0,
        jitter_ms: float = 0,
        loss: float = 0,
    ) -> None:
        """Set the links from each of ``src`` to each of ``dst`` ("*": every host and the client)."""
        self._command(
            op="impair", src=src, dst=dst, delay_ms=delay_ms, jitter_ms=jitter_ms, loss=loss
        )

    def between_hosts(self, **impairment: float) -> None:
        """The same impairment on every link between two hosts (the client's links stay clean)."""
        hosts = list(self.namespaces)
        self.impair(hosts, hosts, **impairment)

    def partition(self, host: str, others: list[str] | None = None) -> None:
        """Cut ``host`` off from ``others`` (everyone by default), both ways; its processes keep
        running."""
        others = others or ["*"]
        self.impair([host], others, loss=1.0)
        self.impair(others, [host], loss=1.0)

    def heal(self, host: str, others: list[str] | None = None) -> None:
        others = others or ["*"]
        self.impair([host], others)
        self.impair(others, [host])

    def stats(self) -> dict[str, dict[str, float]]:
        """Per link ("a>b"): frames sent, frames dropped, seconds of delay added."""
        links: dict[str, dict[str, float]] = self._command(op="stats")["links"]
        return links

    def close(self) -> None:
        """End the switch and delete the namespaces (kill their processes first)."""
        if self._switch.poll() is None:
            self._switch.kill()
            self._switch.wait(timeout=10)
        for stream in (self._switch.stdin, self._switch.stdout):
            if stream is not None:
                stream.close()
        self._log.close()
        for namespace in self.namespaces.values():
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)
