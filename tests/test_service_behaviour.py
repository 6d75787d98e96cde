"""Documented behaviour that has to happen (issue 8): recovery strategies, update_config keeping state,
logging fields, wall-clock health times, outbound id/timestamp, defaults, single-URL configs, and the
dispatch bound dropping only the excess. Against the reference backend, the FaultProxy and a raw SSE
server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Callable, List

import pytest
from service_helpers import build_service
from timings import FAST

from magk_client import (
    CircuitOpenError,
    ConnectionState,
    ConnectionType,
    MagkTimeoutError,
    NetworkError,
    NotConnectedError,
    RealtimeAdapterConfig,
    RealtimeConnectionConfig,
    RealtimeMessage,
    RealtimeService,
)
from magk_client.errors import ErrorCategory
from magk_client.models import CircuitState
from magk_client.policies import Backoff
from magk_client.testing import Backend
from magk_client.testing.proxy import FaultProxy
from magk_client.testing.raw import RawServer, sse
from magk_client.testing.recorder import Recorder, StateRecorder

pytest_plugins = ["service_helpers"]  # its fixtures: server, proxy, and the autouse thread check
pytestmark = pytest.mark.timeout(60)

ID_RE = re.compile(r"^msg_\d{13}_[0-9a-z]{9}$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def via_proxy(server: Backend, proxy: FaultProxy, **overrides: Any) -> RealtimeService:
    return build_service(
        dict(FAST, websocket_url=proxy.url(server.websocket_url), event_source_url=None), overrides
    )


def direct(server: Backend, **overrides: Any) -> RealtimeService:
    return build_service(dict(FAST, websocket_url=server.websocket_url, event_source_url=None), overrides)


def sending_directly(service: RealtimeService, server: Backend) -> None:
    """Wait until send_message goes straight to the socket (after connect() returns, the supervisor
    still flushes the offline queue first). Re-checked whenever the backend records a message."""
    probe = {"type": "node_log", "data": {"probe": True}}
    server.wait_until(lambda: service.send_message(probe), 10, "a direct send")


# ---------------------------------------------------------------------------------------------
# finding 7: every recovery strategy does what it says, and nothing it does not say


@pytest.mark.parametrize(
    ("recovery", "fault"),
    [
        ({"timeoutErrors": ["reconnect"]}, "blackhole"),  # the brief's example: no queue_offline
        ({"networkErrors": ["reconnect"]}, "refuse"),
    ],
    ids=["timeout-outage", "network-outage"],
)
def test_without_queue_offline_a_send_during_the_outage_raises(
    server: Backend, proxy: FaultProxy, recovery: Any, fault: str
) -> None:
    states = StateRecorder()
    service = via_proxy(server, proxy, heartbeat_interval_ms=300, heartbeat_timeout_ms=200,
                        connection_timeout_ms=500, error_recovery=recovery)
    service.on_connection_state_change(states)
    with service:
        service.send_message({"type": "node_log", "data": {"n": 1}})
        server.wait_for_received(lambda m: m.message.get("data") == {"n": 1})
        if fault == "blackhole":
            proxy.blackhole(True)
            expected: type = MagkTimeoutError
        else:
            proxy.refuse(True)
            proxy.reset_peer()
            expected = NetworkError
        items = states.wait_state(ConnectionState.RECONNECTING)
        assert isinstance(next(e for s, e in items if s is ConnectionState.RECONNECTING), expected)
        with pytest.raises(NotConnectedError) as info:
            service.send_message({"type": "node_log", "data": {"n": 2}})
        assert "queue_offline" in str(info.value)
        assert service.get_connection_health().queue_size == 0
        proxy.blackhole(False)
        proxy.refuse(False)
        states.wait_state(ConnectionState.CONNECTED, count=2)
        service.send_message({"type": "node_log", "data": {"n": 3}})  # sent or queued: connected again
        server.wait_for_received(lambda m: m.message.get("data") == {"n": 3})
    assert not any(m.message.get("data") == {"n": 2} for m in server.received_messages)


def test_a_send_that_times_out_without_queue_offline_raises() -> None:
    size = 10 * 1024 * 1024
    with Backend(max_body_size=16 * 1024 * 1024) as big, FaultProxy("127.0.0.1", big.port) as proxy:
        service = build_service(dict(FAST, websocket_url=proxy.url(big.websocket_url), event_source_url=None),
                                dict(message_timeout_ms=300))  # timeout_errors default: reconnect only
        service.connect()
        try:
            sending_directly(service, big)
            proxy.stop_reading(True)
            with pytest.raises(NotConnectedError) as info:
                service.send_message({"type": "node_log", "data": {"blob": "b" * size}})
            assert isinstance(info.value.__context__, MagkTimeoutError)
            assert service.get_connection_health().queue_size == 0
        finally:
            proxy.stop_reading(False)
            service.disconnect()


def test_with_queue_offline_a_send_during_the_outage_is_queued_then_sent(server: Backend, proxy: FaultProxy) -> None:
    states = StateRecorder()
    service = via_proxy(server, proxy)  # network_errors default: reconnect + queue_offline
    service.on_connection_state_change(states)
    with service:
        proxy.refuse(True)
        proxy.reset_peer()
        states.wait_state(ConnectionState.RECONNECTING)
        assert service.send_message({"type": "node_log", "data": {"queued": True}}) is False
        proxy.refuse(False)
        server.wait_for_received(lambda m: m.message.get("data") == {"queued": True})


@pytest.mark.parametrize(
    ("strategies", "notified"),
    [(["reconnect"], False), (["reconnect", "notify_only"], True), (["reconnect", "escalate"], True)],
)
def test_notify_only_reports_to_error_listeners_and_nothing_else_does(
    server: Backend, strategies: List[str], notified: bool
) -> None:
    states = StateRecorder()
    errors: Recorder[Any] = Recorder()
    service = direct(server, error_recovery={"networkErrors": strategies})
    service.on_error(errors)
    service.on_connection_state_change(states)
    with service:
        server.drop_connections()
        # the error notice is queued before the state change, on the same dispatcher thread
        states.wait_state(ConnectionState.RECONNECTING)
        states.wait_state(ConnectionState.CONNECTED, count=2)
        got = [e for e in errors.items if getattr(e, "category", None) is ErrorCategory.NETWORK]
    assert bool(got) is notified, got
    assert service.get_connection_health().errors  # recorded in health either way


def test_service_reads_strategies_from_constructor(server: Backend) -> None:
    errors: Recorder[Any] = Recorder()
    states = StateRecorder()
    service = RealtimeService(
        dict(FAST, websocket_url=server.websocket_url, event_source_url=None),
        error_recovery={"networkErrors": ["notify_only"]},  # no reconnect, no queue
    )
    service.on_error(errors)
    service.on_connection_state_change(states)
    try:
        service.connect(timeout=5)
        server.drop_connections()
        states.wait_state(ConnectionState.ERROR)
        errors.wait_for(lambda xs: any(getattr(e, "category", None) is ErrorCategory.NETWORK for e in xs), 5, "it")
        with pytest.raises(NotConnectedError):
            service.send_message({"type": "node_log", "data": {}})
    finally:
        service.disconnect()


def test_send_before_connect_and_after_disconnect_still_queues(server: Backend) -> None:
    service = direct(server, error_recovery={"networkErrors": ["reconnect"]})
    assert service.send_message({"type": "node_log", "data": {"early": True}}) is False  # no outage yet
    service.connect(timeout=5)
    server.wait_for_received(lambda m: m.message.get("data") == {"early": True})
    service.disconnect()
    assert service.send_message({"type": "node_log", "data": {"late": True}}) is False
    assert service.get_connection_health().queue_size == 1


# ---------------------------------------------------------------------------------------------
# finding 9: update_config changes what it is asked to change and keeps the rest


def test_update_config_keeps_the_connection_open_time_so_a_stable_drop_resets_backoff(
    server: Backend, proxy: FaultProxy
) -> None:
    states = StateRecorder()
    service = via_proxy(server, proxy, min_stable_connection_ms=0)
    service.on_connection_state_change(states)
    proxy.refuse(True)
    service.connect(wait=False)
    try:
        states.wait_state(ConnectionState.RECONNECTING, count=3)
        proxy.refuse(False)
        states.wait_state(ConnectionState.CONNECTED)
        assert service.get_connection_health().reconnect_attempts >= 1  # the failures of this outage
        service.update_config(max_queue_size=500)
        proxy.reset_peer()  # a stable connection drops: a new outage, retry index 0
        states.wait_state(ConnectionState.CONNECTED, count=2)
        assert service.get_connection_health().reconnect_attempts == 0
    finally:
        service.disconnect()


def test_update_config_keeps_an_open_breaker_open(server: Backend, proxy: FaultProxy) -> None:
    states = StateRecorder()
    service = via_proxy(server, proxy, circuit_breaker_threshold=2, circuit_breaker_reset_ms=60000)
    service.on_connection_state_change(states)
    proxy.refuse(True)
    service.connect(wait=False)
    try:
        states.wait_for(lambda xs: any(isinstance(e, CircuitOpenError) for _, e in xs), 10, "the breaker open")
        assert service.get_connection_health().circuit_state is CircuitState.OPEN
        service.update_config(max_queue_size=500, reconnect_interval_ms=30)
        assert service.get_connection_health().circuit_state is CircuitState.OPEN
        opened = [e for _, e in states.items if isinstance(e, CircuitOpenError)]
        assert opened[-1].failures >= 2
    finally:
        service.disconnect()


def test_update_config_keeps_rtt_history_and_queue_counters(server: Backend) -> None:
    service = direct(server, heartbeat_interval_ms=100, heartbeat_timeout_ms=100, max_queue_size=2)
    for i in range(3):
        service.send_message({"type": "node_log", "data": {"n": i}})
    assert service.get_connection_health().queue_dropped == 1
    service.update_config(max_queue_size=10)  # the queue is rebuilt: its counters stay
    assert service.get_connection_health().queue_dropped == 1
    assert service.get_connection_health().queue_size == 2
    with service:
        server.wait_until(lambda: service.get_connection_health().latency_ms is not None, 10, "a pong")
        before = service.get_connection_health()
        service.update_config(max_queue_size=20)
        service.update_config(heartbeat_interval_ms=150, heartbeat_timeout_ms=100)
        after = service.get_connection_health()
    assert before.latency_ms is not None and after.latency_ms is not None
    assert service.config.heartbeat_interval_ms == 150


def test_update_config_heartbeat_applies_at_once(server: Backend, proxy: FaultProxy) -> None:
    states = StateRecorder()
    service = via_proxy(server, proxy, heartbeat_interval_ms=60000, heartbeat_timeout_ms=60000)
    service.on_connection_state_change(states)
    with service:
        service.update_config(heartbeat_interval_ms=200, heartbeat_timeout_ms=200)
        proxy.blackhole(True)
        items = states.wait_state(ConnectionState.RECONNECTING, timeout=10)
        proxy.blackhole(False)
    error = next(e for s, e in items if s is ConnectionState.RECONNECTING)
    assert isinstance(error, MagkTimeoutError)


# ---------------------------------------------------------------------------------------------
# finding 10: log_level and enable_debug_logging


def service_records(caplog: pytest.LogCaptureFixture, service: RealtimeService) -> List[logging.LogRecord]:
    name = f"magk_client.service.{service.number}"
    return [r for r in caplog.records if r.name == name]


def test_log_level_sets_the_level_of_the_service_logger(server: Backend, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    quiet = direct(server, log_level="warning")
    chatty = direct(server, log_level="debug")
    logger = logging.getLogger(f"magk_client.service.{quiet.number}")
    assert logger.level == logging.WARNING and logger.handlers == []
    assert logging.getLogger(f"magk_client.service.{chatty.number}").level == logging.DEBUG
    for service in (quiet, chatty):
        states = StateRecorder()
        service.on_connection_state_change(states)
        with service:
            server.drop_connections()
            states.wait_state(ConnectionState.CONNECTED, count=2)
    assert not [r for r in service_records(caplog, quiet) if r.levelno < logging.WARNING]
    texts = [r.getMessage() for r in service_records(caplog, chatty)]
    assert any(t.startswith("reconnecting in") for t in texts)  # DEBUG
    assert any("NetworkError" in t for t in texts)  # INFO
    chatty.update_config(log_level="error")
    assert logging.getLogger(f"magk_client.service.{chatty.number}").level == logging.ERROR


def test_the_application_logging_configuration_still_applies(server: Backend, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    package = logging.getLogger("magk_client")
    package.setLevel(logging.ERROR)  # the usual way to quiet a library
    try:
        service = direct(server, log_level="debug", enable_debug_logging=True)
        states = StateRecorder()
        service.on_connection_state_change(states)
        with service:
            service.send_message({"type": "node_log", "data": {}})
            server.drop_connections()  # an INFO line and DEBUG lines, all below ERROR
            states.wait_state(ConnectionState.CONNECTED, count=2)
    finally:
        package.setLevel(logging.NOTSET)
    assert service_records(caplog, service) == []


def test_enable_debug_logging_logs_message_summaries_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    token = "tok-SECRET-debug-77"
    caplog.set_level(logging.DEBUG)
    with Backend(token=token) as server:
        plain = direct(server, auth_token=token, log_level="debug")
        traced = direct(server, auth_token=token, enable_debug_logging=True)
        for n, service in enumerate((plain, traced)):
            got: Recorder[RealtimeMessage] = Recorder()
            service.subscribe("node_log", got)
            with service:
                service.send_message({"type": "node_log", "id": f"out-{service.number}", "data": {"t": token}})
                server.publish({"type": "node_log", "data": {"secret": token, "n": n}})
                got.wait_for(lambda xs, n=n: any(m.data.get("n") == n for m in xs), 10, "the published event")
    plain_texts = [r.getMessage() for r in service_records(caplog, plain)]
    traced_records = service_records(caplog, traced)
    traced_texts = [r.getMessage() for r in traced_records]
    assert not [t for t in plain_texts if t.startswith(("->", "<-"))]  # not without enable_debug_logging
    sent = [t for t in traced_texts if t.startswith("->") and f"out-{traced.number}" in t]
    received = [t for t in traced_texts if t.startswith("<-") and "node_log" in t]
    assert sent and received
    assert all(r.levelno == logging.DEBUG for r in traced_records if r.getMessage().startswith(("->", "<-")))
    assert token not in caplog.text
    assert logging.getLogger(f"magk_client.service.{traced.number}").level == logging.DEBUG


# ---------------------------------------------------------------------------------------------
# finding 11: health times are wall-clock


def test_last_heartbeat_at_is_wall_clock(server: Backend) -> None:
    service = direct(server, heartbeat_interval_ms=100, heartbeat_timeout_ms=100)
    with service:
        before = time.time()
        server.wait_until(lambda: (service.get_connection_health().last_heartbeat_at or 0) >= before, 10, "a pong")
        health = service.get_connection_health()
    assert health.last_heartbeat_at is not None and health.connected_since is not None
    assert health.connected_since <= health.last_heartbeat_at <= time.time()


# ---------------------------------------------------------------------------------------------
# finding 12: outbound envelopes carry an id and a timestamp


def test_outbound_messages_get_an_id_and_timestamp_unless_given(server: Backend) -> None:
    service = direct(server)
    with service:
        service.send_message({"type": "node_log", "data": {"k": "dict"}})
        service.send_message(RealtimeMessage(type="node_log", data={"k": "model"}))
        service.send_message({"type": "node_log", "id": "mine-1", "timestamp": "2020-01-01T00:00:00.000Z",
                              "data": {"k": "own"}})
        server.wait_for_received(lambda m: m.message.get("data", {}).get("k") == "own")  # sent last, in order
    received = server.received_messages
    by_kind = {m.message["data"]["k"]: m.message for m in received if m.message.get("type") == "node_log"}
    for kind in ("dict", "model"):
        assert ID_RE.match(by_kind[kind]["id"]), by_kind[kind]
        assert TIMESTAMP_RE.match(by_kind[kind]["timestamp"]), by_kind[kind]
    assert by_kind["dict"]["id"] != by_kind["model"]["id"]
    assert by_kind["own"]["id"] == "mine-1" and by_kind["own"]["timestamp"] == "2020-01-01T00:00:00.000Z"


def test_queued_message_keeps_the_id_it_got_when_sent(server: Backend) -> None:
    service = direct(server)
    service.send_message({"type": "node_log", "data": {"k": "queued"}})
    with service:
        first = server.wait_for_received(1)[0].message
    assert ID_RE.match(first["id"])


# ---------------------------------------------------------------------------------------------
# finding 13: the original services' defaults


def test_defaults_match_the_typescript_services() -> None:
    cfg = RealtimeConnectionConfig()
    assert cfg.reconnect_backoff_multiplier == 1.5
    assert cfg.message_timeout_ms == 5000
    assert RealtimeAdapterConfig().health_check_interval_ms == 60000
    ceilings = [Backoff.from_config(cfg).ceiling(k) * 1000 for k in range(11)]
    assert ceilings[:4] == [1000, 1500, 2250, 3375]
    assert ceilings[-1] == 30000 and max(ceilings) == 30000


# ---------------------------------------------------------------------------------------------
# finding 14: one URL means that transport


def test_sse_only_config_connects_over_sse(server: Backend) -> None:
    service = build_service(dict(FAST, websocket_url=None, event_source_url=server.event_source_url), {})
    assert service.config.preferred_type is ConnectionType.EVENTSOURCE
    with service:
        assert service.connection_type is ConnectionType.EVENTSOURCE
        server.wait_for_connections(1, transport="sse")


def test_websocket_only_config_connects_over_websocket(server: Backend) -> None:
    service = build_service(
        dict(FAST, websocket_url=server.websocket_url, event_source_url=None, preferred_type="eventsource"), {}
    )
    with service:
        assert service.connection_type is ConnectionType.WEBSOCKET
        server.wait_for_connections(1, transport="websocket")


# ---------------------------------------------------------------------------------------------
# finding 16: a read larger than max_dispatch_queue drops only the excess


def test_burst_larger_than_dispatch_bound_drops_only_the_excess(raw_servers: Callable[..., RawServer]) -> None:
    bound, burst = 200, 5000
    body = b"".join(
        b"id: e-%d\ndata: %s\n\n" % (i, json.dumps({"id": f"e-{i}", "type": "node_log", "data": {"i": i}}).encode())
        for i in range(burst)
    )
    raw = raw_servers([sse([body], finish="hold")])  # the whole burst in one write
    record: Recorder[Any] = Recorder()  # messages and errors, in dispatch order
    service = build_service(
        dict(FAST, websocket_url=None, event_source_url=raw.url(), preferred_type="eventsource",
             max_dispatch_queue=bound, enable_heartbeat=False),
        {},
    )
    service.subscribe("node_log", record)
    service.on_error(record)

    def accounted(items: List[Any]) -> bool:
        delivered = sum(1 for x in items if isinstance(x, RealtimeMessage))
        dropped = sum(int(m.group(1)) for x in items if (m := re.search(r"dropped (\d+) message", str(x))))
        return delivered + dropped >= burst

    with service:
        items = record.wait_for(accounted, 20, "every event delivered or dropped")
        health = service.get_connection_health()
    delivered = [x.data["i"] for x in items if isinstance(x, RealtimeMessage)]
    assert len(delivered) >= bound  # before: every read over the bound was dropped whole
    assert delivered[:bound] == list(range(bound))  # the head of the read, in order
    assert delivered == sorted(delivered)
    assert health.dispatch_dropped == burst - len(delivered)
    assert health.messages_received == burst
