"""RealtimeService over WebSocket against the reference backend on 127.0.0.1."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, List

import pytest
from checks import open_fds
from service_helpers import workflow_done
from timings import FAST, within

from magk_client import (
    AuthError,
    CallbackError,
    CircuitOpenError,
    ClientClosedError,
    ConfigError,
    ConnectionState,
    ConnectionType,
    MagkTimeoutError,
    MessageType,
    NotConnectedError,
    RealtimeMessage,
    RealtimeService,
)
from magk_client.testing import Backend
from magk_client.testing.recorder import Recorder, StateRecorder


def make_service(backend: Backend, **overrides: Any) -> RealtimeService:
    options = dict(FAST)
    options.update(
        websocket_url=backend.websocket_url,
        event_source_url=backend.event_source_url,
    )
    options.update(overrides)
    return RealtimeService(**options)


def thread_names() -> List[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("magk-") and "backend" not in t.name)


def wait_threads_gone(timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while thread_names() and time.monotonic() < deadline:
        for t in threading.enumerate():
            if t.name.startswith(("magk-reader", "magk-supervisor", "magk-dispatcher")):
                t.join(0.05)
    assert thread_names() == []


def test_connect_receive_whole_workflow_in_order(magk_backend: Backend) -> None:
    got: Recorder[RealtimeMessage] = Recorder()
    with make_service(magk_backend) as service:
        assert service.state is ConnectionState.CONNECTED
        assert service.connection_type is ConnectionType.WEBSOCKET
        service.subscribe(None, got)
        magk_backend.execute_command("start_workflow", "wf-1")
        items = got.wait_for(lambda xs: any(workflow_done(m) for m in xs), 10, "workflow end")
    events = [m for m in items if m.id]
    logged = [e["id"] for e in magk_backend.logged_events()]
    assert [m.id for m in events] == logged[: len(events)]
    assert events[0].data.get("type") == "workflow_started"
    assert events[-1].data.get("type") == "workflow_completed"
    kinds = {m.type for m in events}
    assert {MessageType.NODE_STATUS_UPDATE, MessageType.NODE_PROGRESS_UPDATE, MessageType.NODE_RESULT} <= kinds
    assert service.state is ConnectionState.CLOSED


def test_subscription_filters_by_type_workflow_and_node(magk_backend: Backend) -> None:
    magk_backend.add_workflow("wf-2", ["a", "b"])
    progress: Recorder[RealtimeMessage] = Recorder()
    node_b: Recorder[RealtimeMessage] = Recorder()
    done: Recorder[RealtimeMessage] = Recorder()
    with make_service(magk_backend) as service:
        service.subscribe("node_progress_update", progress, workflow_id="wf-2")
        service.subscribe(None, node_b, node_id="b")
        service.subscribe([MessageType.WORKFLOW_EVENT], done, filter=workflow_done)
        magk_backend.execute_command("start_workflow", "wf-2")
        done.wait_count(1)
    assert progress.items and all(m.type == "node_progress_update" and m.workflow_id == "wf-2" for m in progress.items)
    assert node_b.items and all(m.node_id == "b" for m in node_b.items)
    assert done.items[0].data["type"] == "workflow_completed"


def test_pull_api_wait_for_and_messages(magk_backend: Backend) -> None:
    with make_service(magk_backend) as service:
        with service.messages(None, timeout=5) as stream:
            magk_backend.execute_command("start_workflow", "wf-1")
            first = next(m for m in stream if m.type != "subscription_ack")
            assert first.type is MessageType.WORKFLOW_EVENT and first.data["type"] == "workflow_started"
            end = next(m for m in stream if workflow_done(m))
            assert end.data["type"] == "workflow_completed"
        magk_backend.publish({"type": "node_log", "data": {"n": 1}})
        with pytest.raises(MagkTimeoutError):
            service.wait_for("node_error", timeout=0.2)


def test_drop_then_messages_sent_offline_arrive_in_order(magk_backend: Backend) -> None:
    states = StateRecorder()
    with make_service(magk_backend) as service:
        service.on_connection_state_change(states)
        magk_backend.refuse_websocket(503)
        magk_backend.drop_connections()
        states.wait_state(ConnectionState.RECONNECTING)
        sent = [service.send_message({"type": "node_log", "data": {"n": i}}) for i in range(20)]
        assert sent == [False] * 20  # queued while offline
        assert service.get_connection_health().queue_size == 20
        magk_backend.refuse_websocket(None)
        states.wait_state(ConnectionState.CONNECTED, count=1)
        got = magk_backend.wait_for_received(lambda m: m.message.get("type") == "node_log" and m.message["data"]["n"] == 19)
        logs = [m.message["data"]["n"] for m in magk_backend.received_messages if m.message.get("type") == "node_log"]
        assert logs == list(range(20))
        assert got
        assert service.get_connection_health().queue_size == 0
        assert service.get_connection_health().total_reconnects >= 1


def test_offline_queue_bounded_drops_oldest_and_counts(magk_backend: Backend) -> None:
    service = make_service(magk_backend, max_queue_size=5)
    for i in range(12):
        assert service.send_message({"type": "node_log", "data": {"n": i}}) is False
    health = service.get_connection_health()
    assert health.queue_size == 5 and health.queue_dropped == 7
    service.connect()
    try:
        magk_backend.wait_for_received(5)
        assert [m.message["data"]["n"] for m in magk_backend.received_messages] == [7, 8, 9, 10, 11]
    finally:
        service.close()


def test_offline_queue_off_raises(magk_backend: Backend) -> None:
    service = make_service(magk_backend, enable_offline_queue=False)
    with pytest.raises(NotConnectedError):
        service.send_message({"type": "node_log"})
    service.close()
    with pytest.raises(ClientClosedError):
        service.send_message({"type": "node_log"})
    with pytest.raises(ClientClosedError):
        service.connect()


def test_silent_backend_detected_within_interval_plus_timeout(magk_backend: Backend) -> None:
    states = StateRecorder()
    interval, timeout = 0.3, 0.2
    pongs: Recorder[RealtimeMessage] = Recorder()
    with make_service(magk_backend, heartbeat_interval_ms=interval * 1000, heartbeat_timeout_ms=timeout * 1000) as service:
        service.subscribe("pong", pongs)
        pongs.wait_count(1)  # a ping went out and its pong came back: the RTT is recorded
        health = service.get_connection_health()
        assert health.is_healthy
        assert health.latency_ms is not None and health.latency_p99_ms is not None
        assert health.last_heartbeat_at is not None
        service.on_connection_state_change(states)
        magk_backend.go_silent(True)
        silent_at = time.monotonic()
        states.wait_state(ConnectionState.RECONNECTING, timeout=5)
        detected = states.times[[s for s, _ in states.items].index(ConnectionState.RECONNECTING)]
        assert detected - silent_at <= within(interval + timeout)
        error = next(e for s, e in states.items if s is ConnectionState.RECONNECTING)
        assert isinstance(error, MagkTimeoutError)
        logs: Recorder[RealtimeMessage] = Recorder()
        service.subscribe("node_log", logs)
        magk_backend.go_silent(False)
        magk_backend.publish({"type": "node_log", "data": {"back": True}})
        assert logs.wait_count(1)[0].data == {"back": True}


def test_auth_failure_one_attempt_no_retries() -> None:
    with Backend(token="right-token") as server:
        service = make_service(server, auth_token="wrong-token", max_reconnect_attempts=5)
        with pytest.raises(AuthError) as info:
            service.connect(timeout=5)
        assert "wrong-token" not in str(info.value)
        assert service.state is ConnectionState.ERROR
        assert server.counters.get("ws_attempts", 0) == 1
        assert thread_names() == []
        assert "wrong-token" not in repr(service) and "wrong-token" not in repr(service.config)


def test_auth_close_code_is_terminal(magk_backend: Backend) -> None:
    states = StateRecorder()
    with make_service(magk_backend) as service:
        service.on_connection_state_change(states)
        magk_backend.close_connections(4401, "unauthorized")
        states.wait_state(ConnectionState.ERROR)
        error = next(e for s, e in states.items if s is ConnectionState.ERROR)
        assert isinstance(error, AuthError) and error.close_code == 4401
        assert magk_backend.counters.get("ws_attempts", 0) == 1


def test_authenticated_session_logs_never_show_token(caplog: pytest.LogCaptureFixture) -> None:
    token = "tok-SECRET-123456"
    caplog.set_level(logging.DEBUG)
    with Backend(token=token) as server:
        with make_service(server, auth_token=token, api_key="key-SECRET-999") as service:
            server.execute_command("start_workflow", "wf-1")
            service.wait_for(workflow_done, timeout=10)
            server.drop_connections()
            text = repr(service) + repr(service.config) + repr(service.get_connection_health())
        bad = make_service(server, auth_token="tok-WRONG-SECRET")
        with pytest.raises(AuthError) as info:
            bad.connect(timeout=5)
        text += str(info.value) + repr(info.value)
    logged = "\n".join(r.getMessage() for r in caplog.records) + text
    assert logged  # something was logged at debug level
    for secret in (token, "key-SECRET-999", "tok-WRONG-SECRET"):
        assert secret not in logged


def test_accept_then_close_attempts_stay_in_backoff_envelope(magk_backend: Backend) -> None:
    states = StateRecorder()
    magk_backend.accept_then_close(True)
    service = make_service(
        magk_backend,
        reconnect_interval_ms=40,
        max_reconnect_interval_ms=640,
        reconnect_backoff_multiplier=2.0,
        min_stable_connection_ms=5000,
        max_reconnect_attempts=5,
        circuit_breaker_threshold=100,
    )
    service.on_connection_state_change(states)
    service.connect(wait=False)
    states.wait_state(ConnectionState.ERROR, timeout=15)
    service.disconnect()
    log = [e for e in magk_backend.connections_log if e["transport"] == "websocket"]
    # 1 initial attempt + max_reconnect_attempts retries, never more
    assert len(log) == 6
    gaps = [b["time"] - a["time"] for a, b in zip(log, log[1:])]
    for k, gap in enumerate(gaps):
        ceiling = min(0.64, 0.04 * 2 ** (k + 1))
        assert gap <= within(ceiling), (k, gap, gaps)
    assert service.get_connection_health().reconnect_attempts == 5


def test_circuit_breaker_opens_and_shows_in_health(magk_backend: Backend) -> None:
    states = StateRecorder()
    magk_backend.refuse_websocket(503)
    service = make_service(
        magk_backend, circuit_breaker_threshold=3, circuit_breaker_reset_ms=60000, max_reconnect_attempts=50
    )
    service.on_connection_state_change(states)
    service.connect(wait=False)
    states.wait_for(lambda xs: any(isinstance(e, CircuitOpenError) for _, e in xs), 10, "circuit open")
    assert service.get_connection_health().circuit_state.value == "open"
    attempts = magk_backend.counters.get("ws_attempts", 0)
    assert attempts == 3
    service.disconnect()
    assert thread_names() == []


def test_server_heartbeat_answered_with_pong() -> None:
    with Backend(heartbeat_interval=0.05) as server:
        with make_service(server):
            server.wait_until(lambda: server.counters.get("pongs", 0) >= 2, 5, "pongs")
            assert all(p.message["type"] == "pong" for p in server.pongs)


def test_callback_that_raises_is_counted_and_delivery_goes_on(magk_backend: Backend) -> None:
    got: Recorder[RealtimeMessage] = Recorder()
    errors: Recorder[Any] = Recorder()
    calls = [0]

    def flaky(message: RealtimeMessage) -> None:
        calls[0] += 1
        if calls[0] % 3 == 0:
            raise RuntimeError("boom")

    with make_service(magk_backend) as service:
        service.on_error(errors)
        service.subscribe(None, flaky)
        service.subscribe(None, got)
        magk_backend.execute_command("start_workflow", "wf-1")
        items = got.wait_for(lambda xs: any(workflow_done(m) for m in xs), 10)
        health = service.get_connection_health()
    assert health.callback_errors == calls[0] // 3 > 0
    assert len(items) == calls[0]
    assert any(isinstance(e, CallbackError) for e in errors.items)


def test_callback_can_disconnect_without_deadlock(magk_backend: Backend) -> None:
    service = make_service(magk_backend)
    service.connect()
    returned = threading.Event()

    def stop(message: RealtimeMessage) -> None:
        service.disconnect()
        returned.set()

    service.subscribe("node_status_update", stop)
    magk_backend.execute_command("start_workflow", "wf-1")
    assert returned.wait(5)
    wait_threads_gone()
    assert service.state is ConnectionState.DISCONNECTED
    attempts = magk_backend.counters["ws_attempts"]
    assert attempts == 1  # no reconnect after the callback's disconnect


def test_public_methods_from_inside_callbacks(magk_backend: Backend) -> None:
    done = threading.Event()
    with make_service(magk_backend) as service:

        def busy(message: RealtimeMessage) -> None:
            sid = service.subscribe("node_log", lambda m: None)
            service.unsubscribe(sid)
            service.get_connection_health()
            service.send_message({"type": "node_log", "data": {"from": "callback"}})
            with pytest.raises(Exception):
                service.wait_for("node_log", timeout=0.1)
            done.set()

        service.subscribe("workflow_event", busy)
        magk_backend.execute_command("start_workflow", "wf-1")
        assert done.wait(5)
        magk_backend.wait_for_received(lambda m: m.message.get("data", {}).get("from") == "callback")


def test_concurrent_subscribe_unsubscribe_while_messages_flow(magk_backend: Backend) -> None:
    magk_backend.add_workflow("long", [f"n{i}" for i in range(30)], progress_steps=10)
    errors: List[BaseException] = []
    seen: Recorder[RealtimeMessage] = Recorder()
    with make_service(magk_backend) as service:
        service.subscribe(None, seen)
        magk_backend.execute_command("start_workflow", "long")

        def churn() -> None:
            try:
                for _ in range(125):
                    sid = service.subscribe(["node_log", "node_result"], lambda m: None, workflow_id="long")
                    assert service.unsubscribe(sid)
            except BaseException as exc:  # pragma: no cover - the assertion below reports it
                errors.append(exc)

        threads = [threading.Thread(target=churn, name=f"churn-{i}") for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        seen.wait_for(lambda xs: any(workflow_done(m) for m in xs), 20)
    assert errors == []
    ids = [m.id for m in seen.items if m.id]
    assert len(ids) == len(set(ids))


def test_threads_back_to_baseline_after_disconnect(magk_backend: Backend) -> None:
    before = thread_names()
    service = make_service(magk_backend)
    service.connect()
    names = thread_names()
    assert any(n.startswith("magk-reader") for n in names)
    assert any(n.startswith("magk-supervisor") for n in names)
    assert any(n.startswith("magk-dispatcher") for n in names)
    service.disconnect()
    assert thread_names() == before == []


def test_hundred_connect_disconnect_cycles_leave_nothing_behind(magk_backend: Backend) -> None:
    service = make_service(magk_backend)
    service.connect()
    service.disconnect()
    fds = open_fds()
    for _ in range(100):
        service.connect()
        assert service.is_connected
        service.disconnect()
    assert thread_names() == []
    magk_backend.wait_for_disconnects(5)
    assert open_fds() <= fds + 2


def test_lifecycle_misuse_is_idempotent(magk_backend: Backend) -> None:
    service = make_service(magk_backend)
    service.disconnect()  # before connect
    service.connect()
    service.connect()  # twice
    assert magk_backend.counters["ws_attempts"] == 1
    service.close()
    service.close()
    assert service.state is ConnectionState.CLOSED
    with pytest.raises(ClientClosedError):
        service.connect()


def test_close_codes_reconnect_policy(magk_backend: Backend) -> None:
    states = StateRecorder()
    service = make_service(magk_backend)
    service.on_connection_state_change(states)
    with service:
        for k, code in enumerate((1000, 1001, 1011), start=1):
            states.wait_state(ConnectionState.CONNECTED, count=k)
            magk_backend.wait_for_connections(1)
            magk_backend.close_connections(code)
            states.wait_state(ConnectionState.RECONNECTING, count=k)
        states.wait_state(ConnectionState.CONNECTED, count=4)
        errors = [e for s, e in states.items if s is ConnectionState.RECONNECTING]
        assert [getattr(e, "close_code", None) for e in errors] == [1000, 1001, 1011]
        assert service.get_connection_health().total_reconnects == 3


@pytest.mark.parametrize(
    "kind", ["malformed_json", "non_object", "wrong_field_types", "deep_nesting", "huge_int", "nan"]
)
def test_hostile_input_is_dropped_counted_and_reader_survives(magk_backend: Backend, kind: str) -> None:
    errors: Recorder[Any] = Recorder()
    got: Recorder[RealtimeMessage] = Recorder()
    with make_service(magk_backend) as service:
        service.on_error(errors)
        service.subscribe("node_log", got)
        magk_backend.send_bad(kind)
        magk_backend.publish({"type": "node_log", "data": {"after": kind}})
        got.wait_count(1)
        health = service.get_connection_health()
    assert got.items[0].data == {"after": kind}
    assert health.invalid_messages == 1
    assert errors.items and health.total_reconnects == 0


def test_unknown_type_is_delivered_to_subscribers_naming_it(magk_backend: Backend) -> None:
    got: Recorder[RealtimeMessage] = Recorder()
    with make_service(magk_backend) as service:
        service.subscribe("brand_new_type", got)
        magk_backend.publish({"type": "brand_new_type", "data": {"x": 1}})
        got.wait_count(1)
    assert got.items[0].type == "brand_new_type"


def test_oversized_message_refused_and_connection_recovers(magk_backend: Backend) -> None:
    errors: Recorder[Any] = Recorder()
    got: Recorder[RealtimeMessage] = Recorder()
    with make_service(magk_backend, max_message_size=64 * 1024) as service:
        service.on_error(errors)
        service.subscribe("node_log", got)
        magk_backend.send_bad("oversized", size=1024 * 1024)
        errors.wait_for(lambda xs: any("max_message_size" in str(e) or "large" in str(e).lower() for e in xs), 5)
        magk_backend.wait_for_connections(2, total=True, transport="websocket")
        magk_backend.publish({"type": "node_log", "data": {"ok": True}})
        got.wait_count(1)
        assert service.get_connection_health().oversized_messages == 1


def test_plaintext_credentials_to_remote_host_refused_before_any_socket() -> None:
    service = RealtimeService(
        websocket_url="ws://example.invalid:8000/ws/realtime",
        event_source_url=None,
        auth_token="secret-token",
        connection_timeout_ms=1000,
    )
    with pytest.raises(ConfigError) as info:
        service.connect(timeout=5)
    assert "secret-token" not in str(info.value)
    assert "allow_insecure_auth" in str(info.value)


def test_resume_after_drop_delivers_each_event_once_in_order(magk_backend: Backend) -> None:
    magk_backend.pace = 0.002
    magk_backend.add_workflow("resume", [f"n{i}" for i in range(20)], progress_steps=5)
    got: Recorder[RealtimeMessage] = Recorder()
    with make_service(magk_backend) as service:
        service.subscribe(None, got)
        magk_backend.execute_command("start_workflow", "resume")
        for _ in range(3):
            target = len(got) + 20
            got.wait_for(lambda xs: len(xs) > target, 10)  # noqa: B023 - used at once
            magk_backend.drop_connections()
        got.wait_for(lambda xs: any(workflow_done(m) for m in xs), 20)
        health = service.get_connection_health()
    ids = [m.id for m in got.items if m.id and m.type != "subscription_ack"]
    logged = [e["id"] for e in magk_backend.logged_events()]
    assert ids == logged
    assert health.total_reconnects >= 3


def test_tls_self_signed_refused_by_default_accepted_with_ca(tmp_path: Any) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with Backend(ssl_context=ctx) as server:
        assert server.websocket_url.startswith("wss://")
        refused = make_service(server, max_reconnect_attempts=3)
        with pytest.raises(Exception) as info:
            refused.connect(timeout=5)
        assert "certificate" in str(info.value).lower()
        assert server.counters.get("ws_connects", 0) == 0
        with make_service(server, ca_bundle=str(ca_file)) as service:
            assert service.is_connected


def test_dropped_service_is_collected_and_its_threads_end(magk_backend: Backend) -> None:
    """docs/faults.rst row 31 (notebook re-run): a service dropped while connected leaves nothing behind."""
    import gc

    for _ in range(5):
        service = make_service(magk_backend)
        service.connect()
        assert service.is_connected
        del service
        gc.collect()
    gc.collect()
    wait_threads_gone(10)  # joins them: each ends once its finalizer has run
    magk_backend.wait_for_disconnects(5)
    assert magk_backend.open_connections == {}


def test_reconnect_resumes_and_update_config_applies(magk_backend: Backend) -> None:
    states = StateRecorder()
    got: Recorder[RealtimeMessage] = Recorder()
    service = make_service(magk_backend)
    service.on_connection_state_change(states)
    service.subscribe("node_log", got)
    with service:
        magk_backend.publish({"type": "node_log", "data": {"n": 1}})
        got.wait_count(1)
        service.reconnect(timeout=5)
        assert service.is_connected
        magk_backend.wait_for_connections(2, total=True)
        log = magk_backend.connections_log
        assert log[-1]["last_event_id"] == got.items[0].id  # resumed where it was
        cfg = service.update_config(maxQueueSize=3, heartbeat_interval_ms=1500)
        assert cfg.max_queue_size == 3 and service.config.heartbeat_interval_ms == 1500
        with pytest.raises(ConfigError):
            service.update_config(heartbeat_interval_ms=-1)
        assert service.config.heartbeat_interval_ms == 1500  # a bad update changes nothing
        magk_backend.publish({"type": "node_log", "data": {"n": 2}})
        got.wait_count(2)
    assert [m.data["n"] for m in got.items] == [1, 2]


def test_clear_queue_and_retention(magk_backend: Backend) -> None:
    service = make_service(magk_backend, queue_retention_ms=1)
    service.send_message({"type": "node_log", "data": {"old": True}})
    threading.Event().wait(0.01)  # let the 1 ms retention pass (the condition is time itself)
    service.send_message({"type": "node_log", "data": {"fresh": True}})
    assert service.clear_queue() >= 1
    assert service.get_connection_health().queue_size == 0
    service.update_config(queue_retention_ms=60000)
    service.send_message({"type": "node_log", "data": {"kept": True}})
    with service:
        received = magk_backend.wait_for_received(lambda m: m.message.get("data") == {"kept": True})
    assert received and not any(m.message.get("data") == {"fresh": True} for m in magk_backend.received_messages)


def test_custom_error_recovery_without_reconnect_stops_on_first_drop(magk_backend: Backend) -> None:
    states = StateRecorder()
    service = RealtimeService(
        dict(FAST, websocket_url=magk_backend.websocket_url, event_source_url=magk_backend.event_source_url),
        error_recovery={"networkErrors": ["notify_only"]},
    )
    service.on_connection_state_change(states)
    errors: Recorder[Any] = Recorder()
    service.on_error(errors)
    with service:
        magk_backend.drop_connections()
        states.wait_state(ConnectionState.ERROR)
        assert errors.wait_count(1)
        # no queue_offline among the strategies: nothing is queued; a manual reconnect works
        with pytest.raises(NotConnectedError):
            service.send_message({"type": "node_log", "data": {"queued": True}})
        service.connect(timeout=5)
        service.send_message({"type": "node_log", "data": {"after": True}})
        magk_backend.wait_for_received(lambda m: m.message.get("data") == {"after": True})
    assert magk_backend.counters["ws_attempts"] == 2
    assert not any(m.message.get("data") == {"queued": True} for m in magk_backend.received_messages)


def test_escalate_strategy_logs_at_error_level(magk_backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="magk_client")
    states = StateRecorder()
    service = RealtimeService(
        dict(FAST, websocket_url=magk_backend.websocket_url, event_source_url=magk_backend.event_source_url),
        error_recovery={"networkErrors": ["escalate", "reconnect"]},
    )
    service.on_connection_state_change(states)
    with service:
        magk_backend.drop_connections()
        states.wait_state(ConnectionState.RECONNECTING)
    assert any(r.levelno == logging.ERROR and "NetworkError" in r.getMessage() for r in caplog.records)


def test_offline_queue_bounded_by_bytes(magk_backend: Backend) -> None:
    from magk_client import QueueFullError

    service = make_service(magk_backend, max_queue_size=1000, max_queue_bytes=2000)
    for i in range(50):
        service.send_message({"type": "node_log", "data": {"n": i, "pad": "x" * 100}})
    health = service.get_connection_health()
    assert 0 < health.queue_size < 50 and health.queue_dropped == 50 - health.queue_size
    with pytest.raises(QueueFullError):
        service.send_message({"type": "node_log", "data": {"pad": "y" * 5000}})
    service.close()
