"""The command pipeline under faults (docs/faults.rst rows 23 and 24), timeouts, disconnects and
outages, against the reference backend on 127.0.0.1 and its command-level faults (``backend.faults``)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Dict, Iterator, List

import pytest
from adapter_helpers import TRANSPORTS, adapter_threads, eventually, make_adapter, route_of
from timings import well_before

from magk_client import (
    AuthError,
    CommandError,
    CommandResponse,
    CommandTimeout,
    ConnectionState,
    RealtimeMessage,
    WorkflowEvent,
)
from magk_client.testing import Backend
from magk_client.testing.recorder import Recorder, StateRecorder

pytestmark = [pytest.mark.timeout(60), pytest.mark.magk_backend(workflows={"wf-1": ["n-1", "n-2"], "wf-2": ["a"]})]


@pytest.fixture(autouse=True)
def no_thread_left() -> Iterator[None]:
    yield
    eventually(lambda: adapter_threads() == [], 10.0, "adapter threads to end")


def answer_envelope(response: Dict[str, Any], workflow_id: str = "wf-1") -> str:
    return json.dumps({"type": "workflow_event", "workflowId": workflow_id,
                       "data": {"type": "command_response", "response": response}})


def marker(magk_backend: Backend, n: int) -> Callable[[List[WorkflowEvent]], bool]:
    """Publish a marker event; the returned predicate sees it (everything sent before it was handled)."""
    magk_backend.publish({"type": "workflow_event", "workflowId": "wf-1", "data": {"type": f"marker-{n}"}})
    return lambda items: any(e.type == f"marker-{n}" for e in items)


# --------------------------------------------------------------------------------------- timeouts


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_delayed_answer_gives_command_timeout_after_timeout_or_command_timeout_ms(
    magk_backend: Backend, transport: str
) -> None:
    with make_adapter(magk_backend.base_url, transport, command_timeout_ms=300) as adapter:
        magk_backend.faults.delay_command_answers(1.5)  # answers only: pongs and events are on time
        began = time.monotonic()
        with pytest.raises(CommandTimeout, match=r"within 0\.3 s") as info:
            adapter.start_workflow("wf-1")  # command_timeout_ms
        assert time.monotonic() - began >= 0.3
        assert isinstance(info.value, CommandError) and isinstance(info.value, TimeoutError)
        began = time.monotonic()
        with pytest.raises(CommandTimeout, match=r"within 0\.2 s"):
            adapter.update_config("wf-2", {"x": 1}, timeout=0.2)
        assert time.monotonic() - began >= 0.2
        status = adapter.get_status()
        assert status.pending_commands == 0 and status.commands.timed_out == 2
        log = magk_backend.command_log  # each ran once and was not sent again: only the answers were late
        assert [(c.command, c.workflow_id, c.executed) for c in log] == [
            ("start_workflow", "wf-1", True), ("update_config", "wf-2", True)]
        assert all(magk_backend.executions(c.request_id) == 1 for c in log)
        if transport == "websocket":  # the answers still come, late: dropped and counted (row 23)
            eventually(lambda: adapter.get_status().commands.late_answers == 2, 10, "2 late answers")
        magk_backend.faults.delay_command_answers(0)
        assert adapter.update_config("wf-1", {"after": True}).success  # the connection is fine
        assert adapter.get_status().connection.total_reconnects == 0  # nothing else was late: no reconnect


def test_a_blocking_command_timeout_names_its_request_id(magk_backend: Backend) -> None:
    with make_adapter(magk_backend.base_url, command_timeout_ms=200) as adapter:
        magk_backend.faults.delay_command_answers(1.0)
        with pytest.raises(CommandTimeout) as info:
            adapter.start_workflow("wf-1")
        rid = magk_backend.wait_for_command(lambda c: True)[0].request_id
        assert info.value.request_id == rid and rid in str(info.value)


# --------------------------------------------------------------------------------------- row 23


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_row23_unknown_duplicate_and_missing_id_answers_are_dropped_and_counted(
    magk_backend: Backend, transport: str
) -> None:
    events: Recorder[WorkflowEvent] = Recorder()
    raw: Recorder[RealtimeMessage] = Recorder()
    errors: Recorder[Any] = Recorder()
    with make_adapter(magk_backend.base_url, transport) as adapter:
        adapter.subscribe_to_workflow("wf-1", events)
        adapter.service.subscribe("workflow_event", raw)
        adapter.service.on_error(errors)
        done = adapter.start_workflow("wf-2")
        magk_backend.publish_raw(answer_envelope({"requestId": "req-unknown", "command": "start_workflow", "success": True}))
        magk_backend.publish_raw(answer_envelope({"command": "start_workflow", "success": True}))  # no requestId
        magk_backend.publish_raw(answer_envelope({"requestId": done.request_id, "command": "start_workflow",
                                            "success": True, "data": {}}))  # a second answer
        magk_backend.publish_raw(answer_envelope({"requestId": "req-bad", "success": "maybe"}))  # malformed, unknown
        events.wait_for(marker(magk_backend, 1), 10)
        stats = adapter.get_status().commands
        assert (stats.unknown_answers, stats.missing_id_answers, stats.duplicate_answers) == (2, 1, 1)
        assert stats.dropped_answers == 4 and stats.pending == 0 and adapter.get_status().pending_commands == 0
        assert not [m for m in raw.items if m.data.get("type") == "command_response"]
        assert not [e for e in events.items if e.data.get("type") == "command_response"]
        assert errors.items == [] and adapter.service.get_connection_health().callback_errors == 0
        assert adapter.update_config("wf-2", {"after": True}).success  # still usable


# --------------------------------------------------------------------------------------- row 24


def test_row24_a_command_whose_answer_is_lost_to_a_drop_is_sent_again_and_runs_once(magk_backend: Backend) -> None:
    states = StateRecorder()
    with make_adapter(magk_backend.base_url, retry_delay_ms=500) as adapter:
        adapter.service.on_connection_state_change(states)
        magk_backend.faults.drop_command_answers(1, then_drop=True)  # the command runs; its answer is lost to a drop
        fut = adapter.submit_start_workflow("wf-1")
        response = fut.result(20)
        assert response.success and response.data == {"workflowId": "wf-1", "state": "running"}
        rid = response.request_id
        log = magk_backend.wait_for_command(rid, count=2)
        assert [(c.route, c.replay) for c in log] == [("ws", False), ("ws", True)]  # sent again, answered from the store
        assert magk_backend.executions(rid) == 1 and magk_backend.counters["answers_dropped"] == 1
        assert log[0].connection_id != log[1].connection_id  # the second went on the new connection
        copies = [m for m in magk_backend.received_messages if isinstance(m.message, dict) and m.message.get("id") == rid]
        assert len(copies) == 2 and {c.transport for c in copies} == {"websocket"}
        first, second = (c.message for c in copies)
        assert first["data"] == second["data"] and first["data"]["command"]["requestId"] == rid  # the same command
        assert log[0].payload == log[1].payload
        # sent again retry_delay_ms after the first send (receipt times: allow the server's scheduling jitter)
        assert log[1].received_at - log[0].received_at >= 0.4
        assert magk_backend.command_counts[rid] == 2 and magk_backend.counters["commands_replayed"] == 1
        magk_backend.wait_for_workflow("wf-1", "completed", 10)
        started = [e for e in magk_backend.logged_events() if e.get("data", {}).get("type") == "workflow_started"]
        assert len(started) == 1  # ran once
        assert states.states()[:1] == [ConnectionState.RECONNECTING] and ConnectionState.CONNECTED in states.states()
        stats = adapter.get_status().commands
        assert (stats.answered, stats.resent, stats.pending, stats.dropped_answers) == (1, 1, 0, 0)


def test_row24_with_max_retries_zero_a_lost_answer_fails_the_command(magk_backend: Backend) -> None:
    with make_adapter(magk_backend.base_url, max_retries=0) as adapter:
        magk_backend.faults.drop_command_answers(1, then_drop=True)
        fut = adapter.submit_start_workflow("wf-1")
        with pytest.raises(CommandError, match="lost in a reconnect") as info:
            fut.result(20)
        assert not isinstance(info.value, CommandTimeout)
        rid = info.value.request_id or ""
        assert magk_backend.command_counts[rid] == 1 and magk_backend.executions(rid) == 1  # it ran; it was not sent again
        assert [c.request_id for c in magk_backend.command_log] == [rid]
        assert magk_backend.counters["answers_dropped"] == 1


def test_row24_over_http_a_post_cut_before_its_reply_is_sent_again_with_the_same_request_id(magk_backend: Backend) -> None:
    magk_backend.faults.reset_commands(1)  # the body is read, then the connection is reset: no answer
    magk_backend.faults.fail_commands(1, 503, error="busy")
    with make_adapter(magk_backend.base_url, "eventsource", retry_delay_ms=50, max_retries=3) as adapter:
        response = adapter.start_workflow("wf-1")
        assert response.success and response.data == {"workflowId": "wf-1", "state": "running"}
        log = [c for c in magk_backend.command_log if c.request_id == response.request_id]
        assert [(c.route, c.fault) for c in log] == [("commands", "reset"), ("commands", "http 503"), ("commands", None)]
        assert len(magk_backend.command_log) == 3 and all(c.payload == log[0].payload for c in log)
        assert magk_backend.executions(response.request_id) == 1
        assert adapter.get_status().commands.resent == 2


def test_over_http_a_refusal_or_a_rejection_fails_at_once_with_the_servers_text(magk_backend: Backend) -> None:
    magk_backend.faults.fail_commands(1, 403, error="invalid bearer token")
    magk_backend.faults.fail_commands(1, 400, error="'workflowId' must be a non-empty string")
    with make_adapter(magk_backend.base_url, "eventsource", max_retries=5) as adapter:
        with pytest.raises(CommandError) as info:
            adapter.start_workflow("wf-1")
        assert isinstance(info.value.__cause__, AuthError) and info.value.server_error == "invalid bearer token"
        with pytest.raises(CommandError, match="HTTP 400: 'workflowId' must be a non-empty string"):
            adapter.start_workflow("wf-1")
        log = magk_backend.command_log
        assert [c.fault for c in log] == ["http 403", "http 400"]  # neither was retried
        assert len({c.request_id for c in log}) == 2 and not any(c.executed for c in log)
        assert adapter.start_workflow("wf-1").success  # the link was fine all along


def test_over_http_retries_stop_after_max_retries(magk_backend: Backend) -> None:
    magk_backend.faults.fail_commands(10, 500)
    with make_adapter(magk_backend.base_url, "eventsource", retry_delay_ms=10, max_retries=2) as adapter:
        with pytest.raises(CommandError, match="after 3 attempt") as info:
            adapter.start_workflow("wf-1")
        rid = info.value.request_id
        assert [(c.request_id, c.fault) for c in magk_backend.command_log] == [(rid, "http 500")] * 3
        assert magk_backend.executions(rid or "") == 0


# --------------------------------------------------------------------------------------- disconnect and outages


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_disconnect_fails_every_pending_command_at_once(magk_backend: Backend, transport: str) -> None:
    adapter = make_adapter(magk_backend.base_url, transport, command_timeout_ms=30000)
    adapter.connect(10)
    magk_backend.go_silent(True)  # nothing is answered, HTTP requests wait
    try:
        futures = [adapter.submit_update_config("wf-1", {"k": i}) for i in range(5)]
        blocked: Recorder[BaseException] = Recorder()

        def blocking() -> None:
            try:
                adapter.start_workflow("wf-2")
            except BaseException as exc:
                blocked(exc)

        thread = threading.Thread(target=blocking)
        thread.start()
        eventually(lambda: adapter.get_status().pending_commands == 6, 10, "6 pending commands")
        began = time.monotonic()
        adapter.disconnect()
        assert time.monotonic() - began < well_before(30.0)  # not the 30 s command timeout
        assert all(f.done() for f in futures)
        for f in futures:
            err = f.exception()
            assert isinstance(err, CommandError) and not isinstance(err, CommandTimeout)
            assert "disconnected before the answer arrived" in str(err)
        thread.join(5)
        assert not thread.is_alive()
        assert isinstance(blocked.items[0], CommandError)
        assert adapter.get_status().pending_commands == 0 and adapter.get_status().commands.failed == 6
        assert adapter_threads() == []
        magk_backend.go_silent(False)
        adapter.connect(10)  # usable again: a new session of threads
        assert adapter.update_config("wf-1", {"again": True}).success
    finally:
        magk_backend.go_silent(False)
        adapter.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_command_made_while_offline_waits_and_goes_once_after_reconnect(magk_backend: Backend, transport: str) -> None:
    states = StateRecorder()
    refuse = magk_backend.refuse_websocket if transport == "websocket" else magk_backend.refuse_sse
    with make_adapter(magk_backend.base_url, transport) as adapter:
        adapter.service.on_connection_state_change(states)
        refuse(503)
        magk_backend.drop_connections()
        states.wait_state(ConnectionState.RECONNECTING, 10)
        fut = adapter.submit_start_workflow("wf-1")
        magk_backend.wait_until(lambda: magk_backend.counters.get("refused", 0) >= 2, 10, "refused attempts")
        assert not fut.done() and magk_backend.command_counts == {}
        refuse(None)
        response: CommandResponse = fut.result(20)
        assert response.success
        assert magk_backend.command_counts == {response.request_id: 1}
        assert route_of(magk_backend, response.request_id) == ("ws" if transport == "websocket" else "commands")
        assert magk_backend.executions(response.request_id) == 1


def test_a_service_that_gives_up_fails_pending_commands_with_its_error(magk_backend: Backend) -> None:
    with make_adapter(magk_backend.base_url, connection={"max_reconnect_attempts": 1}) as adapter:
        magk_backend.refuse_websocket(401)
        magk_backend.drop_connections()
        fut = adapter.submit_start_workflow("wf-1")
        with pytest.raises(CommandError, match="connection ended") as info:
            fut.result(20)
        assert isinstance(info.value.__cause__, AuthError)
