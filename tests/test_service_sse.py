"""RealtimeService over SSE, WebSocket <-> SSE fallback, and gapless delivery (issue 4)."""

from __future__ import annotations

import random
import threading
from typing import Any, List

import pytest
from checks import open_fds
from service_helpers import event_ids, sdk_threads, workflow_done
from timings import FAST

from magk_client import (
    AuthError,
    ConnectionState,
    ConnectionType,
    MagkTimeoutError,
    MessageType,
    RealtimeMessage,
    RealtimeService,
    ResumeGapError,
)
from magk_client.testing import Backend
from magk_client.testing.recorder import Recorder, StateRecorder


def make_service(backend: Backend, **overrides: Any) -> RealtimeService:
    options: dict = dict(FAST, fallback_to_secondary=True)  # the default: this file tests the fallback
    options.update(websocket_url=backend.websocket_url, event_source_url=backend.event_source_url)
    options.update(overrides)
    return RealtimeService(**options)


def test_sse_receives_workflow_and_sends_over_http(magk_backend: Backend) -> None:
    got: Recorder[RealtimeMessage] = Recorder()
    with make_service(magk_backend, preferred_type="eventsource") as service:
        assert service.connection_type is ConnectionType.EVENTSOURCE
        service.subscribe(None, got)
        magk_backend.execute_command("start_workflow", "wf-1")
        got.wait_for(lambda xs: any(workflow_done(m) for m in xs), 10)
        assert service.send_message({"type": "node_log", "data": {"via": "sse"}}) is True
        received = magk_backend.wait_for_received(lambda m: m.message.get("data", {}).get("via") == "sse")
        assert received
    assert event_ids(got.items) == [e["id"] for e in magk_backend.logged_events()]


def test_sse_threads_and_sockets_back_to_baseline(magk_backend: Backend) -> None:
    fds = open_fds()
    service = make_service(magk_backend, preferred_type="eventsource")
    for _ in range(10):
        service.connect()
        assert service.is_connected
        service.disconnect()
        assert sdk_threads() == []
    magk_backend.wait_for_disconnects(5)
    assert open_fds() <= fds + 2


def stream_with_drops(magk_backend: Backend, service: RealtimeService, total: int, drops: int, rng: random.Random,
                      during_drops: Any = None) -> List[RealtimeMessage]:
    """Publish ``total`` events at a steady pace while dropping every connection ``drops`` times."""
    got: Recorder[RealtimeMessage] = Recorder()
    service.subscribe(None, got)
    done = threading.Event()
    dropped = [0]

    def publisher() -> None:
        for start in range(0, total, 20):
            magk_backend.publish_many({"type": "node_log", "workflowId": "big", "data": {"i": i}}
                                for i in range(start, min(start + 20, total)))
            if done.wait(0.004):
                return

    pub = threading.Thread(target=publisher, name="test-publisher")
    pub.start()
    try:
        for k in range(drops):
            target = min(total - 1, (k + 1) * total // (drops + 1) + rng.randint(-10, 10))
            got.wait_for(lambda xs: len(event_ids(xs)) >= target, 30, f"{target} events")  # noqa: B023
            magk_backend.wait_for_connections(k + 1, total=True, timeout=10)  # reconnected since the last drop
            dropped[0] += magk_backend.drop_connections()
            if during_drops is not None:
                during_drops(k)
        got.wait_for(lambda xs: len(event_ids(xs)) >= total, 60, f"all {total} events")
    finally:
        done.set()
        pub.join(10)
    assert dropped[0] >= drops  # every drop cut a live connection
    return got.items


@pytest.mark.parametrize("preferred", ["websocket", "eventsource"])
def test_long_stream_with_100_drops_exactly_once_in_order(magk_backend: Backend, preferred: str) -> None:
    total = 5000
    with make_service(magk_backend, preferred_type=preferred, fallback_to_secondary=False) as service:
        items = stream_with_drops(magk_backend, service, total, 100, random.Random(7))
        health = service.get_connection_health()
    ids = event_ids(items)
    assert ids == [e["id"] for e in magk_backend.logged_events()][:total]
    assert len(ids) == len(set(ids)) == total
    assert [m.data["i"] for m in items if m.type == "node_log"] == list(range(total))
    assert health.total_reconnects >= 90  # a drop during a handshake fails that attempt instead
    assert health.resume_gaps == 0


def test_long_stream_moves_websocket_to_sse_and_back_without_loss(magk_backend: Backend) -> None:
    total = 5000
    states = StateRecorder()
    service = make_service(magk_backend, preferred_type="websocket", fallback_to_secondary=True,
                           preferred_retry_interval_ms=200)
    service.on_connection_state_change(states)
    service.connect()

    def toggle(k: int) -> None:
        if k == 20:
            magk_backend.refuse_websocket(503)
        elif k == 60:
            magk_backend.refuse_websocket(None)

    try:
        items = stream_with_drops(magk_backend, service, total, 100, random.Random(11), toggle)
        states.wait_for(
            lambda xs: service.connection_type is ConnectionType.WEBSOCKET and xs[-1][0] is ConnectionState.CONNECTED,
            10,
            "back on WebSocket",
        )
        health = service.get_connection_health()
    finally:
        service.disconnect()
    ids = event_ids(items)
    assert ids == [e["id"] for e in magk_backend.logged_events()][:total]
    assert len(set(ids)) == total
    assert magk_backend.sse_connects >= 1  # it did run on SSE for a while
    assert health.transport_switches >= 2  # there and back again
    log = magk_backend.connections_log
    kinds = [e["transport"] for e in log if e["outcome"] in ("accepted", "connected", "ok")] or [
        e["transport"] for e in log
    ]
    assert "sse" in kinds and kinds[-1] == "websocket"


@pytest.mark.parametrize("preferred", ["websocket", "eventsource"])
def test_expired_resume_id_reports_a_gap(magk_backend: Backend, preferred: str) -> None:
    states = StateRecorder()
    gaps: Recorder[ResumeGapError] = Recorder()
    got: Recorder[RealtimeMessage] = Recorder()
    with make_service(magk_backend, preferred_type=preferred, fallback_to_secondary=False) as service:
        service.on_connection_state_change(states)
        service.on_resume_gap(gaps)
        service.subscribe(None, got)
        magk_backend.publish({"type": "node_log", "data": {"n": 1}})
        got.wait_for(lambda xs: len(event_ids(xs)) >= 1, 5)
        magk_backend.go_silent(True)
        magk_backend.publish({"type": "node_log", "data": {"n": 2}})
        magk_backend.expire_replay_log()
        magk_backend.go_silent(False)
        magk_backend.drop_connections()
        gaps.wait_count(1)
        assert isinstance(gaps.items[0], ResumeGapError)
        assert any(isinstance(e, ResumeGapError) for _, e in states.items)
        assert service.get_connection_health().resume_gaps == 1
        # the gap notice comes before the first event after the reconnect
        magk_backend.publish({"type": "node_log", "data": {"n": 3}})
        got.wait_for(lambda xs: any(m.data.get("n") == 3 for m in xs), 5)
    kinds = [m.type for m in got.items]
    assert kinds.index("subscription_error") < max(i for i, m in enumerate(got.items) if m.data.get("n") == 3)


def test_silent_sse_stream_detected_and_recovered(magk_backend: Backend) -> None:
    states = StateRecorder()
    with make_service(magk_backend, preferred_type="eventsource", fallback_to_secondary=False,
                      heartbeat_interval_ms=300, heartbeat_timeout_ms=200) as service:
        service.on_connection_state_change(states)
        magk_backend.go_silent(True)
        states.wait_state(ConnectionState.RECONNECTING, timeout=5)
        error = next(e for s, e in states.items if s is ConnectionState.RECONNECTING)
        assert isinstance(error, MagkTimeoutError)
        logs: Recorder[RealtimeMessage] = Recorder()
        service.subscribe("node_log", logs)
        magk_backend.go_silent(False)
        magk_backend.publish({"type": "node_log", "data": {"alive": True}})
        assert logs.wait_count(1)[0].data == {"alive": True}  # resumed: nothing lost


def test_sse_204_stops_reconnecting(magk_backend: Backend) -> None:
    magk_backend.sse_script(b"", status=204, content_type=None, times=5)
    service = make_service(magk_backend, preferred_type="eventsource", fallback_to_secondary=False)
    with pytest.raises(Exception) as info:
        service.connect(timeout=5)
    assert getattr(info.value, "terminal", False) is True
    assert magk_backend.counters.get("sse_attempts", 0) == 1
    assert sdk_threads() == []


def test_sse_401_is_auth_error_without_retries() -> None:
    with Backend(token="good") as server:
        service = make_service(server, preferred_type="eventsource", auth_token="bad", fallback_to_secondary=True)
        with pytest.raises(AuthError):
            service.connect(timeout=5)
        assert server.counters.get("sse_attempts", 0) == 1
        assert server.counters.get("ws_attempts", 0) == 0  # auth never falls back either


def test_refused_upgrade_falls_back_to_sse(magk_backend: Backend) -> None:
    magk_backend.refuse_websocket(404)
    states = StateRecorder()
    service = make_service(magk_backend, preferred_type="websocket", fallback_to_secondary=True,
                           preferred_retry_interval_ms=100)
    service.on_connection_state_change(states)
    try:
        service.connect(timeout=10)
        assert service.connection_type is ConnectionType.EVENTSOURCE
        magk_backend.refuse_websocket(None)
        magk_backend.wait_for_connections(1, transport="websocket", timeout=10)
        states.wait_for(lambda xs: service.connection_type is ConnectionType.WEBSOCKET, 10, "switch back")
        assert service.get_connection_health().transport_switches >= 2
    finally:
        service.disconnect()


def test_named_sse_events_use_transformers(magk_backend: Backend) -> None:
    got: Recorder[RealtimeMessage] = Recorder()
    body = (
        b'event: workflow_started\nid: b-1\ndata: {"data": {"workflowId": "wf-9"}}\n\n'
        b'event: custom_thing\nid: b-2\ndata: {"value": 5}\n\n'
        b'event: unknown_name\nid: b-3\ndata: {}\n\n'
        b'id: b-4\ndata: {"type": "node_started", "workflowId": "wf-9", "nodeId": "n", "data": {}}\n\n'
    )
    magk_backend.sse_script(body, hold_open=True)
    service = make_service(magk_backend, preferred_type="eventsource", fallback_to_secondary=False)
    service.register_message_transformer(
        "custom_thing", lambda m: {"type": "node_metadata", "id": m.get("id"), "data": {"metadata": m["value"]}}
    )
    errors: Recorder[Any] = Recorder()
    service.on_error(errors)
    service.subscribe(None, got)
    with service:
        got.wait_count(3)
    kinds = [(m.type, m.id) for m in got.items]
    assert kinds == [
        (MessageType.WORKFLOW_EVENT, "b-1"),
        (MessageType.NODE_METADATA, "b-2"),
        (MessageType.NODE_STATUS_UPDATE, ""),  # the older format has no ids
    ]
    assert got.items[0].workflow_id == "wf-9"
    assert any("unknown_name" in str(e) for e in errors.items)


def test_repeated_websocket_network_failures_fall_back_to_sse(magk_backend: Backend) -> None:
    import socket

    with socket.socket() as placeholder:  # a port with nothing listening: connection refused
        placeholder.bind(("127.0.0.1", 0))
        dead_port = placeholder.getsockname()[1]
    service = make_service(magk_backend, websocket_url=f"ws://127.0.0.1:{dead_port}/ws/realtime",
                           fallback_to_secondary=True, preferred_retry_interval_ms=60000)
    try:
        service.connect(timeout=10)
        assert service.connection_type is ConnectionType.EVENTSOURCE
        health = service.get_connection_health()
        assert health.transport_switches == 1
        assert any("NetworkError" in e for e in health.errors)
    finally:
        service.disconnect()
