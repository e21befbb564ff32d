"""Named points where a test can make the orchestrator die as if by ``kill -9``.

Crash-recovery tests need to kill the process at exact places (after a service applied a call
but before the journal recorded it, say), which no outside signal can time. ``CRASH_POINTS``
(a comma-separated list such as ``warehouse:after_call``) arms them; unset, they cost one set
lookup. Points: ``{step}:before_call``, ``{step}:after_call``, ``{step}:before_compensate``,
``{step}:after_compensate``.
"""

from __future__ import annotations

import os
import signal


class CrashPoints:
    """The armed crash points of this process."""

    def __init__(self, spec: str = "") -> None:
        self.armed = frozenset(point.strip() for point in spec.split(",") if point.strip())

    def reach(self, point: str) -> None:
        """Die at once, leaving no chance to clean up, if ``point`` is armed."""
        if point in self.armed:
            os.kill(os.getpid(), signal.SIGKILL)
