"""Heartbeat bookkeeping and liveness (pure: time is passed in)."""

from __future__ import annotations

import itertools
import math
from collections import deque
from typing import Deque, Dict, List, Optional

from ..config import RealtimeConnectionConfig
from ..errors import ConfigError
from ._checks import _check_seconds

__all__ = ["HeartbeatMonitor"]


class HeartbeatMonitor:
    """Client ping/pong bookkeeping and liveness for one connection (docs/protocol.rst, Liveness).

    Semantics:

    * Pings go out on a fixed schedule: the first ``interval`` after :meth:`start`,
      then ``interval`` after each :meth:`make_ping` (whatever traffic flows, so
      RTTs keep being measured).
    * Liveness evidence is any received data (:meth:`on_activity`) or a pong that
      answers an outstanding ping (:meth:`on_pong`). A ping sent at ``t0`` with no
      evidence received since ``t0`` makes the connection dead at ``t0 + timeout``
      (:meth:`is_dead`). Evidence received after ``t0`` proves the link alive, so
      a busy but slow server is not declared dead; the next ping starts the clock
      again. Hence a peer silent since ``L`` is dead at the latest by
      ``L + interval + timeout`` (the next ping is sent at ``t0 <= L + interval``,
      provided the supervisor wakes at :meth:`next_deadline`).
    * RTTs come only from pongs answering our own outstanding pings; an unknown or
      stale pong is ignored (and still counts as activity if the caller says so).
      At most ``max_outstanding`` pings are remembered (oldest forgotten).
    * SSE has no client pings: :meth:`is_silent` is True when nothing was received
      for ``interval + timeout``; :meth:`silence_deadline` is when that happens.

    Not thread-safe: the service calls it under its lock.
    """

    max_outstanding = 16

    def __init__(self, interval: float, timeout: float, history: int = 256) -> None:
        _check_seconds("heartbeat interval", interval)
        _check_seconds("heartbeat timeout", timeout)
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise ConfigError(f"history must be an integer >= 1, got {history!r}")
        self.interval = float(interval)
        self.timeout = float(timeout)
        self._ids = itertools.count(1)
        self._outstanding: Dict[str, float] = {}
        self._rtts: Deque[float] = deque(maxlen=history)
        self._awaiting_since: Optional[float] = None
        self.next_ping_at = math.inf
        self.last_activity_at: Optional[float] = None
        self.last_ping_at: Optional[float] = None
        self.last_pong_at: Optional[float] = None
        self.pings_sent = 0
        self.pongs_received = 0
        self.unmatched_pongs = 0

    @classmethod
    def from_config(cls, cfg: RealtimeConnectionConfig, history: int = 256) -> HeartbeatMonitor:
        return cls(cfg.heartbeat_interval_ms / 1000.0, cfg.heartbeat_timeout_ms / 1000.0, history)

    def start(self, now: float) -> None:
        """A connection opened: forget outstanding pings, first ping at ``now + interval``.

        RTT history is kept (latency is a property of the link, not of one connection).
        """
        self._outstanding.clear()
        self._awaiting_since = None
        self.next_ping_at = now + self.interval
        self.last_activity_at = now

    def reconfigure(self, interval: float, timeout: float) -> None:
        """New interval and timeout, at once; RTT history and outstanding pings are kept.

        The next ping moves to ``interval`` after the previous one (or the start);
        a ping already awaiting an answer is judged by the new ``timeout``.
        """
        _check_seconds("heartbeat interval", interval)
        _check_seconds("heartbeat timeout", timeout)
        if math.isfinite(self.next_ping_at):
            self.next_ping_at += float(interval) - self.interval
        self.interval = float(interval)
        self.timeout = float(timeout)

    def ping_due(self, now: float) -> bool:
        return now >= self.next_ping_at

    def make_ping(self, now: float) -> str:
        """Record a ping sent at ``now`` and return its fresh opaque id (``"p-<n>"``)."""
        ping_id = f"p-{next(self._ids)}"
        outstanding = self._outstanding
        if len(outstanding) >= self.max_outstanding:
            del outstanding[next(iter(outstanding))]
        outstanding[ping_id] = now
        if self._awaiting_since is None:
            self._awaiting_since = now
        self.last_ping_at = now
        self.next_ping_at = now + self.interval
        self.pings_sent += 1
        return ping_id

    def on_pong(self, ping_id: str, now: float) -> Optional[float]:
        """A pong arrived: the RTT in seconds if it answers an outstanding ping, else None.

        A matching pong clears its ping and every older one still outstanding
        (their answers would be stale), and counts as liveness.
        """
        sent_at = self._outstanding.pop(ping_id, None) if isinstance(ping_id, str) else None
        if sent_at is None:
            self.unmatched_pongs += 1
            return None
        for other in [k for k, t in self._outstanding.items() if t <= sent_at]:
            del self._outstanding[other]
        rtt = max(0.0, now - sent_at)
        self._rtts.append(rtt)
        self.last_pong_at = now
        self.pongs_received += 1
        self._evidence(now)
        return rtt

    def on_activity(self, now: float) -> None:
        """Anything was received (a message, a WS control frame, an SSE comment)."""
        self._evidence(now)

    def _evidence(self, now: float) -> None:
        if self.last_activity_at is None or now > self.last_activity_at:
            self.last_activity_at = now
        if self._awaiting_since is not None and now >= self._awaiting_since:
            self._awaiting_since = None

    @property
    def outstanding(self) -> int:
        """How many pings are still unanswered."""
        return len(self._outstanding)

    @property
    def awaiting_since(self) -> Optional[float]:
        """Send time of the oldest ping with no liveness evidence since, if any."""
        return self._awaiting_since

    def is_dead(self, now: float) -> bool:
        """True when a ping has gone ``timeout`` seconds with nothing received since."""
        since = self._awaiting_since
        return since is not None and now - since >= self.timeout

    def is_silent(self, now: float, last_activity: Optional[float] = None) -> bool:
        """SSE liveness: nothing received for ``interval + timeout`` seconds.

        ``last_activity`` defaults to the monitor's own record (:meth:`start`,
        :meth:`on_activity`); with neither, the stream is not judged silent.
        """
        last = self.last_activity_at if last_activity is None else last_activity
        return last is not None and now - last >= self.interval + self.timeout

    def silence_deadline(self) -> float:
        """When :meth:`is_silent` becomes True if nothing arrives (inf before start)."""
        if self.last_activity_at is None:
            return math.inf
        return self.last_activity_at + self.interval + self.timeout

    def next_deadline(self, now: float) -> float:
        """The earliest time the supervisor must wake: next ping or ping expiry.

        May be <= ``now`` (act at once); ``inf`` before :meth:`start`.
        """
        deadline = self.next_ping_at
        if self._awaiting_since is not None:
            deadline = min(deadline, self._awaiting_since + self.timeout)
        return deadline

    # ---- latency statistics (from the last ``history`` RTTs)

    def rtts(self) -> List[float]:
        """The recorded RTTs in seconds, oldest first (a copy)."""
        return list(self._rtts)

    def latency_avg_ms(self) -> Optional[float]:
        if not self._rtts:
            return None
        return sum(self._rtts) / len(self._rtts) * 1000.0

    def _percentile_ms(self, pct: float) -> Optional[float]:
        if not self._rtts:
            return None
        ordered = sorted(self._rtts)
        # nearest-rank: the smallest value with at least pct % of the samples <= it
        rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
        return ordered[rank - 1] * 1000.0

    def latency_p50_ms(self) -> Optional[float]:
        return self._percentile_ms(50.0)

    def latency_p99_ms(self) -> Optional[float]:
        return self._percentile_ms(99.0)
