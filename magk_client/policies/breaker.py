"""The circuit breaker (pure: time is passed in)."""

from __future__ import annotations

from typing import Mapping, Optional

from ..config import RealtimeConnectionConfig
from ..errors import ConfigError
from ..models import CircuitState
from ._checks import _check_seconds

__all__ = ["CircuitBreaker"]


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
