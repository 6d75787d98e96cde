"""Fault rows (docs/faults.rst) of issue 3 (WebSocket) shown on the RealtimeService, end to end.

Real sockets on 127.0.0.1: the reference ``Backend``, a ``FaultProxy`` in front of it where a network
fault is needed, and raw RFC 6455 servers (``magk_client.testing.raw``, from the ``raw_servers``
fixture) for frames the backend cannot send. Long scenarios are scaled down (figures in each test).
Nothing is mocked; waits are on recorders, ``Backend.wait_until`` and ``FaultProxy.wait_until``; the
only timed waits are a fault schedule (row 10) and bounded "nothing else happens" checks. Every test ends with the SDK's threads gone.

====  ==========================================================================================
row   shown by
====  ==========================================================================================
1     test_row01_reset_mid_stream_first_retry_at_k0_nothing_lost_queue_replayed
      (also test_service_ws.py::test_drop_then_messages_sent_offline_arrive_in_order,
      ::test_resume_after_drop_delivers_each_event_once_in_order; "resubscribe": subscriptions are
      client-side in this protocol, the test shows they keep receiving after the reconnect)
2     test_row02_half_open_blackhole_detected_within_interval_plus_timeout
      (application-level silence: test_service_ws.py::test_silent_backend_detected_within_interval_plus_timeout)
3     test_row03_peer_stops_reading_10mb_send_is_bounded_then_delivered_once
4     test_row04_refused_n_times_backoff_envelope_then_reset_after_stable
5     test_row05_hanging_handshake_each_attempt_bounded_and_interruptible
6     test_row06_latency_and_jitter_no_false_heartbeat_failure
7     test_row07_low_bandwidth_burst_keeps_order_no_false_timeout
8     test_row08_one_byte_segments_byte_identical_no_parse_error
      (transport: test_transport_websocket.py::test_proxy_one_byte_slices)
9     test_row09_cut_mid_frame_at_random_offsets_resumes_without_partial_or_duplicate
10    test_row10_flapping_link_no_storm_no_leak
11    test_row11_long_outage_bounded_queue_breaker_probes_fifo_replay; pure, fake clock:
      test_outbox.py::test_one_million_puts_stay_bounded, ::test_retention_expiry_on_drain_put_and_expire,
      test_policies.py::test_breaker_full_cycle_with_single_probe. "Pending commands time out": the
      service has no command API yet (next issue) - cannot apply.
12    test_row12_restart_codes_1001_1011_1014_reconnect_at_once,
      test_row12_codes_1012_1013_wait_their_floor_and_disconnect_interrupts;
      pure ranges: test_policies.py::test_plan_close_code_floors
13    test_row13_auth_close_codes_terminal_notified_once, test_row13_handshake_401_403_terminal,
      test_row13_handshake_404_without_fallback_is_terminal (found an SDK bug)
      (also test_service_ws.py::test_auth_failure_one_attempt_no_retries, ::test_auth_close_code_is_terminal)
14    test_row14_handshake_retry_after_is_honoured (503 and 429, Retry-After: 1);
      pure: test_policies.py::test_plan_retry_after_floor
15    test_row15_clean_close_1000_reconnects_and_resumes_with_last_event_id
      (policy 1000 -> reconnect: test_service_ws.py::test_close_codes_reconnect_policy)
16    test_row16_protocol_violation_fails_connection_with_code, test_row16_unsolicited_pong_is_ignored
      (every violation at transport level: test_transport_websocket.py::test_protocol_violations_fail_the_connection)
17    test_row17_header_claiming_2_62_bytes_closes_at_once_and_reconnects;
      test_service_ws.py::test_oversized_message_refused_and_connection_recovers; peak memory:
      test_transport_websocket.py::test_memory_of_a_message_at_the_limit_stays_near_twice_the_limit
19    test_row19_hostile_json_burst_counted_exactly_threads_alive
      (one kind at a time: test_service_ws.py::test_hostile_input_is_dropped_counted_and_reader_survives)
26    covered by test_service_ws.py::test_callback_that_raises_is_counted_and_delivery_goes_on
      (threads alive: test_row19 and test_row28 check reader/dispatcher after callbacks)
27    test_row27_callback_disconnect_or_close_returns_quickly
      (also test_service_ws.py::test_callback_can_disconnect_without_deadlock)
28    test_row28_slow_consumer_heartbeat_unaffected_dispatch_queue_bounded
29    test_row29_sixteen_threads_during_forced_reconnects. "One server subscription per topic": the
      protocol has no server-side subscriptions (the server sends every event; routing is local), so
      server-side duplicate subscribes cannot occur - not applicable.
30    test_row30_interpreter_exit_with_live_client, test_row30_close_from_atexit,
      test_row30_use_after_close_and_misuse (also test_service_ws.py::test_lifecycle_misuse_is_idempotent)
31    test_row31_notebook_rerun_orphans_are_reclaimed
32    test_row32_offline_overflow_bounded_and_counted; 1e6 puts and a byte bound: pure,
      test_outbox.py::test_one_million_puts_stay_bounded (the service does not expose a byte bound)
33    test_row33_tls_no_ca_mismatch_expired_are_terminal_single_attempt,
      test_row33_tls_sdk_ca_wins_over_environment (also test_service_ws.py::test_tls_self_signed_refused_by_default_accepted_with_ca,
      test_transport_websocket.py::test_tls_is_verified_by_default_and_env_bundles_do_not_override)
34    test_row34_redirect_not_followed_no_token_to_other_host (302 to 127.0.0.2; ws-from-wss: no redirect
      is ever followed, test_transport_websocket.py::test_redirect_is_refused_and_never_followed)
35    test_row35_debug_and_library_trace_hold_no_secret,
      test_row35_close_reason_echoing_the_token_is_redacted (found an SDK bug)
      (also test_service_ws.py::test_authenticated_session_logs_never_show_token)
36    test_row36_plaintext_token_to_non_loopback_name_refused_before_any_socket (a host name that
      resolves to 127.0.0.1 but is not a loopback literal or "localhost")
====  ==========================================================================================
"""

from __future__ import annotations

import gc
import json
import logging
import random
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
from checks import exception_chain, open_fds, rss_bytes
from service_helpers import (
    build_service,
    errors_of,
    event_ids,
    log_events,
    sdk_threads,
    times_of,
    wait_threads_gone,
)
from timings import FAST, PROMPT_S, seconds, well_before, within

from magk_client import (
    AuthError,
    CircuitOpenError,
    ClientClosedError,
    ConfigError,
    ConnectionHealth,
    ConnectionState,
    MagkTimeoutError,
    RealtimeMessage,
    RealtimeService,
)
from magk_client.codec import InvalidMessage
from magk_client.errors import MessageTooLargeError, NetworkError, ProtocolError, ServerError, TransportClosed
from magk_client.testing import Backend
from magk_client.testing.proxy import FaultProxy
from magk_client.testing.raw import (
    OP_BINARY,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Conn,
    Handler,
    respond,
    ws_frame,
    ws_script,
)
from magk_client.testing.recorder import Recorder, StateRecorder

pytest_plugins = ["service_helpers"]  # its fixtures: server, proxy, and the autouse thread check
pytestmark = pytest.mark.timeout(60)

#: the heartbeat of FAST: it would detect a dead link after interval + timeout
HEARTBEAT_S = seconds(FAST["heartbeat_interval_ms"] + FAST["heartbeat_timeout_ms"])
#: how long the interpreter-exit child may run
CHILD_TIMEOUT_S = 20.0


def make_service(url: str, **overrides: Any) -> RealtimeService:
    return build_service(dict(FAST, websocket_url=url, event_source_url=None), overrides)


def recording_service(
    url: str, **overrides: Any
) -> Tuple[RealtimeService, Recorder[RealtimeMessage], Recorder[Any]]:
    """A service on ``url`` (not connected yet), the recorder of its ``node_log`` messages and the
    recorder of its error reports."""
    got: Recorder[RealtimeMessage] = Recorder()
    errors: Recorder[Any] = Recorder()
    service = make_service(url, **overrides)
    service.on_error(errors)
    service.subscribe("node_log", got)
    return service, got, errors


def receive_while_up(raw: Any, messages: int, reports: int) -> Tuple[List[RealtimeMessage], List[Any], ConnectionHealth]:
    """Connect to the raw server ``raw``; once ``messages`` node_log messages and ``reports`` error
    reports came, with the connection still up, disconnect. Returns both and the health then."""
    service, got, errors = recording_service(raw.ws_url())
    with service:
        got.wait_count(messages)
        errors.wait_count(reports)
        health = service.get_connection_health()
        assert service.is_connected
    return got.items, errors.items, health


# ---------------------------------------------------------------------------------------------
# raw RFC 6455 servers (magk_client.testing.raw) for frames the reference backend never sends


def envelope(i: int) -> bytes:
    return json.dumps({"id": f"r-{i}", "type": "node_log", "data": {"i": i}}).encode()


def send_then_read_close(data: Callable[[Conn], bytes]) -> Handler:
    """Upgrade, send ``data(conn)`` (``conn.index``: the attempt), then read the client's frames
    until its close frame; the code goes to the server's ``close_codes``."""
    return ws_script(lambda conn: (conn.send(data(conn)), conn.read_close_code())[1])


# ---------------------------------------------------------------------------------------------
# rows 1-11: network faults through the proxy


def test_row01_reset_mid_stream_first_retry_at_k0_nothing_lost_queue_replayed(server: Backend, proxy: FaultProxy) -> None:
    states = StateRecorder()
    got: Recorder[RealtimeMessage] = Recorder()
    service = make_service(proxy.url(server.websocket_url), reconnect_interval_ms=100, max_reconnect_interval_ms=1600)
    service.on_connection_state_change(states)
    service.subscribe("node_log", got)
    with service:
        server.publish_many(log_events(100))
        got.wait_count(100)
        proxy.refuse(True)  # the first retry fails at once, so its timing is observable
        reset_at = time.monotonic()
        assert proxy.reset_peer() == 1
        states.wait_state(ConnectionState.RECONNECTING, count=2)  # the drop, then the first retry refused
        detected, first_retry = times_of(states, ConnectionState.RECONNECTING)[:2]
        assert detected - reset_at < well_before(HEARTBEAT_S)  # by the socket, not by the heartbeat
        assert first_retry - reset_at <= within(0.1)  # k = 0: ceiling 100 ms
        assert all(isinstance(e, NetworkError) for e in errors_of(states, ConnectionState.RECONNECTING))
        # the server goes on publishing and the user goes on sending while the link is down
        server.publish_many(log_events(50, start=100))
        assert [service.send_message({"type": "node_log", "data": {"q": i}}) for i in range(10)] == [False] * 10
        proxy.refuse(False)
        got.wait_count(150)
        received = server.wait_for_received(lambda m: m.message.get("data", {}).get("q") == 9)
        health = service.get_connection_health()
    assert event_ids(got.items) == [e["id"] for e in server.logged_events()]  # none lost, none twice
    assert [m.data["i"] for m in got.items] == list(range(150))
    assert [m.message["data"]["q"] for m in server.received_messages if "q" in m.message.get("data", {})] == list(range(10))
    assert received and health.total_reconnects == 1


def test_row02_half_open_blackhole_detected_within_interval_plus_timeout(server: Backend, proxy: FaultProxy) -> None:
    interval, timeout = 0.3, 0.2
    states = StateRecorder()
    pongs: Recorder[RealtimeMessage] = Recorder()
    service = make_service(proxy.url(server.websocket_url), heartbeat_interval_ms=interval * 1000,
                           heartbeat_timeout_ms=timeout * 1000)
    service.on_connection_state_change(states)
    service.subscribe("pong", pongs)
    got: Recorder[RealtimeMessage] = Recorder()
    service.subscribe("node_log", got)
    with service:
        pongs.wait_count(1)  # the heartbeat runs
        proxy.blackhole(True)
        silent_at = time.monotonic()
        states.wait_state(ConnectionState.RECONNECTING, timeout=5)
        detected = times_of(states, ConnectionState.RECONNECTING)[0]
        assert detected - silent_at <= within(interval + timeout)
        assert isinstance(errors_of(states, ConnectionState.RECONNECTING)[0], MagkTimeoutError)
        proxy.blackhole(False)
        states.wait_state(ConnectionState.CONNECTED, count=2, timeout=10)
        server.publish({"type": "node_log", "data": {"back": True}})
        assert got.wait_count(1)[0].data == {"back": True}
        assert service.get_connection_health().total_reconnects >= 1


def test_row03_peer_stops_reading_10mb_send_is_bounded_then_delivered_once() -> None:
    size = 10 * 1024 * 1024
    with Backend(max_body_size=16 * 1024 * 1024) as big, FaultProxy("127.0.0.1", big.port) as proxy:
        states = StateRecorder()
        # queue_offline for timeouts (not a default): the message that timed out waits for the next connection
        service = make_service(proxy.url(big.websocket_url), message_timeout_ms=500,
                               error_recovery={"timeoutErrors": ["reconnect", "queue_offline"]})
        service.on_connection_state_change(states)
        service.connect()
        try:
            proxy.stop_reading(True)
            start = time.monotonic()
            sent = service.send_message({"type": "node_log", "data": {"blob": "b" * size}})
            elapsed = time.monotonic() - start
            assert sent is False  # timed out, queued again for the next connection
            assert elapsed <= within(0.5)  # the message timeout
            states.wait_state(ConnectionState.RECONNECTING, timeout=5)
            assert isinstance(errors_of(states, ConnectionState.RECONNECTING)[0], MagkTimeoutError)
            # no thread is stuck: the public API answers at once while the peer still does not read
            t0 = time.monotonic()
            service.get_connection_health()
            sid = service.subscribe(None, lambda m: None)
            service.unsubscribe(sid)
            assert time.monotonic() - t0 < PROMPT_S
            proxy.stop_reading(False)
            big.wait_until(
                lambda: any(len(m.raw) > size for m in big.received_messages), 20, "the 10 MB message"
            )
            assert sum(1 for m in big.received_messages if len(m.raw) > size) == 1
        finally:
            t0 = time.monotonic()
            service.disconnect()
            assert time.monotonic() - t0 < PROMPT_S


def test_row04_refused_n_times_backoff_envelope_then_reset_after_stable(server: Backend, proxy: FaultProxy) -> None:
    n = 3
    ceilings = [0.1, 0.3, 0.9, 0.9, 0.9]  # initial 100 ms, x3, max 900 ms
    states = StateRecorder()
    pongs: Recorder[RealtimeMessage] = Recorder()
    service = make_service(
        proxy.url(server.websocket_url), reconnect_interval_ms=100, max_reconnect_interval_ms=900,
        reconnect_backoff_multiplier=3.0, min_stable_connection_ms=300, max_reconnect_attempts=5,
        heartbeat_interval_ms=200, heartbeat_timeout_ms=150,
    )
    service.on_connection_state_change(states)
    service.subscribe("pong", pongs)
    proxy.refuse(True)
    service.connect(wait=False)
    try:
        states.wait_for(lambda xs: sum(1 for s, _ in xs if s is ConnectionState.RECONNECTING) >= n, 10, f"{n} refusals")
        proxy.refuse(False)
        states.wait_state(ConnectionState.CONNECTED, timeout=10)
        failures = times_of(states, ConnectionState.RECONNECTING)
        connected = times_of(states, ConnectionState.CONNECTED)[0]
        assert n <= len(failures) <= n + 1  # at most one more attempt raced the listener coming back
        assert proxy.connections_accepted == 1  # attempts = failures + 1, nothing after the success
        for k, (a, b) in enumerate(zip(failures, [*failures[1:], connected])):
            assert b - a <= within(ceilings[k]), (k, b - a)
        # a stable connection (> min_stable) resets the backoff: the next outage starts at k = 0. With
        # max_reconnect_attempts=5 it survives a drop and 2 refused retries; without the reset the
        # failures would add up to >= 6 and the service would give up (state ERROR) on the way.
        pongs.wait_count(2)  # >= 2 heartbeat intervals (400 ms) of healthy uptime
        before = len(failures)
        proxy.refuse(True)
        proxy.reset_peer()
        states.wait_for(
            lambda xs: sum(1 for s, _ in xs if s is ConnectionState.RECONNECTING) >= before + 3
            or any(s is ConnectionState.ERROR for s, _ in xs), 10, "drop + 2 refusals"
        )
        assert ConnectionState.ERROR not in states.states()
        drop, retry1 = times_of(states, ConnectionState.RECONNECTING)[before:before + 2]
        assert retry1 - drop <= within(ceilings[0])
        proxy.refuse(False)
        states.wait_state(ConnectionState.CONNECTED, count=2, timeout=10)
    finally:
        service.disconnect()


def test_row05_hanging_handshake_each_attempt_bounded_and_interruptible(server: Backend, proxy: FaultProxy) -> None:
    connect_timeout = 0.4
    states = StateRecorder()
    proxy.hang_accept(True)
    service = make_service(proxy.url(server.websocket_url), connection_timeout_ms=connect_timeout * 1000,
                           reconnect_interval_ms=10, max_reconnect_interval_ms=20)
    service.on_connection_state_change(states)
    start = time.monotonic()
    service.connect(wait=False)
    try:
        states.wait_for(lambda xs: sum(1 for s, _ in xs if s is ConnectionState.RECONNECTING) >= 3, 10, "3 timeouts")
        failures = times_of(states, ConnectionState.RECONNECTING)[:3]
        assert all(isinstance(e, MagkTimeoutError) for e in errors_of(states, ConnectionState.RECONNECTING)[:3])
        spans = [failures[0] - start] + [b - a for a, b in zip(failures, failures[1:])]
        for span in spans:  # each attempt: connect_timeout (+ a <= 20 ms backoff)
            assert connect_timeout - 0.05 <= span <= within(connect_timeout + 0.02), spans
        # disconnect() in the middle of a hanging handshake returns at once
        assert proxy.wait_until(lambda p: p.connections_accepted >= 4, 5)  # a 4th attempt hangs now
        t0 = time.monotonic()
        service.disconnect()
        assert time.monotonic() - t0 < PROMPT_S
    finally:
        service.disconnect()
    proxy.hang_accept(False)
    service.connect(timeout=5)
    assert service.is_connected
    service.disconnect()


def test_row06_latency_and_jitter_no_false_heartbeat_failure(server: Backend, proxy: FaultProxy) -> None:
    latency, jitter = 0.1, 0.03  # row 6 scaled: 300 +/- 100 ms for 60 s -> 100 +/- 30 ms for ~3 s
    states = StateRecorder()
    pongs: Recorder[RealtimeMessage] = Recorder()
    proxy.set_latency(latency, jitter)
    service = make_service(proxy.url(server.websocket_url), heartbeat_interval_ms=400, heartbeat_timeout_ms=300)
    service.on_connection_state_change(states)
    service.subscribe("pong", pongs)
    with service:
        pongs.wait_count(7, timeout=15)  # ~2.8 s of heartbeats
        health = service.get_connection_health()
    assert health.total_reconnects == 0
    assert ConnectionState.RECONNECTING not in states.states()
    rtt_lo, rtt_hi = 2 * (latency - jitter) * 1000, 2 * (latency + jitter) * 1000
    assert health.latency_p50_ms is not None and health.latency_p99_ms is not None
    assert rtt_lo - 10 <= health.latency_p50_ms <= within(rtt_hi / 1000) * 1000
    assert health.latency_p99_ms <= within(rtt_hi / 1000) * 1000  # the RTT, late at most by the load


def test_row07_low_bandwidth_burst_keeps_order_no_false_timeout(server: Backend, proxy: FaultProxy) -> None:
    # row 7 scaled: 16 KB/s and a 1 MB burst -> 100 KB/s and ~230 KB (one 100 KB event among 1000 small)
    states = StateRecorder()
    got: Recorder[RealtimeMessage] = Recorder()
    service = make_service(proxy.url(server.websocket_url), heartbeat_interval_ms=500, heartbeat_timeout_ms=300)
    service.on_connection_state_change(states)
    service.subscribe("node_log", got)
    with service:
        proxy.set_bandwidth(100_000)
        events = [*log_events(500), {"type": "node_log", "data": {"i": 500, "pad": "z" * 100_000}}, *log_events(500, 501)]
        ids = server.publish_many(events)
        got.wait_count(len(events), timeout=30)
        health = service.get_connection_health()
    assert [m.id for m in got.items] == ids
    assert [m.data["i"] for m in got.items] == list(range(1001))
    assert len(got.items[500].data["pad"]) == 100_000
    assert health.total_reconnects == 0 and ConnectionState.RECONNECTING not in states.states()


def test_row08_one_byte_segments_byte_identical_no_parse_error(server: Backend, proxy: FaultProxy) -> None:
    proxy.set_slice(1)  # the handshake, pings and every event in 1-byte segments
    got: Recorder[RealtimeMessage] = Recorder()
    payloads = [{"text": "é€😀" * (i % 9) + "x" * i, "n": i} for i in range(60)]
    service = make_service(proxy.url(server.websocket_url))
    service.subscribe("node_log", got)
    with service:
        server.publish_many({"type": "node_log", "data": p} for p in payloads)
        got.wait_count(len(payloads), timeout=20)
        sent = service.send_message({"type": "node_log", "data": {"up": "ü" * 300}})
        server.wait_for_received(lambda m: m.message.get("data", {}).get("up") == "ü" * 300, timeout=10)
        health = service.get_connection_health()
    assert sent is True
    assert [m.data for m in got.items] == payloads
    assert health.invalid_messages == 0 and health.total_reconnects == 0


def test_row09_cut_mid_frame_at_random_offsets_resumes_without_partial_or_duplicate(
    server: Backend, proxy: FaultProxy
) -> None:
    rng = random.Random(9)
    cuts = 6
    got: Recorder[RealtimeMessage] = Recorder()
    service = make_service(proxy.url(server.websocket_url))
    service.subscribe(None, got)
    with service:
        for k in range(cuts):
            server.wait_for_connections(1, timeout=10)
            proxy.limit_data(rng.randint(1, 4000))
            server.publish_many(log_events(40, start=40 * k, pad="p" * rng.randint(0, 200)))
            assert proxy.wait_until(lambda p: p.connections_reset >= k + 1, 10)  # noqa: B023
        got.wait_for(lambda xs: len(event_ids(xs)) >= 40 * cuts, 20, "every event")
        health = service.get_connection_health()
    assert event_ids(got.items) == [e["id"] for e in server.logged_events()]
    assert [m.data["i"] for m in got.items if m.type == "node_log"] == list(range(40 * cuts))
    assert health.invalid_messages == 0  # no partial frame was ever parsed
    assert health.total_reconnects >= cuts - 1  # (a cut during a handshake fails that attempt instead)
    logged = [e for e in server.connections_log if e["outcome"] == "accepted"][1:]
    assert logged and all(e["last_event_id"] for e in logged)  # each reconnect resumed


def test_row10_flapping_link_no_storm_no_leak(server: Backend, proxy: FaultProxy) -> None:
    # row 10 scaled: RST every 300 ms for 20 s -> every 150 ms for 3 s. Backoff 100 ms x2 up to 1.6 s,
    # min_stable 1 s: no connection is ever stable, so the delays keep growing instead of resetting.
    # With full jitter, more than 13 attempts in 3 s needs 13 uniform draws from ceilings summing to
    # 15.9 s (mean 7.95 s) to total < 3 s: about 3.5 sigma below the mean. A backoff that resets on
    # each connect would connect about 20 times (once per reset).
    service = make_service(proxy.url(server.websocket_url), reconnect_interval_ms=100, max_reconnect_interval_ms=1600,
                           reconnect_backoff_multiplier=2.0, min_stable_connection_ms=1000)
    service.connect()
    service.disconnect()
    fds, rss = open_fds(), rss_bytes()
    service.connect()
    accepted0 = proxy.connections_accepted
    pace = threading.Event()
    resets = 0
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        resets += proxy.reset_peer()
        pace.wait(0.15)  # the fault schedule, not a synchronisation
    attempts = proxy.connections_accepted - accepted0
    health = service.get_connection_health()
    service.disconnect()
    assert resets >= 3
    assert attempts <= 13, attempts
    assert attempts >= 2  # the link did flap
    assert health.reconnect_attempts >= attempts - 2  # the backoff index was never reset
    wait_threads_gone()
    server.wait_for_disconnects(5)
    assert proxy.wait_until(lambda p: p.active_connections == 0, 5)
    assert open_fds() <= fds + 2
    assert rss_bytes() - rss < 5 * 1024 * 1024


def test_row11_long_outage_bounded_queue_breaker_probes_fifo_replay(server: Backend, proxy: FaultProxy) -> None:
    states = StateRecorder()
    service = make_service(proxy.url(server.websocket_url), max_queue_size=20, circuit_breaker_threshold=3,
                           circuit_breaker_reset_ms=300, reconnect_interval_ms=20, max_reconnect_interval_ms=50)
    service.on_connection_state_change(states)
    with service:
        proxy.refuse(True)
        proxy.reset_peer()

        def opened(n: int) -> Callable[[List[Any]], bool]:
            return lambda xs: sum(1 for _, e in xs if isinstance(e, CircuitOpenError)) >= n

        states.wait_for(opened(1), 10, "circuit open")
        assert service.get_connection_health().circuit_state.value == "open"
        assert [service.send_message({"type": "node_log", "data": {"n": i}}) for i in range(50)] == [False] * 50
        health = service.get_connection_health()
        assert (health.queue_size, health.queue_dropped) == (20, 30)  # bounded, overflow counted exactly
        first_open = sum(1 for _, e in states.items if isinstance(e, CircuitOpenError))
        states.wait_for(opened(first_open + 1), 10, "a probe after the cool-down, refused, open again")
        proxy.refuse(False)
        states.wait_state(ConnectionState.CONNECTED, count=2, timeout=10)
        server.wait_for_received(20, timeout=10)
        health = service.get_connection_health()
    assert [m.message["data"]["n"] for m in server.received_messages] == list(range(30, 50))  # FIFO
    assert health.queue_size == 0 and health.circuit_state.value == "closed"


# ---------------------------------------------------------------------------------------------
# rows 12-17: what the server says


def test_row12_restart_codes_1001_1011_1014_reconnect_at_once(server: Backend) -> None:
    states = StateRecorder()
    service = make_service(server.websocket_url, reconnect_interval_ms=100, max_reconnect_interval_ms=400)
    service.on_connection_state_change(states)
    with service:
        for k, code in enumerate((1001, 1011, 1014), start=1):
            server.wait_for_connections(k, total=True, timeout=5)
            server.wait_for_connections(1, timeout=5)
            closed_at = time.monotonic()
            server.close_connections(code)
            server.wait_for_connections(k + 1, total=True, timeout=5)
            accepted = [e for e in server.connections_log if e["outcome"] == "accepted"]
            assert accepted[-1]["time"] - closed_at <= within(0.4), code  # no floor: normal backoff
        errors = errors_of(states, ConnectionState.RECONNECTING)
    assert [getattr(e, "close_code", None) for e in errors] == [1001, 1011, 1014]
    assert isinstance(errors[0], TransportClosed) and isinstance(errors[1], ServerError)
    assert isinstance(errors[2], ServerError)


class LogRecorder(logging.Handler):
    """A logging handler feeding a Recorder, so a test can wait for a log line from another thread."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: Recorder[str] = Recorder()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines(record.getMessage())


@pytest.mark.parametrize(("code", "lo", "hi"), [(1012, 5.0, 30.0), (1013, 10.0, 60.0)])
def test_row12_codes_1012_1013_wait_their_floor_and_disconnect_interrupts(
    server: Backend, code: int, lo: float, hi: float
) -> None:
    service_logger = logging.getLogger("magk_client.service")
    handler, level = LogRecorder(), service_logger.level
    service_logger.addHandler(handler)
    service_logger.setLevel(logging.DEBUG)
    states = StateRecorder()
    service = make_service(server.websocket_url, log_level="debug")  # the service's own logger at DEBUG
    service.on_connection_state_change(states)
    try:
        service.connect()
        server.close_connections(code)
        states.wait_state(ConnectionState.RECONNECTING)
        error = errors_of(states, ConnectionState.RECONNECTING)[0]
        assert isinstance(error, ServerError) and error.close_code == code
        pattern = re.compile(r"reconnecting in ([\d.]+) s")
        lines = handler.lines.wait_for(lambda xs: any(pattern.match(x) for x in xs), 5, "the planned delay")
        delays = [float(m.group(1)) for x in lines if (m := pattern.match(x))]
        assert len(delays) == 1 and lo <= delays[0] <= hi, delays
        with pytest.raises(TimeoutError):  # nothing before the floor
            server.wait_until(lambda: server.counters.get("ws_attempts", 0) > 1, 0.5, "a second attempt")
        t0 = time.monotonic()
        service.disconnect()
        assert time.monotonic() - t0 < well_before(lo)  # the long wait is interruptible
        wait_threads_gone()
        assert server.counters.get("ws_attempts", 0) == 1
    finally:
        service_logger.removeHandler(handler)
        service_logger.setLevel(level)
        service.disconnect()


@pytest.mark.parametrize("code", [1008, 4001, 4003])
def test_row13_auth_close_codes_terminal_notified_once(server: Backend, code: int) -> None:
    states = StateRecorder()
    errors: Recorder[Any] = Recorder()
    service = make_service(server.websocket_url, max_reconnect_attempts=10)
    service.on_connection_state_change(states)
    service.on_error(errors)
    service.connect()
    server.close_connections(code, "policy")
    states.wait_state(ConnectionState.ERROR)
    wait_threads_gone_except_dispatcher()  # the session ended: no thread left that could retry
    error = errors_of(states, ConnectionState.ERROR)[0]
    assert isinstance(error, AuthError) and error.close_code == code and error.terminal
    assert server.counters.get("ws_attempts", 0) == 1
    assert states.states().count(ConnectionState.ERROR) == 1
    assert sum(1 for e in errors.items if isinstance(e, AuthError)) == 1  # notified once
    service.disconnect()


def wait_threads_gone_except_dispatcher(timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    for t in threading.enumerate():
        if t.name.startswith(("magk-reader", "magk-supervisor")):
            t.join(max(0.0, deadline - time.monotonic()))
    assert not [n for n in sdk_threads() if not n.startswith("magk-dispatcher")]


@pytest.mark.parametrize("token", [None, "wrong"])
def test_row13_handshake_401_403_terminal(token: Optional[str]) -> None:
    with Backend(token="right") as server:
        service = make_service(server.websocket_url, auth_token=token, max_reconnect_attempts=10)
        with pytest.raises(AuthError) as info:
            service.connect(timeout=5)
        assert info.value.status == (401 if token is None else 403)
        wait_threads_gone()
        assert server.counters.get("ws_attempts", 0) == 1


def test_row13_handshake_404_without_fallback_is_terminal(server: Backend) -> None:
    server.refuse_websocket(404)
    service = make_service(server.websocket_url, max_reconnect_attempts=10)
    with pytest.raises(ProtocolError) as info:
        service.connect(timeout=10)
    assert info.value.status == 404
    wait_threads_gone()
    assert server.counters.get("ws_attempts", 0) <= 2


@pytest.mark.parametrize("status", [503, 429])
def test_row14_handshake_retry_after_is_honoured(server: Backend, status: int) -> None:
    # row 14 scaled: Retry-After: 3 on a fake clock -> Retry-After: 1 on the real one
    server.refuse_websocket(status, retry_after=1)
    states = StateRecorder()
    service = make_service(server.websocket_url, reconnect_interval_ms=10, max_reconnect_interval_ms=20)
    service.on_connection_state_change(states)
    service.connect(wait=False)
    try:
        server.wait_until(lambda: server.counters.get("ws_attempts", 0) >= 2, 5, "a second attempt")
        server.refuse_websocket(None)
        states.wait_state(ConnectionState.CONNECTED, timeout=5)
    finally:
        service.disconnect()
    log = [e for e in server.connections_log if e["transport"] == "websocket"]
    assert log[0]["outcome"] == f"http {status}"
    assert log[1]["time"] - log[0]["time"] >= 1.0
    error = errors_of(states, ConnectionState.RECONNECTING)[0]
    assert isinstance(error, ServerError) and error.retry_after == 1.0


def test_row15_clean_close_1000_reconnects_and_resumes_with_last_event_id(server: Backend) -> None:
    got: Recorder[RealtimeMessage] = Recorder()
    service = make_service(server.websocket_url)
    service.subscribe("node_log", got)
    with service:
        ids = server.publish_many(log_events(5))
        got.wait_count(5)
        server.go_silent(True)  # events published now reach nobody: only the resume can bring them
        more = server.publish_many(log_events(5, start=5))
        server.go_silent(False)
        server.close_connections(1000, "bye")
        got.wait_count(10, timeout=10)
        health = service.get_connection_health()
    accepted = [e for e in server.connections_log if e["outcome"] == "accepted"]
    assert len(accepted) == 2 and accepted[1]["last_event_id"] == ids[-1]
    assert [m.id for m in got.items] == ids + more
    assert health.total_reconnects == 1


VIOLATIONS = {
    "masked frame": (ws_frame(OP_TEXT, b"x", masked=True), 1002),
    "rsv bit": (ws_frame(OP_TEXT, b"x", rsv=4), 1002),
    "126-byte ping": (ws_frame(OP_PING, b"p" * 126), 1002),
    "fragmented control": (ws_frame(OP_PING, b"p", fin=False), 1002),
    "invalid utf-8 text": (ws_frame(OP_TEXT, b'{"type": "node_log", "x": "\xff\xfe"}'), 1007),
}


@pytest.mark.parametrize("name", list(VIOLATIONS))
def test_row16_protocol_violation_fails_connection_with_code(raw_servers: Any, name: str) -> None:
    data, code = VIOLATIONS[name]
    connected = threading.Event()  # the violation comes after connect() returned: it cannot race it

    def script(conn: Conn) -> Optional[int]:
        conn.send(ws_frame(OP_TEXT, envelope(conn.index)))
        connected.wait(5)
        conn.send(data)
        return conn.read_close_code()

    raw = raw_servers(ws_script(script))
    states = StateRecorder()
    service, got, errors = recording_service(raw.ws_url())
    service.on_connection_state_change(states)
    service.connect(timeout=5)
    connected.set()
    states.wait_state(ConnectionState.ERROR, timeout=5)
    wait_threads_gone_except_dispatcher()
    got.wait_count(1)  # what came before the violation was delivered
    service.disconnect()
    error = errors_of(states, ConnectionState.ERROR)[0]
    assert isinstance(error, ProtocolError) and error.close_code == code  # recorded
    assert raw.wait(lambda: len(raw.close_codes) >= 1)
    assert raw.close_codes[0] == code  # and told to the server
    assert raw.accepted <= 3  # no hot loop: terminal (the SDK makes 1 attempt)
    assert any(isinstance(e, ProtocolError) for e in errors.items)


def test_row16_unsolicited_pong_is_ignored(raw_servers: Any) -> None:
    raw = raw_servers(
        send_then_read_close(
            lambda conn: ws_frame(OP_PONG, b"unasked")
            + ws_frame(OP_TEXT, envelope(1))
            + ws_frame(OP_PONG)
            + ws_frame(OP_TEXT, envelope(2))
        )
    )
    got: Recorder[RealtimeMessage] = Recorder()
    service = make_service(raw.ws_url())
    service.subscribe("node_log", got)
    with service:
        got.wait_count(2)
        health = service.get_connection_health()
        assert service.is_connected
    assert [m.id for m in got.items] == ["r-1", "r-2"]
    assert health.total_reconnects == 0 and not health.errors
    assert raw.wait(lambda: len(raw.close_codes) >= 1)
    assert raw.close_codes == [1000] and raw.accepted == 1


def test_row16_binary_message_not_utf8_is_dropped_counted_and_the_connection_stays_up(raw_servers: Any) -> None:
    """RFC 6455 requires UTF-8 of text messages only. Binary messages of 0xfe bytes (as Autobahn's
    binary cases send), whole and fragmented, are invalid messages: dropped, counted, reported like
    malformed JSON; a binary message that is UTF-8 JSON is decoded like text."""
    bad = [
        ws_frame(OP_BINARY, b"\xfe" * 125),
        ws_frame(OP_BINARY, b"\xfe" * 65536),
        ws_frame(OP_BINARY, b"\xfe" * 10, fin=False) + ws_frame(OP_CONT, b"\xfe" * 10),
        ws_frame(OP_BINARY, b'{"type":', fin=False) + ws_frame(OP_CONT, b"\xc3"),  # truncated character
    ]
    raw = raw_servers(
        send_then_read_close(
            lambda conn: ws_frame(OP_TEXT, envelope(0))
            + b"".join(bad)
            + ws_frame(OP_BINARY, envelope(1))  # UTF-8 JSON in a binary frame: delivered
            + ws_frame(OP_BINARY, envelope(2)[:5], fin=False)
            + ws_frame(OP_CONT, envelope(2)[5:])
            + ws_frame(OP_TEXT, envelope(3))
        )
    )
    got, errors, health = receive_while_up(raw, 4, len(bad))
    assert [m.id for m in got] == ["r-0", "r-1", "r-2", "r-3"]
    assert health.invalid_messages == len(bad)
    assert [type(e) for e in errors] == [InvalidMessage] * len(bad)
    assert health.total_reconnects == 0
    assert raw.wait(lambda: len(raw.close_codes) >= 1)
    assert raw.close_codes == [1000] and raw.accepted == 1  # closed by disconnect(), never 1007


def test_row16_binary_message_not_utf8_is_reported_as_such(raw_servers: Any) -> None:
    """The report names what is wrong: a binary message that is not UTF-8 (with its size), not
    "not valid JSON" about the transport's placeholder text; still an InvalidMessage, counted,
    and the connection stays up."""
    raw = raw_servers(
        send_then_read_close(
            lambda conn: ws_frame(OP_BINARY, b"\xfe" * 125)
            + ws_frame(OP_BINARY, b"\xfe" * 10, fin=False)
            + ws_frame(OP_CONT, b"\xfe" * 10)
            + ws_frame(OP_TEXT, b"{not json")  # text that is not JSON still says so
            + ws_frame(OP_TEXT, envelope(1))
        )
    )
    _got, errors, health = receive_while_up(raw, 1, 3)
    assert [type(e) for e in errors] == [InvalidMessage] * 3
    messages = [str(e) for e in errors]
    assert messages[0] == "binary message is not UTF-8 (125 bytes)"
    assert messages[1] == "binary message is not UTF-8 (20 bytes)"
    assert "not valid JSON" in messages[2]
    assert health.invalid_messages == 3 and health.total_reconnects == 0
    assert health.errors[0] == "InvalidMessage: binary message is not UTF-8 (125 bytes)"


def test_row17_message_of_at_most_125_bytes_over_a_small_limit_is_refused(raw_servers: Any) -> None:
    limit = 100

    def script(conn: Conn) -> bytes:
        k = conn.index
        small = json.dumps({"id": f"s-{k}", "type": "node_log", "data": {}}).encode()
        big = json.dumps({"id": f"b-{k}", "type": "node_log", "data": {"pad": "p" * 60}}).encode()
        assert len(small) <= limit < len(big) <= 125
        return ws_frame(OP_TEXT, small) + (ws_frame(OP_TEXT, big) if k == 0 else b"")

    raw = raw_servers(send_then_read_close(script))
    service, got, errors = recording_service(raw.ws_url(), max_message_size=limit)
    with service:
        got.wait_count(2, timeout=10)  # s-0, then s-1 after the reconnect
        health = service.get_connection_health()
    assert [m.id for m in got.items] == ["s-0", "s-1"]
    assert raw.wait(lambda: len(raw.close_codes) >= 1)
    assert raw.close_codes[0] == 1009
    assert health.oversized_messages == 1
    assert any(isinstance(e, MessageTooLargeError) and e.close_code == 1009 for e in errors.items)


def test_row17_header_claiming_2_62_bytes_closes_at_once_and_reconnects(raw_servers: Any) -> None:
    def script(conn: Conn) -> bytes:
        if conn.index == 0:
            return ws_frame(OP_TEXT, b"abc", length=2**62)  # then trickle nothing more
        return ws_frame(OP_TEXT, envelope(conn.index))

    raw = raw_servers(send_then_read_close(script))
    service, got, errors = recording_service(raw.ws_url(), max_message_size=1024 * 1024)
    with service:
        got.wait_count(1, timeout=10)
        assert raw.wait(lambda: len(raw.close_codes) >= 1)
        health = service.get_connection_health()
    assert raw.close_codes[0] == 1009
    too_large = [e for e in errors.items if isinstance(e, MessageTooLargeError)]
    assert too_large and too_large[0].close_code == 1009  # surfaced
    assert health.oversized_messages == 1 and health.total_reconnects == 1
    assert got.items[0].id == "r-1"


def test_row19_hostile_json_burst_counted_exactly_threads_alive(server: Backend) -> None:
    hostile = ["malformed_json", "non_object", "wrong_field_types", "deep_nesting", "huge_int", "nan"]
    raw = ['{"data": {}}', '{"type": 7}', '{"type": "node_log", "data": [1]}', "null", '"text"']
    service, got, errors = recording_service(server.websocket_url)
    with service:
        for kind in hostile:
            server.send_bad(kind)
        for text in raw:
            server.publish_raw(text)
        server.send_bad("oversized", size=10 * 1024 * 1024)  # a valid 10 MB string: delivered whole
        server.publish({"type": "node_log", "data": {"after": True}})
        got.wait_for(lambda xs: any(m.data.get("after") for m in xs), 20, "the next valid message")
        health = service.get_connection_health()
        names = sdk_threads()
    assert health.invalid_messages == len(hostile) + len(raw)
    assert sum(1 for e in errors.items if isinstance(e, InvalidMessage)) == len(hostile) + len(raw)
    assert len(got.items) == 2 and len(got.items[0].data["blob"]) == 10 * 1024 * 1024
    assert health.total_reconnects == 0
    assert any(n.startswith("magk-reader") for n in names) and any(n.startswith("magk-dispatcher") for n in names)


# ---------------------------------------------------------------------------------------------
# rows 27-32: the user's side


@pytest.mark.parametrize("method", ["disconnect", "close"])
def test_row27_callback_disconnect_or_close_returns_quickly(server: Backend, method: str) -> None:
    service = make_service(server.websocket_url)
    service.connect()
    took: List[float] = []
    done = threading.Event()

    def stop(message: RealtimeMessage) -> None:
        t0 = time.monotonic()
        getattr(service, method)()
        took.append(time.monotonic() - t0)
        done.set()

    service.subscribe("node_log", stop)
    server.publish_many(log_events(50))
    assert done.wait(5)
    wait_threads_gone()
    assert took[0] <= PROMPT_S
    assert server.counters["ws_attempts"] == 1  # no reconnect afterwards
    server.wait_for_disconnects(5)
    assert service.state in (ConnectionState.DISCONNECTED, ConnectionState.CLOSED)


@pytest.mark.parametrize("max_queue", [500, 2000], ids=["queue-500", "queue-2000-reader-hands-off"])
def test_row28_slow_consumer_heartbeat_unaffected_dispatch_queue_bounded(server: Backend, max_queue: int) -> None:
    # row 28 scaled: a callback that blocks (on an Event, >= 5 heartbeat cycles) while the server sends
    # 3000 events at once; heartbeat 300 ms / 200 ms; max_dispatch_queue 500, or 2000 (past the reader's
    # hand-off threshold of 512: its bounded waits for the blocked dispatcher must not stall reading)
    release = threading.Event()
    blocked = threading.Event()
    delivered: List[RealtimeMessage] = []
    sent = 3000
    states = StateRecorder()
    peak = [0]

    def slow(message: RealtimeMessage) -> None:
        delivered.append(message)
        blocked.set()
        release.wait(20)

    service = make_service(server.websocket_url, heartbeat_interval_ms=300, heartbeat_timeout_ms=200,
                           max_dispatch_queue=max_queue)
    service.on_connection_state_change(states)
    service.subscribe("node_log", slow)

    def pings() -> int:
        return server.counters.get("pings", 0)

    def sampled(condition: Callable[[], bool]) -> Callable[[], bool]:
        def check() -> bool:  # re-checked whenever the backend records something (pings included)
            peak[0] = max(peak[0], service.get_connection_health().dispatch_queue_size)
            return condition()

        return check

    with service:
        server.publish_many(log_events(sent))
        assert blocked.wait(5)
        pings0 = pings()
        try:
            server.wait_until(sampled(lambda: pings() >= pings0 + 5), 10, "5 heartbeats while the callback blocks")
            health = service.get_connection_health()
            assert health.total_reconnects == 0 and health.is_healthy
        finally:
            release.set()

        def settled() -> bool:
            h = service.get_connection_health()
            return h.messages_delivered + h.dispatch_dropped >= sent + 1  # + the subscription_ack

        server.wait_until(sampled(settled), 10, "every message delivered or dropped")
        health = service.get_connection_health()
        names = sdk_threads()
    assert peak[0] <= max_queue
    assert health.dispatch_dropped > 0  # the bound was hit...
    assert health.messages_delivered + health.dispatch_dropped == sent + 1  # ...and every message accounted for
    assert len(delivered) == health.messages_delivered - 1
    assert [m.data["i"] for m in delivered] == sorted(m.data["i"] for m in delivered)  # order kept
    assert ConnectionState.RECONNECTING not in states.states()
    assert any(n.startswith("magk-reader") for n in names)


def test_row29_sixteen_threads_during_forced_reconnects(server: Backend) -> None:
    drops = 8
    errors: List[BaseException] = []
    seen: Recorder[RealtimeMessage] = Recorder()
    stop = threading.Event()
    results: List[bool] = []
    lock = threading.Lock()
    service = make_service(server.websocket_url, max_queue_size=100000)
    service.subscribe("node_log", seen)
    service.connect()

    def worker(k: int) -> None:
        try:
            i = 0
            while not stop.is_set() and i < 2000:
                sid = service.subscribe(["node_log", "node_result"], lambda m: None, workflow_id=f"wf-{k}")
                ok = service.send_message({"type": "node_log", "data": {"t": k, "i": i}})
                with lock:
                    results.append(ok)
                assert service.unsubscribe(sid)
                service.get_connection_health()
                i += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,), name=f"worker-{k}") for k in range(16)]
    for t in threads:
        t.start()
    try:
        for k in range(drops):
            server.wait_for_connections(k + 1, total=True, timeout=10)
            server.wait_for_connections(1, timeout=10)
            server.drop_connections()
            server.publish({"type": "node_log", "data": {"drop": k}})
        server.wait_for_connections(drops + 1, total=True, timeout=10)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    seen.wait_for(lambda xs: sum(1 for m in xs if "drop" in m.data) >= drops, 10, "every published event")
    service.disconnect()
    # A message whose ack a drop took is sent again with its id; the backend records that repeat as a
    # duplicate and does not process it (docs/protocol.rst, Acknowledgements): processed, nothing twice.
    processed = [m for m in server.received_messages if not m.duplicate]
    sent = [(m.message["data"]["t"], m.message["data"]["i"]) for m in processed]
    assert len(sent) == len(set(sent))  # nothing twice
    for k in range(16):  # per thread, what arrived arrived in order
        mine = [i for t, i in sent if t == k]
        assert mine == sorted(mine)
    assert results and sent


CHILD = textwrap.dedent(
    """
    import atexit, sys, time
    from magk_client import RealtimeService
    service = RealtimeService(websocket_url=sys.argv[1], event_source_url=None, fallback_to_secondary=False,
                              heartbeat_interval_ms=200, heartbeat_timeout_ms=100)
    service.connect(timeout=5)
    service.subscribe(None, lambda m: None)
    if sys.argv[2] == "atexit":
        atexit.register(service.close)
    print("connected", time.monotonic(), flush=True)
    """
)


@pytest.mark.parametrize("mode", ["live", "atexit"])
def test_row30_interpreter_exit_with_live_client(server: Backend, mode: str) -> None:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", CHILD, server.websocket_url, mode],
                          check=False, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    ended = time.monotonic()
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split()
    assert words[0] == "connected"
    assert ended - float(words[1]) < PROMPT_S  # exit after the script's last line (CLOCK_MONOTONIC is system-wide)
    assert ended - start < well_before(CHILD_TIMEOUT_S)
    assert "Traceback" not in proc.stderr and "Exception" not in proc.stderr
    server.wait_for_disconnects(5)
    assert server.ws_connects == 1


def test_row30_use_after_close_and_misuse(server: Backend) -> None:
    service = make_service(server.websocket_url)
    service.close()  # close before connect
    service.close()
    service.disconnect()  # after close: harmless
    for call in (service.connect, service.reconnect, lambda: service.send_message({"type": "node_log"})):
        with pytest.raises(ClientClosedError) as info:
            call()
        assert "closed" in str(info.value)
    with pytest.raises(ClientClosedError):
        with service:
            pass
    assert server.counters.get("ws_attempts", 0) == 0
    again = make_service(server.websocket_url)
    again.connect()
    again.disconnect()
    again.disconnect()
    again.connect()  # reusable after disconnect
    assert again.is_connected
    again.reconnect(timeout=5)
    assert again.is_connected
    again.close()
    assert server.counters["ws_connects"] == 3


def test_row31_notebook_rerun_orphans_are_reclaimed(server: Backend) -> None:
    refs: List[weakref.ref[RealtimeService]] = []
    orphan: Optional[RealtimeService] = None
    try:
        for _ in range(5):  # a notebook cell run five times: build, connect, rebind the name
            service = make_service(server.websocket_url)
            service.connect()
            refs.append(weakref.ref(service))
        del service
        gc.collect()
        server.wait_until(lambda: len(server.open_connections) <= 1, 3, "orphan connections closed")
        assert len(sdk_threads()) <= 3  # one client's reader, supervisor and dispatcher at most
    finally:
        for ref in refs:
            orphan = ref()
            if orphan is not None:
                orphan.disconnect()
        del orphan


def test_row32_offline_overflow_bounded_and_counted(server: Backend) -> None:
    n, limit = 30_000, 1000
    service = make_service(server.websocket_url, max_queue_size=limit)
    start = time.monotonic()
    results = [service.send_message({"type": "node_log", "data": {"n": i}}) for i in range(n)]
    elapsed = time.monotonic() - start
    health = service.get_connection_health()
    assert results.count(False) == n  # the caller is told: queued, not sent
    assert health.queue_size == limit and health.queue_dropped == n - limit  # exact
    assert elapsed < 20
    service.connect()
    try:
        server.wait_for_received(limit, timeout=10)
        got = [m.message["data"]["n"] for m in server.received_messages]
    finally:
        service.disconnect()
    assert got == list(range(n - limit, n))


# ---------------------------------------------------------------------------------------------
# rows 33-36: security


@pytest.mark.parametrize(("cert", "ca"), [("good", None), ("good", "wrong"), ("mismatch", "right"), ("expired", "right")])
def test_row33_tls_no_ca_mismatch_expired_are_terminal_single_attempt(
    tls: Dict[str, Any], ca_files: Dict[str, str], cert: str, ca: Optional[str]
) -> None:
    with Backend(ssl_context=tls[cert]) as server, FaultProxy("127.0.0.1", server.port) as proxy:
        service = make_service(proxy.url(server.websocket_url), ca_bundle=ca_files[ca] if ca else None,
                               max_reconnect_attempts=10)
        with pytest.raises(NetworkError) as info:
            service.connect(timeout=5)
        assert info.value.terminal and "certificate" in str(info.value).lower()
        wait_threads_gone()
        assert proxy.connections_accepted == 1  # no retry storm: one TCP connection in all
        assert server.counters.get("ws_attempts", 0) == 0


def test_row33_tls_sdk_ca_wins_over_environment(
    tls: Dict[str, Any], ca_files: Dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with Backend(ssl_context=tls["good"]) as server:
        for var in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "WEBSOCKET_CLIENT_CA_BUNDLE", "CURL_CA_BUNDLE"):
            monkeypatch.setenv(var, ca_files["wrong"])
        with make_service(server.websocket_url, ca_bundle=ca_files["right"]) as service:
            assert service.is_connected
        for var in ("REQUESTS_CA_BUNDLE", "WEBSOCKET_CLIENT_CA_BUNDLE", "CURL_CA_BUNDLE"):
            monkeypatch.setenv(var, ca_files["right"])
        refused = make_service(server.websocket_url, ca_bundle=ca_files["wrong"])
        with pytest.raises(NetworkError):
            refused.connect(timeout=5)
        assert server.ws_connects == 1


def test_row34_redirect_not_followed_no_token_to_other_host(raw_servers: Any) -> None:
    token = "tok-SECRET-redirect"
    other = socket.socket()
    other.bind(("127.0.0.2", 0))
    other.listen(4)
    try:
        target = f"ws://127.0.0.2:{other.getsockname()[1]}/ws/realtime"
        raw = raw_servers(respond(f"HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n".encode()))
        service = make_service(raw.ws_url(), auth_token=token, max_reconnect_attempts=10)
        with pytest.raises(ProtocolError) as info:
            service.connect(timeout=5)
        assert info.value.terminal and info.value.status == 302
        assert token not in str(info.value)
        wait_threads_gone()
        assert raw.accepted == 1
        other.setblocking(False)
        with pytest.raises(BlockingIOError):  # nobody ever connected to the second host
            other.accept()
    finally:
        other.close()


def test_row35_debug_and_library_trace_hold_no_secret(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    import websocket

    token, key = "tok-SECRET-35aa", "key-SECRET-35bb"
    caplog.set_level(logging.DEBUG)
    websocket.enableTrace(True)
    texts: List[str] = []
    try:
        with Backend(token=token, api_key=key) as server:
            errors: Recorder[Any] = Recorder()
            states = StateRecorder()
            service = make_service(server.websocket_url, auth_token=token, api_key=key, token_in_query=True,
                                   enable_debug_logging=True, log_level="debug")
            service.on_error(errors)
            service.on_connection_state_change(states)
            service.connect()
            server.refuse_websocket(503)
            server.drop_connections()  # forced failures: a drop, then refused handshakes
            server.wait_until(lambda: server.counters.get("refused", 0) >= 2, 5, "refused retries")
            server.refuse_websocket(None)
            states.wait_state(ConnectionState.CONNECTED, count=2, timeout=5)
            server.close_connections(4401, "token revoked")
            states.wait_state(ConnectionState.ERROR, timeout=5)
            texts += [repr(service), repr(service.config), repr(service.get_connection_health())]
            texts += [f"{e!s} {e!r}" for e in errors.items] + [f"{e!s} {e!r}" for _, e in states.items]
            service.disconnect()
            bad = make_service(server.websocket_url, auth_token="tok-SECRET-WRONG", api_key=key)
            with pytest.raises(AuthError) as info:
                bad.connect(timeout=5)
            texts.append(f"{info.value!s} {info.value!r}")
    finally:
        websocket.enableTrace(False)
    out, err = capfd.readouterr()
    everything = "\n".join([caplog.text, out, err, *texts])
    assert "handshake" in everything.lower() or "connect" in everything.lower()  # there was output to check
    for secret in (token, key, "tok-SECRET-WRONG"):
        assert secret not in everything


def test_row35_close_reason_echoing_the_token_is_redacted(server: Backend, caplog: pytest.LogCaptureFixture) -> None:
    token = "tok-SECRET-echo"
    caplog.set_level(logging.DEBUG)
    states = StateRecorder()
    service = make_service(server.websocket_url, auth_token=token)
    service.on_connection_state_change(states)
    service.connect()
    server.close_connections(4401, f"invalid token {token}")
    states.wait_state(ConnectionState.ERROR, timeout=5)
    service.disconnect()
    error = errors_of(states, ConnectionState.ERROR)[0]
    assert isinstance(error, AuthError) and error.close_code == 4401
    everything = "\n".join([caplog.text, str(error), repr(error), *service.get_connection_health().errors])
    assert token not in everything


def test_row35_refused_handshake_echoing_the_token_leaks_it_nowhere(
    raw_servers: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """A hostile server answers the upgrade with 401 and echoes the Authorization header (status
    line, headers, body): not in websocket-client's trace, our logs, nor the raised error's chain."""
    import traceback

    import websocket

    token, key = "tok-SECRET-echo401", "key-SECRET-echo401"
    body = f"Authorization: Bearer {token}\r\nX-API-Key: {key}"
    raw = raw_servers(
        respond(
            (
                f"HTTP/1.1 401 Bad {token}\r\nContent-Length: {len(body)}\r\nX-Echo: Bearer {token}\r\n"
                f"X-Echo-Key: {key}\r\n\r\n{body}"
            ).encode()
        )
    )
    caplog.set_level(logging.DEBUG)
    websocket.enableTrace(True)
    try:
        service = make_service(raw.ws_url(), auth_token=token, api_key=key, enable_debug_logging=True, log_level="debug")
        with pytest.raises(AuthError) as info:
            service.connect(timeout=5)
        health = service.get_connection_health()
        service.disconnect()
    finally:
        websocket.enableTrace(False)
    out, err = capfd.readouterr()
    chain = exception_chain(info.value)
    texts = [caplog.text, out, err, *health.errors, "".join(traceback.format_exception(type(info.value), info.value, info.value.__traceback__))]
    texts += [f"{e!s} {e!r} {e.args!r} {vars(e)!r}" for e in chain]
    everything = "\n".join(texts)
    assert "x-echo" in everything.lower()  # the trace of the answer ran
    assert token not in everything and key not in everything
    assert not [e for e in chain if type(e).__module__.startswith("websocket")]
    assert raw.accepted == 1


def test_row36_plaintext_token_to_non_loopback_name_refused_before_any_socket() -> None:
    name = socket.gethostname()
    try:
        address = socket.gethostbyname(name)
    except OSError:
        pytest.skip("the host name does not resolve")
    if name in ("localhost", "localhost.") or not address.startswith("127."):
        pytest.skip("needs a host name (not 'localhost') that resolves to a loopback address")
    with Backend(host=address) as server:
        url = f"ws://{name}:{server.port}/ws/realtime"
        for creds in ({"auth_token": "tok-SECRET-36"}, {"api_key": "key-SECRET-36"}):
            service = make_service(url, **creds)
            with pytest.raises(ConfigError) as info:
                service.connect(timeout=5)
            assert "allow_insecure_auth" in str(info.value)
            assert "SECRET" not in str(info.value)
            wait_threads_gone()
        assert server.counters.get("ws_attempts", 0) == 0 and not server.connections_log  # no socket reached it
        with make_service(url, auth_token="tok-SECRET-36", allow_insecure_auth=True) as service:  # opted in
            assert service.is_connected
        assert server.connections_log[0]["authorization"] == "Bearer tok-SECRET-36"
