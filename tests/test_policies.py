"""Pure tests of magk_client.policies: a hand-advanced clock and a seeded RNG, no sockets."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from magk_client.config import ErrorRecoveryConfig, RealtimeConnectionConfig, RecoveryStrategy
from magk_client.errors import (
    AuthError,
    ConfigError,
    MagkTimeoutError,
    NetworkError,
    ProtocolError,
    ServerError,
    classify_close_code,
    classify_http_status,
)
from magk_client.models import CircuitState
from magk_client.policies import (
    Backoff,
    CircuitBreaker,
    HeartbeatMonitor,
    ReconnectTracker,
    RecoveryPlan,
    cap_server_wait,
    close_code_floor,
    recovery_plan,
)

# ----------------------------------------------------------------------------- Backoff


def test_backoff_ceiling_grows_then_caps() -> None:
    b = Backoff(initial_ms=1000, max_ms=30000, multiplier=2.0)
    assert [b.ceiling(k) for k in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert b.ceiling(-3) == 1.0


@pytest.mark.parametrize("attempt", [1024, 10**6, 10**18, 2**200])
def test_backoff_huge_attempt_does_not_overflow(attempt: int) -> None:
    b = Backoff(initial_ms=100, max_ms=5000, multiplier=3)
    assert b.ceiling(attempt) == 5.0
    lo, hi = b.envelope(attempt)
    assert (lo, hi) == (0.0, 5.0)
    assert 0.0 <= b.delay(attempt, random.Random(1)) <= 5.0


def test_backoff_multiplier_one_is_constant() -> None:
    b = Backoff(initial_ms=250, max_ms=250, multiplier=1.0)
    assert {b.ceiling(k) for k in (0, 1, 50, 10**9)} == {0.25}


def test_backoff_full_jitter_spreads_over_whole_envelope() -> None:
    b = Backoff(initial_ms=1000, max_ms=30000, multiplier=2.0)
    rng = random.Random(42)
    draws = [b.delay(3, rng) for _ in range(2000)]
    assert all(0.0 <= d <= 8.0 for d in draws)
    # full jitter: both ends of [0, 8] are reached, not just a band near the ceiling
    assert min(draws) < 0.1
    assert max(draws) > 7.9
    assert 3.5 < sum(draws) / len(draws) < 4.5


def test_backoff_floor_raises_lower_bound() -> None:
    b = Backoff(initial_ms=1000, max_ms=30000, multiplier=2.0)
    rng = random.Random(7)
    assert b.envelope(0, floor=3.0) == (3.0, 3.0)  # floor above the ceiling wins outright
    assert all(b.delay(0, rng, floor=3.0) == 3.0 for _ in range(100))
    assert b.envelope(4, floor=3.0) == (3.0, 16.0)
    draws = [b.delay(4, rng, floor=3.0) for _ in range(500)]
    assert all(3.0 <= d <= 16.0 for d in draws)
    assert any(d > 3.0 for d in draws)


@pytest.mark.parametrize("bad_floor", [-1.0, float("nan")])
def test_backoff_bad_floor_is_ignored(bad_floor: float) -> None:
    b = Backoff(initial_ms=1000, max_ms=1000, multiplier=2.0)
    assert b.envelope(0, floor=bad_floor) == (0.0, 1.0)
    assert 0.0 <= b.delay(0, random.Random(0), floor=bad_floor) <= 1.0


@settings(max_examples=150, deadline=None)
@given(
    initial=st.floats(min_value=1, max_value=10_000),
    factor=st.floats(min_value=1, max_value=100),
    multiplier=st.floats(min_value=1, max_value=10),
    attempt=st.integers(min_value=0, max_value=10**12),
    floor=st.floats(min_value=0, max_value=120),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_delay_always_inside_envelope(
    initial: float, factor: float, multiplier: float, attempt: int, floor: float, seed: int
) -> None:
    b = Backoff(initial_ms=initial, max_ms=initial * factor, multiplier=multiplier)
    lo, hi = b.envelope(attempt, floor)
    d = b.delay(attempt, random.Random(seed), floor)
    assert lo <= d <= hi
    assert lo == floor
    assert hi <= max(floor, initial * factor / 1000.0) + 1e-12
    # the ceiling never shrinks as attempts grow
    assert b.ceiling(attempt + 1) >= b.ceiling(attempt)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_ms": 0, "max_ms": 10, "multiplier": 2},
        {"initial_ms": 10, "max_ms": 5, "multiplier": 2},
        {"initial_ms": 10, "max_ms": 50, "multiplier": 0.5},
        {"initial_ms": float("nan"), "max_ms": 50, "multiplier": 2},
        {"initial_ms": 10, "max_ms": float("inf"), "multiplier": 2},
        {"initial_ms": True, "max_ms": 50, "multiplier": 2},
    ],
)
def test_backoff_rejects_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        Backoff(**kwargs)


def test_backoff_from_config_and_is_immutable() -> None:
    cfg = RealtimeConnectionConfig(
        reconnect_interval_ms=500, max_reconnect_interval_ms=8000, reconnect_backoff_multiplier=3
    )
    b = Backoff.from_config(cfg)
    assert b == Backoff(500.0, 8000.0, 3.0)
    assert b.ceiling(1) == 1.5
    with pytest.raises(AttributeError):
        b.initial_ms = 1  # type: ignore[misc]


# ----------------------------------------------------------------------------- ReconnectTracker


def _tracker(max_attempts: int = 10, min_stable: float = 5.0) -> ReconnectTracker:
    return ReconnectTracker(Backoff(1000, 30000, 2.0), max_attempts=max_attempts, min_stable=min_stable)


def test_tracker_initial_failures_grow_from_k0() -> None:
    t = _tracker()
    assert (t.attempts, t.exhausted) == (0, False)
    t.on_attempt_failed(0.0)
    assert t.attempts == 0
    assert t.next_envelope() == (0.0, 1.0)
    t.on_attempt_failed(1.0)
    assert t.attempts == 1
    assert t.next_envelope() == (0.0, 2.0)
    t.on_attempt_failed(3.0)
    assert t.next_envelope() == (0.0, 4.0)


def test_tracker_accept_then_close_never_resets() -> None:
    """A server that accepts and closes at once: the delays keep growing (no storm)."""
    t = _tracker(max_attempts=100)
    now = 0.0
    ceilings = []
    for _ in range(8):
        t.on_connected(now)
        now += 0.01  # closed right away
        t.on_disconnected(now)
        ceilings.append(t.next_envelope()[1])
        now += t.next_delay(random.Random(0))
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert t.attempts == 7


def test_tracker_just_below_min_stable_is_not_stable() -> None:
    t = _tracker(min_stable=5.0)
    t.on_attempt_failed(0.0)
    t.on_attempt_failed(1.0)
    t.on_connected(10.0)
    assert not t.is_stable(14.999)
    t.on_disconnected(14.999)
    assert t.attempts == 2


def test_tracker_stable_connection_resets_to_k0() -> None:
    t = _tracker(min_stable=5.0)
    for now in (0.0, 1.0, 3.0, 7.0):
        t.on_attempt_failed(now)
    assert t.attempts == 3
    t.on_connected(20.0)
    assert not t.is_stable(24.0)
    assert t.is_stable(25.0)
    t.on_disconnected(25.0)
    # a new outage: the next retry is k = 0 again
    assert (t.attempts, t.failures) == (0, 1)
    assert t.next_envelope() == (0.0, 1.0)
    # and the next failure continues at k = 1 (docs/faults.rst row 4: "next failure restarts at k=0")
    t.on_attempt_failed(26.0)
    assert t.next_envelope() == (0.0, 2.0)


def test_tracker_disconnect_twice_counts_once() -> None:
    t = _tracker()
    t.on_connected(0.0)
    t.on_disconnected(0.5)
    t.on_disconnected(0.6)
    assert t.failures == 1
    assert not t.connected


def test_tracker_exhaustion_refused_n_times() -> None:
    """max_attempts reconnect attempts after the first failure, then exhausted."""
    t = _tracker(max_attempts=3)
    t.on_attempt_failed(0.0)  # initial connect
    made = 0
    while not t.exhausted:
        made += 1
        t.on_attempt_failed(float(made))
    assert made == 3
    assert t.attempts == 3


def test_tracker_max_attempts_zero_never_retries() -> None:
    t = _tracker(max_attempts=0)
    assert not t.exhausted  # nothing failed yet
    t.on_connected(0.0)
    t.on_disconnected(100.0)  # even after a stable connection
    assert t.exhausted
    t.reset()
    t.on_attempt_failed(200.0)
    assert t.exhausted


def test_tracker_floor_and_reset_and_config() -> None:
    cfg = RealtimeConnectionConfig(max_reconnect_attempts=4, min_stable_connection_ms=2500)
    t = ReconnectTracker.from_config(cfg)
    assert (t.max_attempts, t.min_stable) == (4, 2.5)
    t.on_attempt_failed(0.0)
    assert t.next_delay(random.Random(3), floor=3.0) >= 3.0
    t.reset()
    assert (t.failures, t.attempts, t.connected) == (0, 0, False)
    with pytest.raises(ConfigError):
        ReconnectTracker(Backoff(1, 1, 1), max_attempts=-1, min_stable=0)
    with pytest.raises(ConfigError):
        ReconnectTracker(Backoff(1, 1, 1), max_attempts=1, min_stable=-1)


def test_tracker_flapping_attempt_count_is_bounded_by_envelope() -> None:
    """docs/faults.rst row 10: RST every 300 ms for 20 s; the count of attempts stays small."""
    t = _tracker(max_attempts=1000, min_stable=5.0)
    rng = random.Random(10)
    now, connects = 0.0, 0
    while now < 20.0:
        t.on_connected(now)
        connects += 1
        now += 0.3
        t.on_disconnected(now)
        now += t.next_delay(rng)
    # with full jitter the expected sum of delays of k = 0..n is about half the ceilings' sum
    assert connects <= 12
    assert t.attempts == connects - 1


# ----------------------------------------------------------------------------- CircuitBreaker


def test_breaker_full_cycle_with_single_probe() -> None:
    cb = CircuitBreaker(threshold=3, reset_timeout=10.0)
    assert cb.allow(0.0) and cb.state(0.0) is CircuitState.CLOSED
    cb.record_failure(1.0)
    cb.record_failure(2.0)
    assert cb.state(2.0) is CircuitState.CLOSED and cb.allow(2.0)
    cb.record_failure(3.0)
    assert cb.consecutive_failures == 3
    assert cb.state(3.0) is CircuitState.OPEN
    assert not cb.allow(3.0) and not cb.allow(12.99)
    assert cb.retry_at(5.0) == 13.0
    # the cool-down has passed: reported half-open, one probe only
    assert cb.state(13.0) is CircuitState.HALF_OPEN
    assert cb.allow(13.0) is True
    assert cb.allow(13.0) is False
    assert cb.allow(100.0) is False  # still waiting for the probe's outcome
    assert cb.retry_at(100.0) is None
    # the probe fails: open again, with a fresh timer from the failure
    cb.record_failure(100.0)
    assert cb.state(100.0) is CircuitState.OPEN
    assert cb.retry_at(100.0) == 110.0
    assert not cb.allow(109.0)
    assert cb.allow(110.0)
    # this probe succeeds: closed, counter reset
    cb.record_success(111.0)
    assert cb.state(111.0) is CircuitState.CLOSED
    assert cb.consecutive_failures == 0 and cb.allow(111.0)
    assert cb.times_opened == 2


def test_breaker_success_resets_consecutive_count() -> None:
    cb = CircuitBreaker(threshold=2, reset_timeout=1.0)
    cb.record_failure(0.0)
    cb.record_success(0.1)
    cb.record_failure(0.2)
    assert cb.state(0.2) is CircuitState.CLOSED


def test_breaker_late_failure_while_open_does_not_extend_timer() -> None:
    cb = CircuitBreaker(threshold=1, reset_timeout=5.0)
    cb.record_failure(0.0)
    cb.record_failure(4.0)
    assert cb.retry_at(4.0) == 5.0
    assert cb.allow(5.0)


def test_breaker_released_probe_can_probe_again() -> None:
    cb = CircuitBreaker(threshold=1, reset_timeout=5.0)
    cb.record_failure(0.0)
    assert cb.allow(6.0)
    cb.release_probe(7.0)
    assert cb.state(7.0) is CircuitState.HALF_OPEN
    assert cb.allow(7.0) and not cb.allow(7.0)


def test_tracker_reconfigure_keeps_failures_and_connection_start() -> None:
    t = ReconnectTracker(Backoff(1000, 30000, 2.0), max_attempts=10, min_stable=5.0)
    t.on_attempt_failed(0.0)
    t.on_attempt_failed(1.0)
    t.on_connected(2.0)
    t.reconfigure(Backoff(100, 800, 1.5), max_attempts=3, min_stable=1.0)
    assert (t.failures, t.connected_at, t.max_attempts, t.min_stable) == (2, 2.0, 3, 1.0)
    assert t.next_envelope() == (0.0, 0.15)  # the new backoff, the kept retry index 1
    t.on_disconnected(3.5)  # up 1.5 s: stable under the new min_stable
    assert t.failures == 1
    with pytest.raises(ConfigError):
        t.reconfigure(Backoff(1, 1, 1), max_attempts=-1, min_stable=0)


def test_breaker_reconfigure_keeps_an_open_breaker_and_its_timer() -> None:
    cb = CircuitBreaker(2, 10.0)
    cb.record_failure(0.0)
    cb.record_failure(1.0)
    assert cb.state(1.0) is CircuitState.OPEN
    cb.reconfigure(5, 4.0)
    assert cb.state(4.9) is CircuitState.OPEN and not cb.allow(4.9)  # timer from when it opened (1.0)
    assert cb.allow(5.0) and cb.state(5.0) is CircuitState.HALF_OPEN
    assert cb.consecutive_failures == 2
    with pytest.raises(ConfigError):
        cb.reconfigure(0, 1.0)


def test_breaker_validation_and_config() -> None:
    with pytest.raises(ConfigError):
        CircuitBreaker(0, 1.0)
    with pytest.raises(ConfigError):
        CircuitBreaker(1, 0.0)
    cb = CircuitBreaker.from_config(
        RealtimeConnectionConfig(circuit_breaker_threshold=7, circuit_breaker_reset_ms=1500)
    )
    assert (cb.threshold, cb.reset_timeout) == (7, 1.5)


# ----------------------------------------------------------------------------- HeartbeatMonitor


def test_heartbeat_ping_schedule_and_pong_rtt() -> None:
    hb = HeartbeatMonitor(interval=30.0, timeout=10.0)
    assert hb.next_deadline(0.0) == math.inf
    hb.start(100.0)
    assert not hb.ping_due(129.9) and hb.ping_due(130.0)
    assert hb.next_deadline(100.0) == 130.0
    pid = hb.make_ping(130.0)
    assert pid.startswith("p-") and hb.outstanding == 1
    assert hb.next_deadline(130.0) == 140.0  # the ping's expiry comes before the next ping
    rtt = hb.on_pong(pid, 130.25)
    assert rtt == pytest.approx(0.25)
    assert hb.outstanding == 0 and hb.last_pong_at == 130.25
    assert hb.next_deadline(130.25) == 160.0
    assert not hb.is_dead(1000.0)  # no ping outstanding
    assert hb.on_pong(pid, 131.0) is None  # answered already: stale


def test_heartbeat_ping_ids_are_unique() -> None:
    hb = HeartbeatMonitor(1.0, 0.5)
    hb.start(0.0)
    ids = {hb.make_ping(float(i)) for i in range(100)}
    assert len(ids) == 100
    assert hb.outstanding == HeartbeatMonitor.max_outstanding


@pytest.mark.parametrize("last_activity", [0.0, 0.001, 12.3, 29.999, 30.0, 44.5])
def test_heartbeat_silent_peer_detected_within_interval_plus_timeout(last_activity: float) -> None:
    """docs/faults.rst row 2: a supervisor waking at next_deadline() detects a silent peer by L + I + T."""
    interval, timeout = 30.0, 10.0
    hb = HeartbeatMonitor(interval, timeout)
    hb.start(0.0)
    now, detected_at, activity_pending = 0.0, None, True
    while now < 500.0:
        if activity_pending and now == last_activity:
            hb.on_activity(now)  # the peer's last bytes
            activity_pending = False
        if hb.is_dead(now):
            detected_at = now
            break
        if hb.ping_due(now):
            pid = hb.make_ping(now)
            if now < last_activity:
                assert hb.on_pong(pid, now) == 0.0  # the peer answers while it lives
        wake = hb.next_deadline(now)
        assert wake > now
        if activity_pending and last_activity < wake:
            wake = last_activity
        now = wake
    assert detected_at is not None
    assert detected_at <= last_activity + interval + timeout + 1e-9
    assert detected_at >= last_activity + timeout  # never before T has passed since L


def test_heartbeat_activity_after_ping_is_liveness_but_not_rtt() -> None:
    hb = HeartbeatMonitor(interval=5.0, timeout=2.0)
    hb.start(0.0)
    pid = hb.make_ping(5.0)
    hb.on_activity(6.0)  # data flowing, pong delayed
    assert not hb.is_dead(7.5)
    assert hb.latency_avg_ms() is None
    # a late pong still measures its RTT
    assert hb.on_pong(pid, 8.0) == pytest.approx(3.0)
    # but the next ping with nothing after it is fatal at send + timeout
    hb.make_ping(10.0)
    assert not hb.is_dead(11.99)
    assert hb.is_dead(12.0)


def test_heartbeat_unknown_pong_ignored_and_counted() -> None:
    hb = HeartbeatMonitor(interval=5.0, timeout=2.0)
    hb.start(0.0)
    hb.make_ping(5.0)
    assert hb.on_pong("p-999", 5.1) is None
    assert hb.on_pong(123, 5.1) is None  # type: ignore[arg-type]
    assert hb.unmatched_pongs == 2
    assert hb.outstanding == 1
    assert hb.is_dead(7.0)  # an unsolicited pong is not an answer (the caller may still call on_activity)


def test_heartbeat_pong_clears_older_outstanding_pings() -> None:
    hb = HeartbeatMonitor(interval=1.0, timeout=1.0)
    hb.start(0.0)
    a = hb.make_ping(1.0)
    b = hb.make_ping(2.0)
    c = hb.make_ping(3.0)
    assert hb.on_pong(b, 3.5) == pytest.approx(1.5)
    assert hb.outstanding == 1
    assert hb.on_pong(a, 3.6) is None  # older than an answered one: stale
    assert hb.on_pong(c, 3.7) == pytest.approx(0.7)


def test_heartbeat_start_forgets_outstanding_pings() -> None:
    hb = HeartbeatMonitor(interval=1.0, timeout=0.5)
    hb.start(0.0)
    pid = hb.make_ping(1.0)
    hb.start(10.0)
    assert not hb.is_dead(10.6)
    assert hb.on_pong(pid, 10.1) is None
    assert hb.next_ping_at == 11.0


def test_heartbeat_latency_percentiles_over_history() -> None:
    hb = HeartbeatMonitor(interval=1.0, timeout=1.0, history=100)
    hb.start(0.0)
    now = 0.0
    # 150 pings; only the last 100 (RTTs 51..150 ms) count
    for i in range(1, 151):
        pid = hb.make_ping(now)
        hb.on_pong(pid, now + i / 1000.0)
        now += 1.0
    assert len(hb.rtts()) == 100
    assert hb.latency_avg_ms() == pytest.approx(100.5)
    assert hb.latency_p50_ms() == pytest.approx(100.0)
    assert hb.latency_p99_ms() == pytest.approx(149.0)
    empty = HeartbeatMonitor(1.0, 1.0)
    assert (empty.latency_avg_ms(), empty.latency_p50_ms(), empty.latency_p99_ms()) == (None, None, None)


def test_heartbeat_sse_silence() -> None:
    hb = HeartbeatMonitor(interval=15.0, timeout=5.0)
    assert not hb.is_silent(1000.0)  # never started
    hb.start(0.0)
    assert hb.silence_deadline() == 20.0
    hb.on_activity(12.0)  # a ": keep-alive" comment
    assert not hb.is_silent(31.9)
    assert hb.is_silent(32.0)
    assert hb.silence_deadline() == 32.0
    # an explicit last_activity overrides the monitor's own record
    assert not hb.is_silent(32.0, last_activity=20.0)
    assert hb.is_silent(40.0, last_activity=20.0)


def test_heartbeat_reconfigure_keeps_rtts_and_outstanding_pings() -> None:
    hb = HeartbeatMonitor(10.0, 5.0)
    hb.start(0.0)
    first = hb.make_ping(10.0)
    hb.on_pong(first, 10.2)
    hb.make_ping(20.0)  # outstanding
    hb.reconfigure(4.0, 1.0)
    assert hb.next_ping_at == 24.0  # the new interval after the previous ping
    assert hb.outstanding == 1 and hb.rtts() == [pytest.approx(0.2)]
    assert not hb.is_dead(20.9) and hb.is_dead(21.0)  # the waiting ping is judged by the new timeout
    with pytest.raises(ConfigError):
        hb.reconfigure(0.0, 1.0)
    idle = HeartbeatMonitor(1.0, 1.0)
    idle.reconfigure(2.0, 1.0)  # not started: nothing scheduled
    assert idle.next_ping_at == math.inf


def test_heartbeat_validation_and_config() -> None:
    for args in ((0.0, 1.0), (1.0, 0.0), (float("nan"), 1.0), (1.0, -1.0)):
        with pytest.raises(ConfigError):
            HeartbeatMonitor(*args)
    with pytest.raises(ConfigError):
        HeartbeatMonitor(1.0, 1.0, history=0)
    hb = HeartbeatMonitor.from_config(RealtimeConnectionConfig(heartbeat_interval_ms=2000, heartbeat_timeout_ms=500))
    assert (hb.interval, hb.timeout) == (2.0, 0.5)


# ----------------------------------------------------------------------------- recovery plan


def _plan(error: Exception, recovery: ErrorRecoveryConfig | None = None, **kw: bool) -> RecoveryPlan:
    kw.setdefault("auto_reconnect", True)
    kw.setdefault("fallback_available", True)
    return recovery_plan(error, recovery or ErrorRecoveryConfig(), **kw)  # type: ignore[arg-type]


def test_plan_network_default() -> None:
    p = _plan(NetworkError("reset"))
    assert (p.reconnect, p.fallback, p.queue_offline, p.notify, p.escalate) == (True, False, True, False, False)
    assert (p.delay_floor, p.floor_range, p.terminal) == (0.0, (0.0, 0.0), False)


def test_plan_timeout_and_protocol_defaults() -> None:
    t = _plan(MagkTimeoutError("heartbeat"))
    assert (t.reconnect, t.queue_offline, t.notify) == (True, False, False)
    p = _plan(ProtocolError("bad json"))
    assert (p.reconnect, p.notify) == (True, True)


def test_plan_server_error_falls_back_only_when_available() -> None:
    assert _plan(ServerError("500")).fallback is True
    assert _plan(ServerError("500"), fallback_available=False).fallback is False
    # fallback does not depend on auto_reconnect; reconnect does
    p = _plan(ServerError("500"), auto_reconnect=False)
    assert (p.reconnect, p.fallback) == (False, True)


@pytest.mark.parametrize(
    "error",
    [
        AuthError("401", status=401),
        classify_http_status(403, "handshake"),
        classify_close_code(1008),
        classify_close_code(4401),
        classify_close_code(1002),
    ],
)
def test_plan_terminal_never_reconnects_whatever_the_strategies(error: Exception) -> None:
    greedy = ErrorRecoveryConfig(
        auth_errors=[RecoveryStrategy.RECONNECT, RecoveryStrategy.FALLBACK_CONNECTION],
        protocol_errors=[RecoveryStrategy.RECONNECT, RecoveryStrategy.FALLBACK_CONNECTION],
    )
    p = _plan(error, greedy)
    assert (p.reconnect, p.fallback, p.terminal, p.notify) == (False, False, True, True)


def test_plan_retry_after_floor() -> None:
    err = classify_http_status(503, "handshake", retry_after=3.0)
    p = _plan(err)
    assert p.delay_floor == 3.0
    assert p.draw_floor(random.Random(0)) == 3.0
    b = Backoff(1000, 30000, 2.0)
    # docs/faults.rst row 14: next attempt >= 3 s whatever the jitter draws
    assert all(b.delay(0, random.Random(s), p.draw_floor(random.Random(s))) >= 3.0 for s in range(200))
    assert _plan(ServerError("x", retry_after=-5.0)).delay_floor == 0.0


def test_plan_retry_after_is_capped() -> None:
    # a hostile Retry-After (99999999999 s, or a date in the year 9999) becomes the cap, not centuries
    huge = ServerError("x", retry_after=251_000_000_000.0)
    assert _plan(huge).delay_floor == 251_000_000_000.0  # uncapped unless asked
    p = recovery_plan(huge, ErrorRecoveryConfig(), auto_reconnect=True, fallback_available=False, max_delay_floor=300.0)
    assert p.delay_floor == 300.0 and p.draw_floor(random.Random(0)) == 300.0
    assert cap_server_wait(2.0, 300.0) == 2.0
    assert cap_server_wait(math.inf, 300.0) == 300.0
    for nothing in (None, math.nan, -1.0):
        assert cap_server_wait(nothing, 300.0) == 0.0


@pytest.mark.parametrize(
    ("code", "lo", "hi"),
    [(1012, 5.0, 30.0), (1013, 10.0, 60.0), (4029, 10.0, 60.0), (1011, 0.0, 0.0), (1001, 0.0, 0.0)],
)
def test_plan_close_code_floors(code: int, lo: float, hi: float) -> None:
    assert close_code_floor(code) == (lo, hi)
    p = _plan(classify_close_code(code))
    assert p.reconnect is True
    assert p.floor_range == (lo, hi)
    rng = random.Random(code)
    floors = [p.draw_floor(rng) for _ in range(300)]
    assert all(lo <= f <= hi for f in floors)
    if hi:
        assert max(floors) - min(floors) > (hi - lo) / 2  # randomised, not a constant


def test_close_code_floor_default() -> None:
    assert close_code_floor(None) == (0.0, 0.0)
    assert close_code_floor(4999) == (0.0, 0.0)


def test_plan_custom_recovery_config() -> None:
    cfg = ErrorRecoveryConfig(
        network_errors=[RecoveryStrategy.ESCALATE],
        unknown_errors=[],
    )
    p = _plan(NetworkError("refused"), cfg)
    assert (p.reconnect, p.fallback, p.queue_offline, p.notify, p.escalate) == (
        False,
        False,
        False,
        False,
        True,
    )
    from magk_client.errors import MagkConnectionError

    q = _plan(MagkConnectionError("???"), cfg)  # category unknown, no strategies
    assert not (q.reconnect or q.fallback or q.queue_offline or q.notify or q.escalate)


def test_plan_auto_reconnect_off() -> None:
    assert _plan(NetworkError("x"), auto_reconnect=False).reconnect is False
