"""The one set of fast test timings, and upper bounds on elapsed time derived from a test's config.

Tests assert that something happened by a time the config sets (a timeout, a backoff ceiling, a
heartbeat), never against a bare wall-clock figure: a loaded CI machine (two cores shared by many
jobs) runs threads late, so an upper bound is the configured time scaled by :data:`LOAD_FACTOR`
plus :data:`MARGIN_S`. Lower bounds stay exact (a machine is never early).
"""

from __future__ import annotations

from typing import Any, Dict

#: fast retries, a slow heartbeat, no fallback, effectively unlimited attempts (RealtimeService options)
FAST: Dict[str, Any] = dict(
    fallback_to_secondary=False,
    reconnect_interval_ms=20,
    max_reconnect_interval_ms=200,
    heartbeat_interval_ms=2000,
    heartbeat_timeout_ms=1000,
    connection_timeout_ms=3000,
    message_timeout_ms=3000,
    min_stable_connection_ms=0,
    max_reconnect_attempts=1000,
    circuit_breaker_threshold=1000,
)

#: how many times slower than configured a loaded machine may run a timed step
LOAD_FACTOR = 3.0
#: added to every upper bound: thread scheduling, interpreter start-up of a step (seconds)
MARGIN_S = 2.0


def seconds(ms: float) -> float:
    """A config duration (milliseconds) in seconds."""
    return ms / 1000.0


def within(configured_s: float) -> float:
    """The upper bound (seconds) for something the config says takes ``configured_s`` seconds."""
    return configured_s * LOAD_FACTOR + MARGIN_S


def well_before(timeout_s: float) -> float:
    """The upper bound (seconds) showing that something did *not* sit out a ``timeout_s`` wait (a
    close that must not wait for a send timeout): half of it. Tests pick ``timeout_s`` large
    enough (several seconds) for half of it to be generous."""
    return timeout_s / 2.0


#: how long a call that must not block at all (the public API while a socket is stuck, a close from a
#: callback) may take on a loaded machine: generous, and far below the hang it rules out (no timeout
#: would end it, or a wait of ten seconds and more)
PROMPT_S = 3.0
