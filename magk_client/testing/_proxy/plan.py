"""The faults a :class:`~magk_client.testing.FaultProxy` has in force, and the decisions they make.

Pure: no sockets, no threads; time is an argument. Owned by the proxy's loop thread (control methods
change it there).
"""

from __future__ import annotations

import random

__all__ = ["DIRECTIONS", "FaultPlan"]

DIRECTIONS = ("up", "down")
_BANDWIDTH_QUANTUM = 0.02  # seconds of traffic sent per send() when throttled


class FaultPlan:
    """Proxy-wide fault settings. ``limits`` is the one-shot byte budget per direction (None: unarmed)."""

    def __init__(self, seed: int | None = None) -> None:
        self.blackhole = False
        self.stop_reading = False
        self.latency = 0.0
        self.jitter = 0.0
        self.rate: float | None = None  # bytes per second per direction per connection
        self.slice: int | None = None
        self.slice_interval = 0.0
        self.limits: dict[str, int | None] = {"up": None, "down": None}
        self.hang = False
        self._rng = random.Random(seed)

    def due(self, now: float, last_due: float) -> float:
        """When a chunk read at ``now`` may be sent: latency +/- jitter, never before ``last_due``."""
        delay = self.latency
        if self.jitter:
            delay = max(0.0, delay + self._rng.uniform(-self.jitter, self.jitter))
        return max(now + delay, last_due)

    def may_read(self, direction: str) -> bool:
        """Whether the proxy reads the sending side of ``direction`` at all."""
        return not (self.blackhole or (direction == "up" and self.stop_reading))

    def send_size(self, direction: str, available: int) -> int | None:
        """How many of ``available`` bytes the next ``send()`` may carry; None: the limit is spent (cut)."""
        size = available
        if self.slice is not None:
            size = min(size, self.slice)
        if self.rate is not None:
            size = min(size, max(1, int(self.rate * _BANDWIDTH_QUANTUM)))
        limit = self.limits[direction]
        if limit is not None:
            if limit <= 0:
                return None
            size = min(size, limit)
        return size

    def after_send(self, direction: str, sent: int, now: float, next_send: float) -> tuple[float, bool]:
        """Account ``sent`` bytes: the new earliest next send, and whether the limit is now spent."""
        if self.rate is not None:
            next_send = max(next_send, now) + sent / self.rate
        if self.slice is not None and self.slice_interval > 0:
            next_send = max(next_send, now + self.slice_interval)
        limit = self.limits[direction]
        if limit is None:
            return next_send, False
        self.limits[direction] = limit - sent
        return next_send, limit - sent <= 0

    def disarm(self, direction: str) -> None:
        """The limit fired: it is one-shot."""
        self.limits[direction] = None
