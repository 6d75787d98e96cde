"""Backoff and reconnect bookkeeping (pure: time and randomness are passed in)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Optional, Tuple

from ..config import RealtimeConnectionConfig
from ..errors import ConfigError
from ._checks import _check_seconds, _finite_non_negative

__all__ = ["Backoff", "ReconnectTracker"]


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
        self.reconfigure(backoff, max_attempts, min_stable)  # checks and sets the three settings
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
