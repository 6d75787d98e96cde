"""Fault rows (docs/faults.rst) of issue 4 (Server-Sent Events) shown on the RealtimeService, end to end.

Real sockets on 127.0.0.1: the reference ``Backend`` (its ``sse_script`` for exact bytes, statuses and
framing) and a ``FaultProxy`` in front of it for network faults. Scaled-down figures are in each test.
Nothing is mocked; waits are on recorders, ``Backend.wait_until`` and ``FaultProxy.wait_until``. Every
test ends with the SDK's threads gone.

====  ==========================================================================================
row   shown by
====  ==========================================================================================
S1-17 the WHATWG rules, one test each: test_sse_rules.py (transport over a raw server); on the service,
      end to end: test_row21_golden_corpus_in_tiny_chunks_through_the_service
1     test_row01_reset_mid_stream_first_retry_at_k0_nothing_lost_queue_replayed
      (also test_service_sse.py::test_long_stream_with_100_drops_exactly_once_in_order[eventsource])
2     test_row02_half_open_blackhole_detected_within_interval_plus_timeout
      (application-level silence: test_service_sse.py::test_silent_sse_stream_detected_and_recovered)
9     test_row09_cut_mid_event_at_random_offsets_resumes_without_partial_or_duplicate
15    test_row15_clean_eof_reconnects_after_retry_floor_with_last_event_id
18    test_row18_oversized_sse_dropped_at_limit_memory_bounded_then_reconnects (a line without newline,
      endless data: lines); transport: test_transport_sse.py::test_oversized_event_or_line_drops_the_connection
20    test_row20_terminal_responses_make_one_attempt (404, 410, 200 text/html, 200 without type, 301 and 307
      to another origin), test_row20_server_errors_are_retried (500, 503), test_row20_content_type_parameters_accepted,
      test_row20_same_origin_redirect_is_followed_then_streams, test_row20_redirect_loop_is_refused_after_one_request,
      test_row20_redirect_never_reaches_the_other_host; 204: test_service_sse.py::test_sse_204_stops_reconnecting;
      401: test_service_sse.py::test_sse_401_is_auth_error_without_retries
21    golden cases + Hypothesis chunking: test_sse_rules.py (test_s5..test_s16, test_s21_*); through the
      service: test_row21_golden_corpus_in_tiny_chunks_through_the_service,
      test_row21_resume_id_follows_the_last_event_id_buffer (found an SDK bug)
22    test_row22_framing_chunked_and_close_delimited_no_buffering_delay
      (transport: test_transport_sse.py::test_each_event_is_handed_over_before_the_next_one_is_sent)
25    covered by test_service_sse.py::test_expired_resume_id_reports_a_gap[eventsource] (gap flag before
      the first post-reconnect event). An epoch change cannot be produced with the reference backend: its
      ids are positions (``e-<n>``) and a fresh backend answers an unknown higher id with no gap.
33    test_row33_sse_tls_no_ca_mismatch_expired_terminal_single_attempt, test_row33_sse_tls_right_ca_and_env_cannot_override,
      test_row33_requests_ca_bundle_alone_is_not_trusted_on_either_transport
      (transport: test_transport_sse.py::test_tls_*)
====  ==========================================================================================
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

import pytest
from checks import peak_rss, reset_peak_rss
from service_helpers import (
    build_service,
    errors_of,
    event_ids,
    log_events,
    times_of,
    wait_threads_gone,
)
from timings import FAST, seconds, well_before, within

from magk_client import ConnectionState, MagkTimeoutError, RealtimeConnectionConfig, RealtimeMessage, RealtimeService
from magk_client.errors import (
    MessageTooLargeError,
    NetworkError,
    ProtocolError,
    ServerError,
    TransportClosed,
)
from magk_client.testing import Backend
from magk_client.testing.proxy import FaultProxy
from magk_client.testing.raw import RawServer
from magk_client.testing.recorder import Recorder, StateRecorder

pytest_plugins = ["service_helpers"]  # its fixtures: server, proxy, and the autouse thread check
pytestmark = pytest.mark.timeout(60)

#: the heartbeat of FAST: it would detect a dead link after interval + timeout
HEARTBEAT_S = seconds(FAST["heartbeat_interval_ms"] + FAST["heartbeat_timeout_ms"])


def make_service(url: str, **overrides: Any) -> RealtimeService:
    return build_service(dict(FAST, preferred_type="eventsource", websocket_url=None, event_source_url=url), overrides)


def sse_log(server: Backend) -> List[Dict[str, Any]]:
    return [e for e in server.connections_log if e["transport"] == "sse"]


def envelope_block(n: int, event_id: Optional[str] = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return (head + "data: " + json.dumps({"type": "node_log", "data": {"n": n}}) + "\n\n").encode()


# ---------------------------------------------------------------------------------------------
# rows 1, 2, 9, 15: network faults and the end of the stream


def test_row01_reset_mid_stream_first_retry_at_k0_nothing_lost_queue_replayed(server: Backend, proxy: FaultProxy) -> None:
    states = StateRecorder()
    got: Recorder[RealtimeMessage] = Recorder()
    service = make_service(proxy.url(server.event_source_url), reconnect_interval_ms=100, max_reconnect_interval_ms=1600)
    service.on_connection_state_change(states)
    service.subscribe("node_log", got)
    with service:
        server.publish_many(log_events(100))
        got.wait_count(100)
        proxy.refuse(True)  # the first retry fails at once, so its timing is observable
        reset_at = time.monotonic()
        assert proxy.reset_peer() >= 1
        states.wait_state(ConnectionState.RECONNECTING, count=2)  # the drop, then the first retry refused
        detected, first_retry = times_of(states, ConnectionState.RECONNECTING)[:2]
        assert detected - reset_at < well_before(HEARTBEAT_S)  # by the socket, not by the heartbeat
        assert first_retry - reset_at <= within(0.1)  # k = 0: ceiling 100 ms
        assert all(isinstance(e, NetworkError) for e in errors_of(states, ConnectionState.RECONNECTING))
        server.publish_many(log_events(50, start=100))
        assert [service.send_message({"type": "node_log", "data": {"q": i}}) for i in range(10)] == [False] * 10
        proxy.refuse(False)
        got.wait_count(150, timeout=10)
        server.wait_for_received(lambda m: m.message.get("data", {}).get("q") == 9, timeout=10)
        health = service.get_connection_health()
    assert event_ids(got.items) == [e["id"] for e in server.logged_events()]  # none lost, none twice
    assert [m.data["i"] for m in got.items] == list(range(150))
    queued = [m.message["data"]["q"] for m in server.received_messages if "q" in m.message.get("data", {})]
    assert queued == list(range(10))  # replayed in order over POST /messages
    assert all(m.transport != "websocket" for m in server.received_messages)
    assert health.total_reconnects == 1
    assert sse_log(server)[-1]["last_event_id"] == got.items[99].id


def test_row02_half_open_blackhole_detected_within_interval_plus_timeout() -> None:
    interval, timeout = 0.3, 0.2
    states = StateRecorder()
    with Backend(heartbeat_interval=0.1) as server, FaultProxy("127.0.0.1", server.port) as proxy:
        service = make_service(proxy.url(server.event_source_url), heartbeat_interval_ms=interval * 1000,
                               heartbeat_timeout_ms=timeout * 1000)
        service.on_connection_state_change(states)
        got: Recorder[RealtimeMessage] = Recorder()
        service.subscribe("node_log", got)  # before anything is published: nothing can be missed
        with service:
            server.publish({"type": "node_log", "data": {"before": True}})
            got.wait_count(1)
            proxy.blackhole(True)
            silent_at = time.monotonic()
            states.wait_state(ConnectionState.RECONNECTING, timeout=5)
            detected = times_of(states, ConnectionState.RECONNECTING)[0]
            assert detected - silent_at <= within(interval + timeout)
            assert isinstance(errors_of(states, ConnectionState.RECONNECTING)[0], MagkTimeoutError)
            proxy.blackhole(False)
            states.wait_state(ConnectionState.CONNECTED, count=2, timeout=10)
            server.publish({"type": "node_log", "data": {"back": True}})
            got.wait_for(lambda xs: any(m.data.get("back") is True for m in xs), 5, "the event after the fault")
            assert service.get_connection_health().total_reconnects >= 1


def test_row09_cut_mid_event_at_random_offsets_resumes_without_partial_or_duplicate(
    server: Backend, proxy: FaultProxy
) -> None:
    rng = random.Random(19)
    cuts = 6
    got: Recorder[RealtimeMessage] = Recorder()
    service = make_service(proxy.url(server.event_source_url))
    service.subscribe(None, got)
    with service:
        for k in range(cuts):
            server.wait_for_connections(1, timeout=10)
            proxy.limit_data(rng.randint(1, 4000))
            server.publish_many(log_events(40, start=40 * k, pad="p" * rng.randint(0, 200)))
            assert proxy.wait_until(lambda p: p.connections_reset >= k + 1, 10)  # noqa: B023
        got.wait_for(lambda xs: len(event_ids(xs)) >= 40 * cuts, 20, "every event")
        health = service.get_connection_health()
    assert event_ids(got.items) == [e["id"] for e in server.logged_events()]  # no partial, no duplicate
    assert [m.data["i"] for m in got.items if m.type == "node_log"] == list(range(40 * cuts))
    assert health.invalid_messages == 0  # a cut-off event was never parsed (S16)
    assert health.total_reconnects >= cuts - 1
    resumed = [e for e in sse_log(server) if e["outcome"] == "accepted"][1:]
    assert resumed and all(e["last_event_id"] for e in resumed)


def test_row15_clean_eof_reconnects_after_retry_floor_with_last_event_id() -> None:
    with Backend(sse_retry_ms=300) as server:  # every stream starts with "retry: 300"
        got: Recorder[RealtimeMessage] = Recorder()
        states = StateRecorder()
        service = make_service(server.event_source_url, reconnect_interval_ms=10, max_reconnect_interval_ms=20)
        service.subscribe("node_log", got)
        service.on_connection_state_change(states)
        with service:
            ids = server.publish_many(log_events(5))
            got.wait_count(5)
            server.go_silent(True)  # events published now reach nobody: only the resume brings them
            more = server.publish_many(log_events(5, start=5))
            server.go_silent(False)
            ended_at = time.monotonic()
            assert server.close_connections() == 1  # a clean end of the body (S3)
            got.wait_count(10, timeout=10)
            health = service.get_connection_health()
        log = [e for e in sse_log(server) if e["outcome"] == "accepted"]
    assert isinstance(errors_of(states, ConnectionState.RECONNECTING)[0], TransportClosed)
    assert len(log) == 2 and log[1]["last_event_id"] == ids[-1]  # S8: the resume id is sent
    assert log[1]["time"] - ended_at >= 0.3  # S4: not before the reconnection time
    assert [m.id for m in got.items] == ids + more
    assert health.total_reconnects == 1 and health.duplicates_dropped == 0


# ---------------------------------------------------------------------------------------------
# row 18: oversized input


@pytest.mark.parametrize("shape", ["line without newline", "endless data lines"])
def test_row18_oversized_sse_dropped_at_limit_memory_bounded_then_reconnects(server: Backend, shape: str) -> None:
    limit = 1024 * 1024
    block = b"x" * (256 * 1024) if shape == "line without newline" else b"data: " + b"y" * 1000 + b"\n"
    head = b"data: " if shape == "line without newline" else b""
    total = 32 * 1024 * 1024  # the server would send 32 MiB; the same block object is reused
    chunks = [head] + [block] * (total // len(block))
    server.sse_script(chunks)
    errors: Recorder[Any] = Recorder()
    got: Recorder[RealtimeMessage] = Recorder()
    service = make_service(server.event_source_url, max_message_size=limit)
    service.on_error(errors)
    service.subscribe("node_log", got)
    reset_peak_rss()
    before = peak_rss()
    start = time.monotonic()
    with service:  # the first stream is the flood; the next request gets the normal stream
        errors.wait_for(lambda xs: any(isinstance(e, MessageTooLargeError) for e in xs), 10, "the limit error")
        dropped_after = time.monotonic() - start
        server.wait_for_connections(1, timeout=10)
        server.publish({"type": "node_log", "data": {"after": True}})
        got.wait_count(1, timeout=5)
        health = service.get_connection_health()
    grown = peak_rss() - before
    assert health.oversized_messages == 1 and health.total_reconnects == 1
    assert got.items[0].data == {"after": True}
    assert server.counters["sse_attempts"] == 2
    assert grown < 16 * limit, grown  # far below the 32 MiB the server was sending
    assert dropped_after < 5.0


# ---------------------------------------------------------------------------------------------
# row 20: response validation


@pytest.mark.parametrize(
    ("status", "ctype", "headers", "cls"),
    [
        (404, "application/json", {}, ProtocolError),
        (410, "application/json", {}, ProtocolError),
        (200, "text/html", {}, ProtocolError),
        (200, None, {}, ProtocolError),
        (301, None, {"Location": "http://127.0.0.1:9/events/realtime"}, ProtocolError),
        (307, None, {"Location": "//127.0.0.2/events/realtime"}, ProtocolError),  # another host
    ],
)
def test_row20_terminal_responses_make_one_attempt(
    server: Backend, status: int, ctype: Optional[str], headers: Dict[str, str], cls: type
) -> None:
    server.sse_script(b'data: {"type": "node_log", "data": {}}\n\n', status=status, content_type=ctype,
                      headers=headers, times=5)
    states = StateRecorder()
    service = make_service(server.event_source_url)
    service.on_connection_state_change(states)
    with pytest.raises(cls) as info:
        service.connect(timeout=5)
    assert info.value.terminal and info.value.status == status
    wait_threads_gone(keep_dispatcher=True)  # the session ended: nothing left that could retry
    assert server.counters.get("sse_attempts", 0) == 1
    assert service.state is ConnectionState.ERROR
    service.disconnect()


@pytest.mark.parametrize("status", [500, 503])
def test_row20_server_errors_are_retried(server: Backend, status: int) -> None:
    server.sse_script(b'{"error": "busy"}', status=status, content_type="application/json", times=2)
    states = StateRecorder()
    service = make_service(server.event_source_url)
    service.on_connection_state_change(states)
    with service:  # two refusals, then the normal stream
        assert service.is_connected
    assert server.counters["sse_attempts"] == 3
    errors = errors_of(states, ConnectionState.RECONNECTING)
    assert len(errors) == 2 and all(isinstance(e, ServerError) and e.status == status for e in errors)


@pytest.mark.parametrize("ctype", ["text/event-stream; charset=utf-8", "Text/Event-Stream;charset=UTF-8"])
def test_row20_content_type_parameters_accepted(server: Backend, ctype: str) -> None:
    server.sse_script([envelope_block(1, "s-1"), envelope_block(2, "s-2")], content_type=ctype, hold_open=True)
    got: Recorder[RealtimeMessage] = Recorder()
    service = make_service(server.event_source_url)
    service.subscribe("node_log", got)
    with service:
        got.wait_count(2)
        health = service.get_connection_health()
    assert [m.data["n"] for m in got.items] == [1, 2]
    assert health.total_reconnects == 0 and server.counters["sse_attempts"] == 1


@pytest.mark.parametrize("status", [301, 307])
def test_row20_same_origin_redirect_is_followed_then_streams(server: Backend, status: int) -> None:
    # Issue 8 item 20: as browsers' EventSource does (LaunchDarkly's SSE contract tests, 301 and 307).
    server.sse_script(b"", status=status, content_type=None, headers={"Location": "/events/realtime?moved=1"})
    got: Recorder[RealtimeMessage] = Recorder()
    service = make_service(server.event_source_url, auth_token="tok-redirect")
    service.subscribe("node_log", got)
    with service:
        server.publish({"type": "node_log", "workflowId": "wf-1", "data": {"n": 1}})
        got.wait_count(1)
        health = service.get_connection_health()
    assert got.items[0].data == {"n": 1}
    assert health.total_reconnects == 0 and server.counters["sse_attempts"] == 2


def test_row20_redirect_loop_is_refused_after_one_request(server: Backend) -> None:
    server.sse_script(b"", status=302, content_type=None, headers={"Location": server.event_source_url}, times=5)
    service = make_service(server.event_source_url)
    with pytest.raises(ProtocolError) as info:
        service.connect(timeout=5)
    assert info.value.terminal and info.value.status == 302 and "redirect loop" in str(info.value)
    wait_threads_gone(keep_dispatcher=True)
    service.disconnect()
    assert server.counters["sse_attempts"] == 1


def test_row20_redirect_never_reaches_the_other_host(server: Backend) -> None:
    token = "tok-SECRET-sse-redirect"
    other = socket.socket()
    other.bind(("127.0.0.2", 0))
    other.listen(4)
    try:
        target = f"http://127.0.0.2:{other.getsockname()[1]}/events/realtime"
        server.sse_script(b"", status=302, content_type=None, headers={"Location": target}, times=5)
        service = make_service(server.event_source_url, auth_token=token)
        with pytest.raises(ProtocolError) as info:
            service.connect(timeout=5)
        assert info.value.terminal and token not in str(info.value)
        wait_threads_gone(keep_dispatcher=True)
        service.disconnect()
        assert server.counters["sse_attempts"] == 1
        other.setblocking(False)
        with pytest.raises(BlockingIOError):  # nobody ever connected there: no token bytes either
            other.accept()
    finally:
        other.close()


# ---------------------------------------------------------------------------------------------
# rows 21, 22: parsing and framing through the whole service

CORPUS = (
    b"\xef\xbb\xbf: one leading BOM is ignored; this is a comment\r\n"  # S9, S11
    b"retry: 12x\n"  # S5: not all digits, ignored
    b'id: g-1\rdata: {"type": "node_log", "data": {"n": 1}}\r\r'  # S10: CR line ends
    b'id: g-2\r\ndata: {"type": "node_log",\r\ndata: "data": {"n": 2}}\r\n\r\n'  # S14: two data lines, CRLF
    b'Data: {"type": "node_log", "data": {"n": 99}}\n\n'  # S15: field names are case-sensitive
    b'id: g-\x003\ndata:{"type": "node_log", "data": {"n": 3}}\n\n'  # S6: id with NUL ignored; S12 no space
    b"event\n\n"  # S13: a field name with no value, no data: nothing
    b"id: g-4\n\n"  # S7: id-only block, nothing dispatched
    b'data: {"type": "node_log", "data": {"n": 5}}\n\n'
    b'event: message\nid: g-6\ndata: {"type": "node_log", "data": {"n": 6}}\n\n'
    b"retry: 0500\n\n"  # S5: leading zero is fine: 500 ms
    b'data: {"type": "node_log", "data": {"n": 7}}'  # S16: cut by the end of the stream: discarded
)


def tiny_chunks(data: bytes, seed: int) -> List[bytes]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, 3)
        out.append(data[i:i + n])
        i += n
    return out


def test_row21_golden_corpus_in_tiny_chunks_through_the_service(server: Backend) -> None:
    server.sse_script(tiny_chunks(CORPUS, 21))
    got: Recorder[RealtimeMessage] = Recorder()
    states = StateRecorder()
    service = make_service(server.event_source_url, reconnect_interval_ms=10, max_reconnect_interval_ms=20)
    service.subscribe("node_log", got)
    service.on_connection_state_change(states)
    with service:
        server.wait_for_connections(1, timeout=10)  # the scripted stream ended, the service came back
        server.publish({"type": "node_log", "data": {"n": 8}})
        got.wait_for(lambda xs: any(m.data.get("n") == 8 for m in xs), 5, "the live event")
        health = service.get_connection_health()
    assert [m.data["n"] for m in got.items] == [1, 2, 3, 5, 6, 8]
    assert health.invalid_messages == 0
    log = sse_log(server)
    assert log[1]["time"] - log[0]["time"] >= 0.5  # retry: 0500 set the reconnection time
    assert isinstance(errors_of(states, ConnectionState.RECONNECTING)[0], TransportClosed)  # S3: EOF reconnects


def test_row21_resume_id_follows_the_last_event_id_buffer(server: Backend) -> None:
    server.sse_script([b"id: g-4\n\n", envelope_block(5), envelope_block(6, "g-6")])
    got: Recorder[RealtimeMessage] = Recorder()
    service = make_service(server.event_source_url)
    service.subscribe("node_log", got)
    with service:
        got.wait_count(2)
        server.wait_for_connections(1, timeout=10)
    assert sse_log(server)[1]["last_event_id"] == "g-6"


@pytest.mark.parametrize("chunked", [True, False])
def test_row22_framing_chunked_and_close_delimited_no_buffering_delay(server: Backend, chunked: bool) -> None:
    gap = 0.25  # row 22 scaled: events 1 s apart -> 250 ms apart
    server.sse_script([envelope_block(i, f"f-{i}") for i in range(5)], chunked=chunked, chunk_delay=gap,
                      hold_open=True)
    got: Recorder[RealtimeMessage] = Recorder()
    service = make_service(server.event_source_url)
    service.subscribe("node_log", got)
    with service:
        got.wait_count(5, timeout=10)
        times = got.times
    assert [m.data["n"] for m in got.items] == list(range(5))
    gaps = [b - a for a, b in zip(times, times[1:])]
    # each event is delivered as it arrives: a buffered body would deliver them together (gaps ~ 0);
    # a late event would make one gap longer than the server's pace by its delay
    assert all(gap - 0.1 <= g <= within(gap) for g in gaps), gaps


# ---------------------------------------------------------------------------------------------
# row 33: TLS on SSE


@pytest.mark.parametrize(("cert", "ca"), [("good", None), ("good", "wrong"), ("mismatch", "right"), ("expired", "right")])
def test_row33_sse_tls_no_ca_mismatch_expired_terminal_single_attempt(
    tls: Dict[str, Any], ca_files: Dict[str, str], cert: str, ca: Optional[str]
) -> None:
    with Backend(ssl_context=tls[cert]) as server, FaultProxy("127.0.0.1", server.port) as proxy:
        service = make_service(proxy.url(server.event_source_url), ca_bundle=ca_files[ca] if ca else None)
        with pytest.raises(NetworkError) as info:
            service.connect(timeout=5)
        assert info.value.terminal and "certificate" in str(info.value).lower()
        wait_threads_gone(keep_dispatcher=True)
        service.disconnect()
        assert proxy.connections_accepted == 1  # one TCP connection in all: no retry storm
        assert server.counters.get("sse_attempts", 0) == 0


def test_row33_sse_tls_right_ca_and_env_cannot_override(
    tls: Dict[str, Any], ca_files: Dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with Backend(ssl_context=tls["good"]) as server:
        for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
            monkeypatch.setenv(var, ca_files["wrong"])
        got: Recorder[RealtimeMessage] = Recorder()
        service = make_service(server.event_source_url, ca_bundle=ca_files["right"])
        service.subscribe("node_log", got)
        with service:
            server.publish({"type": "node_log", "data": {"tls": True}})
            got.wait_count(1)
            assert service.send_message({"type": "node_log", "data": {"up": "tls"}}) is True  # POST, same CA
            server.wait_for_received(lambda m: m.message.get("data", {}).get("up") == "tls")
        for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
            monkeypatch.setenv(var, ca_files["right"])
        refused = make_service(server.event_source_url, ca_bundle=ca_files["wrong"])
        with pytest.raises(NetworkError):
            refused.connect(timeout=5)
        assert server.sse_connects == 1


@pytest.mark.parametrize("preferred", ["websocket", "eventsource"])
def test_row33_requests_ca_bundle_alone_is_not_trusted_on_either_transport(
    tls: Dict[str, Any], ca_files: Dict[str, str], monkeypatch: pytest.MonkeyPatch, preferred: str
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_files["right"])
    monkeypatch.setenv("CURL_CA_BUNDLE", ca_files["right"])
    with Backend(ssl_context=tls["good"]) as server:
        service = RealtimeService(**{**FAST, "preferred_type": preferred, "websocket_url": server.websocket_url,
                                     "event_source_url": server.event_source_url})
        with pytest.raises(NetworkError) as info:  # both transports trust the same CAs (the SDK's, not requests')
            service.connect(timeout=5)
        assert info.value.terminal
        assert server.counters.get("ws_connects", 0) == 0 and server.sse_connects == 0


def test_disconnect_while_the_sse_handshake_waits_for_headers_is_prompt() -> None:
    """Issue 8 item 4: a server that accepts and never answers the headers. The read timeout is
    40 s (heartbeat interval + timeout); disconnect() must not wait for it, nor must any thread."""
    answer = threading.Event()
    srv = RawServer([lambda conn, req: answer.wait(60)])
    try:
        service = make_service(
            srv.url(), heartbeat_interval_ms=30000, heartbeat_timeout_ms=10000, connection_timeout_ms=10000
        )
        service.connect(wait=False)
        srv.wait_requests(1)  # the SSE request is sent; its response headers never come
        start = time.monotonic()
        service.disconnect()
        assert time.monotonic() - start < well_before(10.0)  # the timeouts at stake are 10 and 40 s
        wait_threads_gone(timeout=well_before(10.0))
    finally:
        answer.set()
        srv.close()


def test_ctrl_c_during_an_sse_connect_exits_promptly() -> None:
    """Issue 8 item 4, as reported: Ctrl-C while connect() waits on an SSE handshake whose headers
    never come. The process used to exit 11 s after the signal (threads waiting on the socket)."""
    answer = threading.Event()
    srv = RawServer([lambda conn, req: answer.wait(60)])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from magk_client import RealtimeService\n"
        "s = RealtimeService(websocket_url=None, event_source_url=sys.argv[2], preferred_type='eventsource')\n"
        "s.connect()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, root, srv.url()], stderr=subprocess.PIPE)
    try:
        srv.wait_requests(1, timeout=20)  # the child's SSE request is sent; connect() is waiting
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        took = time.monotonic() - start
        assert b"KeyboardInterrupt" in proc.stderr.read()  # type: ignore[union-attr]
        # it was 11 s: the default connection timeout, then more
        assert took < well_before(seconds(RealtimeConnectionConfig().connection_timeout_ms)), f"exited {took:.1f} s after Ctrl-C"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stderr.close()  # type: ignore[union-attr]
        answer.set()
        srv.close()


def test_sse_threads_and_fds_back_to_baseline_after_faults(server: Backend, proxy: FaultProxy) -> None:
    """Rows 1/9/10 on SSE: after resets and cuts and a disconnect, no SDK thread or socket is left."""
    service = make_service(proxy.url(server.event_source_url))
    service.connect()
    service.disconnect()
    server.wait_for_disconnects(5)
    fds = len(os.listdir("/proc/self/fd"))
    service.connect()
    for k in range(5):
        server.wait_for_connections(k + 1 + 1, total=True, timeout=10)
        proxy.reset_peer()
    server.wait_for_connections(7, total=True, timeout=10)
    service.disconnect()
    wait_threads_gone()
    server.wait_for_disconnects(5)
    assert proxy.wait_until(lambda p: p.active_connections == 0, 5)
    assert len(os.listdir("/proc/self/fd")) <= fds + 2
