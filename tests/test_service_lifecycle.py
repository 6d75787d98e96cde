"""The service's life cycle and supervisor under hostile timing (issue 8's findings), end to end.

Real sockets on 127.0.0.1: the reference ``Backend`` and, where a handshake must hang, a ``FaultProxy``
in front of it. Waits are on recorders, ``Backend.wait_until``, ``FaultProxy.wait_until``, thread joins and
a short polling loop over health counters; the only timed waits are bounded "this does not happen" checks.

==========================================================  ==============================================
finding                                                     shown by
==========================================================  ==============================================
1  a huge ``Retry-After`` killed the supervisor             test_huge_retry_after_is_capped_*,
                                                            test_default_cap_*, test_wait_above_timeout_max_*,
                                                            test_unexpected_supervisor_failure_*
2  the breaker stayed half-open after an interrupted probe  test_interrupted_probe_does_not_wedge_the_breaker
3  a blocked ``connect()`` was never released               test_blocked_connect_is_released_by_*
5  ``disconnect()`` with a backlog                          test_disconnect_with_a_backlog_*
6  a dropped service in a cycle outlived ``gc.collect()``   test_dropped_service_in_a_cycle_is_collected_at_once
8  ``connecting`` was never reported                        test_every_transition_reaches_listeners_in_order
==========================================================  ==============================================
"""

from __future__ import annotations

import gc
import logging
import re
import threading
import time
import weakref
from typing import Any, Callable, Iterator, List

import pytest
from adapter_helpers import eventually
from service_helpers import FAST, build_service, sdk_threads, wait_threads_gone

from magk_client import (
    ConnectCancelledError,
    ConnectionState,
    MagkError,
    MagkTimeoutError,
    RealtimeMessage,
    RealtimeService,
    ServerError,
)
from magk_client.testing import Backend
from magk_client.testing.proxy import FaultProxy
from magk_client.testing.recorder import Recorder, StateRecorder

pytest_plugins = ["service_helpers"]  # its fixtures: server, proxy, and the autouse thread check

HUGE_SECONDS = "99999999999"  # ~3,170 years: above threading.TIMEOUT_MAX (~292 years)
HUGE_DATE = "Fri, 31 Dec 9999 23:59:59 GMT"


def make_ws(url: str, **overrides: Any) -> RealtimeService:
    return build_service(dict(FAST, websocket_url=url, event_source_url=None), overrides)


def make_sse(url: str, **overrides: Any) -> RealtimeService:
    return build_service(
        dict(FAST, websocket_url=None, event_source_url=url, preferred_type="eventsource"), overrides
    )


def attempts(server: Backend, transport: str) -> int:
    return server.counters.get("ws_attempts" if transport == "websocket" else "sse_attempts", 0)


def poll(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until ``predicate()`` holds, re-checking every 10 ms (for health counters, which notify nobody)."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        tick.wait(0.01)


class LogLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: Recorder[str] = Recorder()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines(record.getMessage())


@pytest.fixture()
def service_log() -> Iterator[LogLines]:
    service_logger = logging.getLogger("magk_client.service")
    handler, level = LogLines(), service_logger.level
    service_logger.addHandler(handler)
    service_logger.setLevel(logging.DEBUG)
    yield handler
    service_logger.removeHandler(handler)
    service_logger.setLevel(level)


def supervisor_of(service: RealtimeService) -> threading.Thread:
    number = repr(service).split("#", 1)[1].split(" ", 1)[0]
    found = [t for t in threading.enumerate() if t.name == f"magk-supervisor-{number}"]
    assert len(found) == 1, sdk_threads()
    return found[0]


# ---------------------------------------------------------------------------------------------
# 1: a wait the server asks for is capped; the supervisor never dies


@pytest.mark.parametrize("transport", ["websocket", "sse"])
@pytest.mark.parametrize("retry_after", [HUGE_SECONDS, HUGE_DATE], ids=["seconds", "http-date"])
def test_huge_retry_after_is_capped_and_retried(
    server: Backend, service_log: LogLines, transport: str, retry_after: str
) -> None:
    refuse = server.refuse_websocket if transport == "websocket" else server.refuse_sse
    refuse(503, retry_after=retry_after)
    make = make_ws if transport == "websocket" else make_sse
    url = server.websocket_url if transport == "websocket" else server.event_source_url
    states = StateRecorder()
    service = make(url, max_retry_after_ms=200)
    service.on_connection_state_change(states)
    service.connect(wait=False)  # nobody waits: the retry loop alone must carry on
    try:
        server.wait_until(lambda: attempts(server, transport) >= 2, 10, "a retry after the capped wait")
        refuse(None)
        states.wait_state(ConnectionState.CONNECTED, timeout=10)
    finally:
        service.disconnect()
    error = next(e for s, e in states.items if s is ConnectionState.RECONNECTING)
    assert isinstance(error, ServerError) and error.status == 503
    assert ConnectionState.ERROR not in states.states()
    assert any("Retry-After" in line and "capped" in line for line in service_log.lines.items)


def test_huge_sse_retry_field_is_capped() -> None:
    # ``retry: 100000000000`` (ms, ~3 years) on the stream, then a drop: the reconnect comes after the cap
    with Backend(sse_retry_ms=10**11) as server:
        states = StateRecorder()
        service = make_sse(server.event_source_url, max_retry_after_ms=200)
        service.on_connection_state_change(states)
        try:
            service.connect(timeout=10)
            server.wait_for_connections(1, transport="sse")
            server.drop_connections()
            states.wait_state(ConnectionState.CONNECTED, count=2, timeout=10)
        finally:
            service.disconnect()
        assert server.sse_connects >= 2  # reconnected after the cap, not after ~3 years


def test_max_retry_after_ms_is_a_validated_config_field() -> None:
    from magk_client import ConfigError, RealtimeConnectionConfig

    assert RealtimeConnectionConfig().max_retry_after_ms == 300000
    assert RealtimeConnectionConfig.from_dict({"maxRetryAfterMs": 1500}).max_retry_after_ms == 1500
    for bad in (0, -1, float("nan"), "5", True):
        with pytest.raises(ConfigError, match="max_retry_after_ms"):
            RealtimeConnectionConfig(max_retry_after_ms=bad)


def test_default_cap_keeps_the_supervisor_waiting_not_dead(server: Backend, service_log: LogLines) -> None:
    server.refuse_websocket(503, retry_after=HUGE_DATE)
    states = StateRecorder()
    service = make_ws(server.websocket_url, log_level="debug")  # the planned delay is a DEBUG line
    service.on_connection_state_change(states)
    service.connect(wait=False)
    try:
        states.wait_state(ConnectionState.RECONNECTING, timeout=10)
        pattern = re.compile(r"reconnecting in ([\d.]+) s")
        lines = service_log.lines.wait_for(lambda xs: any(pattern.match(x) for x in xs), 5, "the planned delay")
        delays = [float(m.group(1)) for x in lines if (m := pattern.match(x))]
        assert delays == [300.0]  # the default cap, max_retry_after_ms=300000
        supervisor = supervisor_of(service)
        supervisor.join(0.5)  # it used to die here of OverflowError, leaving 'reconnecting' behind
        assert supervisor.is_alive()
        assert service.state is ConnectionState.RECONNECTING
        t0 = time.monotonic()
        service.disconnect()
        assert time.monotonic() - t0 < 2.0  # the long wait is interruptible
    finally:
        service.disconnect()
    assert service.state is ConnectionState.DISCONNECTED


def test_wait_above_timeout_max_is_clamped(server: Backend) -> None:
    # a cap set above threading.TIMEOUT_MAX: the wait itself is clamped, the supervisor lives
    server.refuse_websocket(503, retry_after=HUGE_SECONDS)
    states = StateRecorder()
    service = make_ws(server.websocket_url, max_retry_after_ms=1e15)
    service.on_connection_state_change(states)
    service.connect(wait=False)
    try:
        states.wait_state(ConnectionState.RECONNECTING, timeout=10)
        supervisor = supervisor_of(service)
        supervisor.join(0.5)
        assert supervisor.is_alive()
    finally:
        service.disconnect()
    assert ConnectionState.ERROR not in states.states()


class _BrokenSupervisor(RealtimeService):
    """A service whose supervisor meets an unexpected exception (a bug, simulated) on its first attempt."""

    @staticmethod
    def transport_factory(config: Any, ctype: Any) -> Any:
        raise RuntimeError("simulated bug in the supervisor")


def test_unexpected_supervisor_failure_ends_the_session_in_error(server: Backend) -> None:
    errors: Recorder[MagkError] = Recorder()
    states = StateRecorder()
    service = _BrokenSupervisor(**dict(FAST, websocket_url=server.websocket_url, event_source_url=None))
    service.on_error(errors)
    service.on_connection_state_change(states)
    with pytest.raises(MagkError) as info:
        service.connect(timeout=10)
    assert not isinstance(info.value, MagkTimeoutError)
    assert "RuntimeError" in str(info.value) and isinstance(info.value.__cause__, RuntimeError)
    assert service.state is ConnectionState.ERROR
    reported = errors.wait_count(1, 5)
    assert reported[0] is info.value
    assert states.states()[-1] is ConnectionState.ERROR
    wait_threads_gone()


# ---------------------------------------------------------------------------------------------
# 2: an interrupted half-open probe is given back


@pytest.mark.parametrize("interrupt", ["disconnect", "connect-timeout"])
def test_interrupted_probe_does_not_wedge_the_breaker(server: Backend, proxy: FaultProxy, interrupt: str) -> None:
    server.refuse_websocket(503)
    service = make_ws(
        proxy.url(server.websocket_url),
        circuit_breaker_threshold=1,
        circuit_breaker_reset_ms=100,
        connection_timeout_ms=20000,  # the probe hangs until it is interrupted
    )
    outcome: List[BaseException] = []

    def blocked_connect() -> None:
        try:
            service.connect(timeout=3.0)
        except BaseException as exc:  # examined below
            outcome.append(exc)

    waiter = threading.Thread(target=blocked_connect, name="test-connect", daemon=True)
    if interrupt == "disconnect":
        service.connect(wait=False)
    else:
        waiter.start()
    try:
        server.wait_until(lambda: attempts(server, "websocket") >= 1, 10, "the first refusal (breaker opens)")
        proxy.hang_accept(True)
        held = proxy.connections_accepted
        server.refuse_websocket(None)
        assert proxy.wait_until(lambda p: p.connections_accepted > held, 10)  # the half-open probe hangs
        if interrupt == "disconnect":
            service.disconnect()
        else:
            waiter.join(20)
            assert not waiter.is_alive() and isinstance(outcome[0], MagkTimeoutError)
        proxy.hang_accept(False)
        service.connect(timeout=10)  # used to loop on CircuitOpenError for ever
        assert service.is_connected
    finally:
        service.disconnect()


# ---------------------------------------------------------------------------------------------
# 3: disconnect()/close() release a connect() blocked in another thread


@pytest.mark.parametrize("method", ["disconnect", "close"])
def test_blocked_connect_is_released_by_disconnect_or_close(server: Backend, method: str) -> None:
    server.refuse_websocket(503)
    service = make_ws(server.websocket_url)
    outcome: List[BaseException] = []
    returned = threading.Event()

    def blocked_connect() -> None:
        try:
            service.connect()  # no timeout
        except BaseException as exc:  # examined below
            outcome.append(exc)
        returned.set()

    waiter = threading.Thread(target=blocked_connect, name="test-connect", daemon=True)
    waiter.start()
    try:
        server.wait_until(lambda: attempts(server, "websocket") >= 2, 10, "a few refused attempts")
        getattr(service, method)()
        assert returned.wait(5)
    finally:
        service.disconnect()
    waiter.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], ConnectCancelledError)
    assert f"cancelled by {method}()" in str(outcome[0])
    wait_threads_gone()


# ---------------------------------------------------------------------------------------------
# 5: disconnect() with a backlog honours its timeout; nothing is delivered afterwards


def test_disconnect_with_a_backlog_honours_its_timeout_and_discards_the_rest(server: Backend) -> None:
    sent, timeout = 5000, 1.0
    returned = threading.Event()
    started_late: List[int] = []
    calls = [0]
    first = threading.Event()
    never = threading.Event()

    def slow(message: RealtimeMessage) -> None:
        if returned.is_set():
            started_late.append(message.data["i"])
        calls[0] += 1
        first.set()
        never.wait(0.02)  # a slow consumer: 20 ms a message, 100 s for the backlog

    # a long connection timeout: disconnect() must not stretch its own timeout to it
    service = make_ws(server.websocket_url, connection_timeout_ms=10000)
    service.subscribe("node_log", slow)
    service.connect()
    server.publish_many({"type": "node_log", "workflowId": "wf-1", "data": {"i": i}} for i in range(sent))
    assert first.wait(10)
    poll(lambda: service.get_connection_health().messages_received >= sent, 20, "every event received")
    t0 = time.monotonic()
    service.disconnect(timeout=timeout)
    took = time.monotonic() - t0
    returned.set()
    delivered_at_return = calls[0]
    wait_threads_gone()
    assert took < timeout + 1.0, took  # was 4 s and more
    assert started_late == []  # no callback started after disconnect() returned
    assert calls[0] <= delivered_at_return + 1  # at most the one running at the deadline finished
    health = service.get_connection_health()
    assert health.discarded_on_close > 0
    assert health.messages_delivered + health.discarded_on_close + health.dispatch_dropped == sent + 1  # + the ack
    assert health.dispatch_queue_size == 0
    assert service.state is ConnectionState.DISCONNECTED


def test_disconnect_from_a_callback_discards_what_is_still_queued(server: Backend) -> None:
    seen: List[int] = []
    done = threading.Event()
    service = make_ws(server.websocket_url)

    def stop_at_first(message: RealtimeMessage) -> None:
        seen.append(message.data["i"])
        if len(seen) == 1:
            server.wait_until(lambda: service.get_connection_health().messages_received >= 200, 10, "a backlog")
            service.disconnect()
            done.set()

    service.subscribe("node_log", stop_at_first)
    service.connect()
    server.publish_many({"type": "node_log", "workflowId": "wf-1", "data": {"i": i}} for i in range(200))
    assert done.wait(15)
    wait_threads_gone()
    assert seen == [0]
    health = service.get_connection_health()
    assert health.discarded_on_close == 199


# ---------------------------------------------------------------------------------------------
# 6: a dropped service in a reference cycle does not outlive one collection


def test_dropped_service_in_a_cycle_is_collected_at_once(server: Backend) -> None:
    for run in range(5):  # a notebook cell re-run five times
        service = make_ws(server.websocket_url)
        service.connect()
        service.subscribe(None, lambda message, s=service: s.get_connection_health())  # a cycle
        server.wait_for_connections(1)
        ref = weakref.ref(service)
        del service
        gc.collect()  # once: a thread that held the service during it collects again when it lets go
        wait_threads_gone(10)  # no further collection by the test: the threads end of that one
        server.wait_for_disconnects(5)
        assert ref() is None, f"run {run}: the service survived"


# ---------------------------------------------------------------------------------------------
# 8: every transition reaches the listeners, in order


def test_send_right_after_connect_goes_out_directly(server: Backend) -> None:
    # connected with nothing queued offline: a send is not queued behind the supervisor's flush.
    # (Nothing unacknowledged either: the backend acknowledges, and a message the last connection
    # left unacknowledged is sent again first, so a send right after connect() would queue behind it.)
    service = make_ws(server.websocket_url)
    try:
        for i in range(5):
            service.connect()
            assert service.send_message({"type": "node_log", "data": {"i": i}}) is True
            eventually(lambda: service.get_connection_health().messages_unacknowledged == 0, 10, "the ack")
            service.disconnect()
    finally:
        service.disconnect()
    server.wait_for_received(5)


def test_every_transition_reaches_listeners_in_order(server: Backend) -> None:
    states = StateRecorder()
    service = make_ws(server.websocket_url)
    service.on_connection_state_change(states)
    service.connect()
    states.wait_count(2)
    assert states.states() == [ConnectionState.CONNECTING, ConnectionState.CONNECTED]
    server.drop_connections()
    states.wait_count(4)
    service.disconnect()
    assert states.states() == [
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTED,
        ConnectionState.RECONNECTING,
        ConnectionState.CONNECTED,
        ConnectionState.DISCONNECTED,
    ]
    service.connect()  # a second session: a fresh dispatcher, and still every transition
    service.close()
    assert states.states()[5:] == [ConnectionState.CONNECTING, ConnectionState.CONNECTED, ConnectionState.CLOSED]
    errors = dict(states.items[2:3])
    assert errors[ConnectionState.RECONNECTING] is not None

