"""An Ethernet switch in user space between TAP devices, with latency, jitter and loss per link.

The test network's hosts are network namespaces, each with one TAP device as its ``eth0``; this
process holds the other end of every TAP and forwards frames between them as a learning switch
does. Each direction of each pair of hosts is a link with its own impairment: a delay drawn
uniformly from ``delay ± jitter`` (frames of one link stay in order, as on a wire), and a loss
probability (1.0 cuts the link: a partition, where packets vanish without an error, so TCP
retransmits and times out as it would on a real network).

``tc netem`` would do the same in the kernel; kernels built without ``sch_netem`` (as some VMs
are) still have TAP devices, so the switch is the one mechanism that works wherever namespaces do.

Run as ``python -m tests.netns.switch HOST=TAP...``: it creates a TAP device per host, named TAP,
and calls the port by the host's name; it prints ``ready``
then reads commands from stdin, one JSON object per line, answering each with one JSON line:

    {"op": "impair", "src": ["a"], "dst": ["*"], "delay_ms": 5, "jitter_ms": 2, "loss": 0.02}
    {"op": "stats"}   ->  {"ok": true, "links": {"a>b": {"sent": 10, "dropped": 1, ...}}}

The TAP devices disappear when the process ends, which cuts every host off at once.
"""

from __future__ import annotations

import fcntl
import heapq
import json
import os
import random
import select
import struct
import sys
import time
from dataclasses import asdict, dataclass

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
MAX_FRAME = 65536


@dataclass
class Link:
    """One direction between two ports: its impairment and what passed through it."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0
    sent: int = 0
    dropped: int = 0
    delayed_s: float = 0.0
    # When the link's last frame is due: a frame is never delivered before the one ahead of it.
    last_due: float = 0.0

    def schedule(self, now: float, rng: random.Random) -> float | None:
        """When a frame entering now leaves, or None when it is lost."""
        if self.loss and rng.random() < self.loss:
            self.dropped += 1
            return None
        delay = self.delay_s + rng.uniform(-self.jitter_s, self.jitter_s) if self.delay_s else 0.0
        due = max(now + max(delay, 0.0), self.last_due)
        self.last_due = due
        self.sent += 1
        self.delayed_s += due - now
        return due

    def stats(self) -> dict[str, float]:
        found = asdict(self)
        del found["last_due"]
        return found


def open_tap(name: str) -> int:
    """A TAP device named ``name`` (frames only, no packet-info header), its fd non-blocking."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


class Switch:
    """Frames in from any TAP, out to the port that owns the destination MAC (or all others)."""

    def __init__(self, taps: dict[str, str], seed: int | None = None) -> None:
        ports = list(taps)
        self.fds = {port: open_tap(tap) for port, tap in taps.items()}
        self.port_of_fd = {fd: name for name, fd in self.fds.items()}
        self.links = {(a, b): Link() for a in ports for b in ports if a != b}
        self.port_of_mac: dict[bytes, str] = {}
        self.rng = random.Random(seed)
        self.due: list[tuple[float, int, str, bytes]] = []
        self.sequence = 0

    def receive(self, port: str, frame: bytes, now: float) -> None:
        if len(frame) < 14:
            return
        destination, source = frame[0:6], frame[6:12]
        self.port_of_mac[source] = port
        owner = self.port_of_mac.get(destination)
        broadcast = destination[0] & 1 or owner is None
        for target in self.fds if broadcast else (owner,):
            if target == port:
                continue
            due = self.links[port, target].schedule(now, self.rng)
            if due is not None:
                self.sequence += 1
                heapq.heappush(self.due, (due, self.sequence, target, frame))

    def deliver(self, now: float) -> None:
        while self.due and self.due[0][0] <= now:
            _, _, target, frame = heapq.heappop(self.due)
            try:
                os.write(self.fds[target], frame)
            except (BlockingIOError, OSError):
                pass  # the device's queue is full or its namespace is gone: the frame is lost

    def impair(self, command: dict[str, object]) -> None:
        def ports(names: object) -> list[str]:
            assert isinstance(names, list)
            return list(self.fds) if "*" in names else [str(n) for n in names]

        for a in ports(command["src"]):
            for b in ports(command["dst"]):
                if a != b:
                    link = self.links[a, b]
                    link.delay_s = float(command.get("delay_ms", 0)) / 1000  # type: ignore[arg-type]
                    link.jitter_s = float(command.get("jitter_ms", 0)) / 1000  # type: ignore[arg-type]
                    link.loss = float(command.get("loss", 0))  # type: ignore[arg-type]

    def answer(self, line: str) -> dict[str, object]:
        try:
            command = json.loads(line)
            if command["op"] == "impair":
                self.impair(command)
                return {"ok": True}
            if command["op"] == "stats":
                links = {f"{a}>{b}": link.stats() for (a, b), link in self.links.items()}
                return {"ok": True, "links": links}
            return {"ok": False, "error": f"unknown op {command['op']!r}"}
        except (KeyError, ValueError, TypeError, AssertionError) as exc:
            return {"ok": False, "error": repr(exc)}

    @staticmethod
    def say(line: str) -> None:
        """One line to the harness (stdout is the switch's answer channel)."""
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def run(self) -> None:
        stdin = sys.stdin.fileno()
        os.set_blocking(stdin, False)
        pending = b""
        self.say("ready")
        while True:
            now = time.monotonic()
            timeout = max(0.0, self.due[0][0] - now) if self.due else 1.0
            readable, _, _ = select.select([stdin, *self.port_of_fd], [], [], timeout)
            now = time.monotonic()
            for fd in readable:
                if fd == stdin:
                    chunk = os.read(stdin, MAX_FRAME)
                    if not chunk:
                        return  # the harness is gone: so is the network
                    pending += chunk
                    while b"\n" in pending:
                        line, pending = pending.split(b"\n", 1)
                        self.say(json.dumps(self.answer(line.decode())))
                    continue
                port = self.port_of_fd[fd]
                # A few frames per wake-up from each device, so none starves the others.
                for _ in range(64):
                    try:
                        frame = os.read(fd, MAX_FRAME)
                    except (BlockingIOError, OSError):
                        break
                    self.receive(port, frame, now)
            self.deliver(time.monotonic())


if __name__ == "__main__":
    Switch(dict(argument.split("=", 1) for argument in sys.argv[1:])).run()
