"""Pure policies: backoff, reconnect bookkeeping, circuit breaker, heartbeat, recovery plan.

Nothing here opens a socket, starts a thread or reads a clock. Time is always
passed in as ``now`` (float seconds from :func:`time.monotonic`), randomness
comes from an injected :class:`random.Random`. The service (the threads) drives
these objects and acts on their answers, the way ``websockets``' ``sync``
connection drives its sans-I/O protocol; so each object here can be tested in
microseconds with a hand-advanced clock.

:class:`Backoff` and :class:`RecoveryPlan` are immutable values (like urllib3's
``Retry``) and safe to share. :class:`ReconnectTracker`, :class:`CircuitBreaker`
and :class:`HeartbeatMonitor` hold mutable state and are **not thread-safe** on
their own: the service calls them with its lock held.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Mapping, Optional, Tuple

from .config import ErrorRecoveryConfig, RealtimeConnectionConfig, RecoveryStrategy
from .errors import ConfigError, MagkConnectionError
from .models import CircuitState

__all__ = [
    "Backoff",
    "CircuitBreaker",
    "cap_server_wait",
    "HeartbeatMonitor",
    "ReconnectTracker",
    "RecoveryPlan",
    "close_code_floor",
    "recovery_plan",
]


def _finite_non_negative(value: Optional[float]) -> float:
    """``value`` as a usable delay: ``None``, NaN and negatives become 0.0."""
    if value is None or math.isnan(value) or value < 0:
        return 0.0
    return float(value)


def cap_server_wait(seconds: Optional[float], cap: float) -> float:
    """A wait the server asked for (``Retry-After``, SSE ``retry:``; seconds) as a usable delay:
    ``None``, NaN and negatives become 0.0; anything above ``cap`` becomes ``cap``, so a hostile or
    broken ``Retry-After: 99999999999`` cannot park the client for centuries (or overflow a wait)."""
    return min(_finite_non_negative(seconds), cap)


def _check_seconds(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a finite number > 0 (>= 0 if allowed)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        raise ConfigError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")


# --------------------------------------------------------------------------- backoff


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, as an immutable value.

    ``ceiling(k) = min(max_ms, initial_ms * multiplier**k) / 1000`` seconds, where
    ``k = 0`` is the first retry. ``delay(k, rng)`` draws uniformly from
    ``[0, ceiling(k)]`` ("full jitter", so many clients restarting together spread
    out) and never returns less than ``floor`` (a server hint: SSE ``retry:``,
    ``Retry-After``, a close-code policy). Safe to share between threads.
    """

    initial_ms: float
    max_ms: float
    multiplier: float

    def __post_init__(self) -> None:
        for name in ("initial_ms", "max_ms", "multiplier"):
            value = getattr(self, name)
            _check_seconds(f"Backoff.{name}", value)
        if self.max_ms < self.initial_ms:
            raise ConfigError("Backoff.max_ms must be >= initial_ms")
        if self.multiplier < 1:
            raise ConfigError(f"Backoff.multiplier must be >= 1 and finite, got {self.multiplier!r}")

    @classmethod
    def from_config(cls, cfg: RealtimeConnectionConfig) -> Backoff:
        """The backoff of a connection config (``reconnect_interval_ms`` and friends)."""
        return cls(
            initial_ms=float(cfg.reconnect_interval_ms),
            max_ms=float(cfg.max_reconnect_interval_ms),
            multiplier=float(cfg.reconnect_backoff_multiplier),
        )

    def ceiling(self, attempt: int) -> float:
        """The largest delay (seconds) of retry number ``attempt`` (0 = first retry).

        Negative attempts count as 0. Huge attempt numbers do not overflow: the
        result is capped at ``max_ms``.
        """
        if attempt <= 0:
            return self.initial_ms / 1000.0
        try:
            raw = self.initial_ms * float(self.multiplier) ** attempt
        except OverflowError:
            raw = math.inf
        return min(self.max_ms, raw) / 1000.0

    def delay(self, attempt: int, rng: random.Random, floor: float = 0.0) -> float:
        """A full-jitter delay in seconds: ``max(floor, uniform(0, ceiling(attempt)))``."""
        return max(_finite_non_negative(floor), rng.uniform(0.0, self.ceiling(attempt)))

    def envelope(self, attempt: int, floor: float = 0.0) -> Tuple[float, float]:
        """The closed range ``(lo, hi)`` of what :meth:`delay` can return, in seconds."""
        lo = _finite_non_negative(floor)
        return lo, max(lo, self.ceiling(attempt))


# --------------------------------------------------------------------------- reconnects


class ReconnectTracker:
    """Counts failures and decides the delay before the next connection attempt.

    Definitions (the retry index ``k`` is what :class:`Backoff` is called with):

    * A **failure** is a connect attempt that failed (:meth:`on_attempt_failed`)
      or a connection that ended (:meth:`on_disconnected`). The loss of a
      connection that had been up for at least ``min_stable`` seconds starts a
      new outage: ``failures`` becomes 1. The loss of a connection that was up
      for less than ``min_stable`` is just one more failure of the same outage, so
      a server that accepts and closes at once makes the delays *grow*, never
      resets them (no reconnect storm).
    * ``attempts`` = ``max(failures - 1, 0)``: the reconnect attempts already made
      in this outage that did not end in a stable connection, which is also the
      retry index ``k`` of the next attempt. The first failure (the initial connect
      failing, or a stable connection dropping) leads to retry ``k = 0``.
    * :meth:`next_delay` = ``backoff.delay(attempts, rng, floor)``.
    * :attr:`exhausted` is True once ``attempts >= max_attempts`` after a failure:
      ``max_attempts`` reconnect attempts were made and failed. ``max_attempts = 0``
      means never retry (exhausted at the first failure).

    Sequences (``min_stable = 5``)::

        initial connect fails          failures 1, attempts 0 -> delay(0)
        retry fails                    failures 2, attempts 1 -> delay(1)
        retry connects, drops at +1 s  failures 3, attempts 2 -> delay(2)   (not stable)
        retry connects, drops at +9 s  failures 1, attempts 0 -> delay(0)   (stable: reset)

    Not thread-safe: the service calls it under its lock.
    """

    def __init__(self, backoff: Backoff, max_attempts: int, min_stable: float) -> None:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 0:
            raise ConfigError(f"max_attempts must be an integer >= 0, got {max_attempts!r}")
        _check_seconds("min_stable", min_stable, allow_zero=True)
        self.backoff = backoff
        self.max_attempts = max_attempts
        self.min_stable = float(min_stable)
        self.failures = 0
        self.connected_at: Optional[float] = None
        self.total_connects = 0

    @classmethod
    def from_config(cls, cfg: RealtimeConnectionConfig) -> ReconnectTracker:
        return cls(
            Backoff.from_config(cfg),
            cfg.max_reconnect_attempts,
            cfg.min_stable_connection_ms / 1000.0,
        )

    def reconfigure(self, backoff: Backoff, max_attempts: int, min_stable: float) -> None:
        """New settings; the failures counted and the open connection's start time are kept."""
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 0:
            raise ConfigError(f"max_attempts must be an integer >= 0, got {max_attempts!r}")
        _check_seconds("min_stable", min_stable, allow_zero=True)
        self.backoff = backoff
        self.max_attempts = max_attempts
        self.min_stable = float(min_stable)

    @property
    def attempts(self) -> int:
        """Failed reconnect attempts in the current outage (= retry index of the next one)."""
        return self.failures - 1 if self.failures > 0 else 0

    @property
    def connected(self) -> bool:
        return self.connected_at is not None

    @property
    def exhausted(self) -> bool:
        """True when no further reconnect attempt may be made."""
        return self.failures > 0 and self.attempts >= self.max_attempts

    def on_connected(self, now: float) -> None:
        """A connection attempt succeeded; stability is judged when it ends."""
        self.connected_at = now
        self.total_connects += 1

    def on_disconnected(self, now: float) -> None:
        """The live connection ended. No-op when not connected (safe to call twice)."""
        if self.connected_at is None:
            return
        stable = now - self.connected_at >= self.min_stable
        self.connected_at = None
        self.failures = 1 if stable else self.failures + 1

    def on_attempt_failed(self, now: float) -> None:
        """A connect attempt failed (refused, timed out, handshake rejected...)."""
        self.connected_at = None
        self.failures += 1

    def is_stable(self, now: float) -> bool:
        """True while connected for at least ``min_stable`` seconds."""
        return self.connected_at is not None and now - self.connected_at >= self.min_stable

    def next_delay(self, rng: random.Random, floor: float = 0.0) -> float:
        """Seconds to wait before the next attempt, given the failures so far."""
        return self.backoff.delay(self.attempts, rng, floor)

    def next_envelope(self, floor: float = 0.0) -> Tuple[float, float]:
        """The range :meth:`next_delay` draws from."""
        return self.backoff.envelope(self.attempts, floor)

    def reset(self) -> None:
        """Forget every failure (a manual ``reconnect()``, a new ``connect()``)."""
        self.failures = 0
        self.connected_at = None


# --------------------------------------------------------------------------- circuit breaker

_FAILURE, _TRIP, _SUCCESS, _PROBE, _RELEASE = "failure", "trip", "success", "probe", "release"

#: The breaker as data (h11 style): state -> event -> next state. An event that is
#: missing from a state's row is ignored in that state.
_BREAKER_TRANSITIONS: Mapping[CircuitState, Mapping[str, CircuitState]] = {
    CircuitState.CLOSED: {
        _SUCCESS: CircuitState.CLOSED,
        _FAILURE: CircuitState.CLOSED,  # below the threshold
        _TRIP: CircuitState.OPEN,  # the threshold-th consecutive failure: timer starts
    },
    CircuitState.OPEN: {
        _SUCCESS: CircuitState.CLOSED,
        _FAILURE: CircuitState.OPEN,  # a late failure: counted, the timer is NOT extended
        _TRIP: CircuitState.OPEN,
        _PROBE: CircuitState.HALF_OPEN,  # allow() after the cool-down: one probe
    },
    CircuitState.HALF_OPEN: {
        _SUCCESS: CircuitState.CLOSED,  # the probe worked
        _FAILURE: CircuitState.OPEN,  # the probe failed: open again, fresh timer
        _TRIP: CircuitState.OPEN,
        _RELEASE: CircuitState.OPEN,  # the probe was abandoned: probe again at once
    },
}


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; probes again after ``reset_timeout``.

    * closed: :meth:`allow` is True. The ``threshold``-th consecutive failure opens it.
    * open: :meth:`allow` is False until ``reset_timeout`` seconds have passed since
      it opened; then the first :meth:`allow` moves it to half-open and returns True
      (that caller makes the one probe).
    * half-open: :meth:`allow` is False until the probe's outcome is recorded:
      success closes the breaker, failure opens it again with a fresh timer.
      :meth:`release_probe` returns an abandoned probe (the caller gave up without
      an outcome) so the next :meth:`allow` may probe at once.

    The transitions are the table ``_BREAKER_TRANSITIONS``. Not thread-safe: the
    service calls it under its lock.
    """

    def __init__(self, threshold: int, reset_timeout: float) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ConfigError(f"threshold must be an integer >= 1, got {threshold!r}")
        _check_seconds("reset_timeout", reset_timeout)
        self.threshold = threshold
        self.reset_timeout = float(reset_timeout)
        self.consecutive_failures = 0
        self.opened_at: Optional[float] = None
        self.times_opened = 0
        self._state = CircuitState.CLOSED

    @classmethod
    def from_config(cls, cfg: RealtimeConnectionConfig) -> CircuitBreaker:
        return cls(cfg.circuit_breaker_threshold, cfg.circuit_breaker_reset_ms / 1000.0)

    def reconfigure(self, threshold: int, reset_timeout: float) -> None:
        """New settings; the state, its timer and the failure count are kept.

        A new threshold counts from the next failure (a closed breaker already past
        it opens at the next one); a new ``reset_timeout`` applies to the current
        cool-down (measured from when the breaker opened).
        """
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ConfigError(f"threshold must be an integer >= 1, got {threshold!r}")
        _check_seconds("reset_timeout", reset_timeout)
        self.threshold = threshold
        self.reset_timeout = float(reset_timeout)

    def _fire(self, event: str, now: float) -> None:
        old = self._state
        new = _BREAKER_TRANSITIONS[old].get(event, old)
        if new is CircuitState.OPEN and old is not CircuitState.OPEN:
            self.opened_at = now
            self.times_opened += 1
        elif new is CircuitState.CLOSED:
            self.opened_at = None
        self._state = new

    def record_failure(self, now: float) -> None:
        self.consecutive_failures += 1
        trips = self.consecutive_failures >= self.threshold
        self._fire(_TRIP if trips else _FAILURE, now)

    def record_success(self, now: float) -> None:
        self.consecutive_failures = 0
        self._fire(_SUCCESS, now)

    def allow(self, now: float) -> bool:
        """May a connection attempt be made now? (May move open -> half-open.)"""
        state = self._state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.OPEN:
            assert self.opened_at is not None
            if now - self.opened_at >= self.reset_timeout:
                self._fire(_PROBE, now)
                return True
        return False

    def release_probe(self, now: float) -> None:
        """Give back a half-open probe that ended without an outcome (e.g. shutdown)."""
        if self._state is CircuitState.HALF_OPEN:
            self._fire(_RELEASE, now)
            self.opened_at = now - self.reset_timeout

    def state(self, now: float) -> CircuitState:
        """The state as seen at ``now``: an open breaker whose cool-down has passed
        reports half-open (the next :meth:`allow` will let a probe through)."""
        if (
            self._state is CircuitState.OPEN
            and self.opened_at is not None
            and now - self.opened_at >= self.reset_timeout
        ):
            return CircuitState.HALF_OPEN
        return self._state

    def retry_at(self, now: float) -> Optional[float]:
        """When an open breaker will allow a probe (may be <= now); None otherwise."""
        if self._state is CircuitState.OPEN and self.opened_at is not None:
            return self.opened_at + self.reset_timeout
        return None

    def reset(self) -> None:
        self.consecutive_failures = 0
        self.opened_at = None
        self._state = CircuitState.CLOSED


# --------------------------------------------------------------------------- heartbeat


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


# --------------------------------------------------------------------------- recovery plan

#: Server-mandated waits by WebSocket close code, as (lo, hi) seconds; the service
#: draws the floor uniformly from that range (:meth:`RecoveryPlan.draw_floor`).
#: 1012 service restart: "reconnect after a randomized 5-30 s" (docs/faults.rst, close codes).
#: 1013 try again later, 4029 rate limited: a long wait, 10-60 s, unless the
#: server gave a Retry-After (which then sets ``delay_floor``).
_CLOSE_CODE_FLOORS: Mapping[int, Tuple[float, float]] = {
    1012: (5.0, 30.0),
    1013: (10.0, 60.0),
    4029: (10.0, 60.0),
}


def close_code_floor(code: Optional[int]) -> Tuple[float, float]:
    """The (lo, hi) seconds range of the minimum reconnect delay after close ``code``.

    ``(0.0, 0.0)`` for every code without a policy (normal backoff applies).
    """
    if code is None:
        return (0.0, 0.0)
    return _CLOSE_CODE_FLOORS.get(code, (0.0, 0.0))


@dataclass(frozen=True)
class RecoveryPlan:
    """What to do about one connection error (an immutable value).

    ``delay_floor`` is the server's explicit wait (``Retry-After``/SSE ``retry:``,
    seconds); ``floor_range`` the close-code policy range. The actual floor for
    :meth:`Backoff.delay` is :meth:`draw_floor`.
    """

    reconnect: bool
    fallback: bool
    queue_offline: bool
    notify: bool
    escalate: bool
    delay_floor: float = 0.0
    floor_range: Tuple[float, float] = (0.0, 0.0)
    terminal: bool = False

    def draw_floor(self, rng: random.Random) -> float:
        """``max(delay_floor, uniform(*floor_range))`` (no draw when the range is empty)."""
        lo, hi = self.floor_range
        drawn = rng.uniform(lo, hi) if hi > 0 else 0.0
        return max(self.delay_floor, drawn)


def recovery_plan(
    error: MagkConnectionError,
    recovery: ErrorRecoveryConfig,
    *,
    auto_reconnect: bool,
    fallback_available: bool,
    max_delay_floor: float = math.inf,
) -> RecoveryPlan:
    """Map an error to a :class:`RecoveryPlan` through the category's strategies.

    ``delay_floor`` is the error's ``retry_after`` capped at ``max_delay_floor`` seconds
    (the service passes ``max_retry_after_ms``; see :func:`cap_server_wait`).

    * ``reconnect`` needs ``RECONNECT`` among the strategies and ``auto_reconnect``.
    * ``fallback`` needs ``FALLBACK_CONNECTION`` and ``fallback_available`` (the
      caller knows whether the other transport is configured); it does not depend
      on ``auto_reconnect``, so a failing first ``connect()`` may still switch.
    * ``error.terminal`` (auth, SSE 204, TLS verification, 1002/1003/1007/1010)
      forces ``reconnect`` and ``fallback`` off whatever the strategies say, and
      forces ``notify`` on: the user must hear about an error we will not retry.
    * ``queue_offline``/``notify``/``escalate``: the strategies as configured.
    """
    strategies = recovery.strategies_for(error.category)
    terminal = bool(error.terminal)
    return RecoveryPlan(
        reconnect=auto_reconnect and RecoveryStrategy.RECONNECT in strategies and not terminal,
        fallback=fallback_available and RecoveryStrategy.FALLBACK_CONNECTION in strategies and not terminal,
        queue_offline=RecoveryStrategy.QUEUE_OFFLINE in strategies,
        notify=terminal or RecoveryStrategy.NOTIFY_ONLY in strategies,
        escalate=RecoveryStrategy.ESCALATE in strategies,
        delay_floor=cap_server_wait(error.retry_after, max_delay_floor),
        floor_range=close_code_floor(error.close_code),
        terminal=terminal,
    )
