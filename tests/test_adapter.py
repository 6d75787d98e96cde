"""RealtimeAdapter against the reference backend on 127.0.0.1, over the WebSocket and over SSE
(commands then go as POST /commands): every command's effect on the event stream, the route it
took, failures with the server's text, concurrency, subscriptions, config fields, helpers."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from typing import Any, Iterator, List

import pytest
from adapter_helpers import TRANSPORTS, adapter_threads, eventually, make_adapter, route_of

from magk_client import (
    AuthError,
    CommandError,
    CommandResponse,
    ConfigError,
    MagkError,
    MessageType,
    NodeEvent,
    NotConnectedError,
    RealtimeAdapter,
    RealtimeMessage,
    RealtimeService,
    WorkflowController,
    WorkflowEvent,
    create_realtime_adapter,
    create_realtime_service,
    subscribe_to_node,
    subscribe_to_workflow,
)
from magk_client.testing import Backend
from magk_client.testing.recorder import Recorder

pytestmark = [pytest.mark.timeout(60), pytest.mark.magk_backend(pace=0.01, workflows={"wf-1": ["n-1", "n-2", "n-3"], "wf-2": ["a"]})]


@pytest.fixture(autouse=True)
def no_thread_left() -> Iterator[None]:
    yield
    eventually(lambda: adapter_threads() == [], 10.0, "adapter threads to end")


def types(events: List[WorkflowEvent]) -> List[str]:
    return [e.type for e in events]


def has(kind: str, **data: Any) -> Any:
    def check(events: List[WorkflowEvent]) -> bool:
        return any(e.type == kind and all(e.data.get(k) == v for k, v in data.items()) for e in events)

    return check


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_command_shows_on_the_event_stream_and_takes_the_transports_route(
    magk_backend: Backend, transport: str
) -> None:
    route = "ws" if transport == "websocket" else "commands"  # SSE: POST /commands, not POST /messages
    events: Recorder[WorkflowEvent] = Recorder()
    raw: Recorder[RealtimeMessage] = Recorder()
    with make_adapter(magk_backend.base_url, transport) as adapter:
        adapter.subscribe_to_workflow("wf-1", events)
        adapter.service.subscribe("workflow_event", raw)
        answers: List[CommandResponse] = []

        def run(response: CommandResponse, command: str) -> CommandResponse:
            assert response.success and response.command == command
            assert route_of(magk_backend, response.request_id) == route
            assert magk_backend.command_counts[response.request_id] == 1 and magk_backend.executions(response.request_id) == 1
            answers.append(response)
            return response

        update = run(adapter.update_config("wf-1", {"progressSteps": 20}), "update_config")
        assert update.data is not None and update.data["config"] == {"progressSteps": 20}
        events.wait_for(has("config_updated", config={"progressSteps": 20}), 10)

        started = run(adapter.start_workflow("wf-1", {"tag": "x"}), "start_workflow")
        assert started.data == {"workflowId": "wf-1", "state": "running"}
        events.wait_for(lambda items: "node_started" in types(items), 10)  # n-1 running: pausing pauses it
        run(adapter.skip_node("wf-1", "n-3"), "skip_node")

        paused = run(adapter.pause_workflow("wf-1"), "pause_workflow")
        assert paused.data is not None and paused.data["state"] == "paused"
        events.wait_for(has("workflow_paused"), 10)
        events.wait_for(lambda items: any(e.type == "paused" and e.status == "paused" for e in items), 10)

        run(adapter.resume_workflow("wf-1"), "resume_workflow")
        events.wait_for(has("workflow_resumed"), 10)
        done = events.wait_for(has("workflow_completed"), 30)
        assert any(e.type == "node_completed" and e.node_id == "n-3" and e.data.get("skipped") for e in done)
        assert any(e.type == "node_completed" and e.result is not None for e in done)  # node_result
        assert "node_started" in types(done) and "node_progress" in types(done)

        events.clear()
        run(adapter.restart_node("wf-1", "n-2"), "restart_node")
        events.wait_for(lambda items: any(e.type == "pending" and e.node_id == "n-2" and e.data.get("restarted")
                                          for e in items), 10)
        events.wait_for(has("workflow_completed"), 30)

        run(adapter.start_workflow("wf-1"), "start_workflow")
        stopped = run(adapter.stop_workflow("wf-1"), "stop_workflow")
        assert stopped.data is not None and stopped.data["state"] == "stopped"
        events.wait_for(has("workflow_stopped"), 10)
        assert magk_backend.workflow_state("wf-1") == "stopped"

        # answers are answers: no subscriber ever saw one as an event
        assert not [m for m in raw.items if m.data.get("type") == "command_response"]
        assert len({a.request_id for a in answers}) == len(answers) == 8
        status = adapter.get_status()
        assert status.pending_commands == 0 and status.commands.answered == 8
        assert status.commands.dropped_answers == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_success_false_raises_command_error_with_the_servers_text(magk_backend: Backend, transport: str) -> None:
    with make_adapter(magk_backend.base_url, transport) as adapter:
        with pytest.raises(CommandError) as info:
            adapter.pause_workflow("wf-2")
        err = info.value
        assert err.server_error == "cannot pause workflow 'wf-2': it is idle, not running"
        assert err.server_error in str(err)
        assert err.response is not None and err.response.success is False
        assert err.request_id == err.response.request_id and magk_backend.command_counts[err.request_id] == 1
        with pytest.raises(CommandError, match="unknown workflow 'nope'"):
            adapter.start_workflow("nope")
        with pytest.raises(CommandError, match="unknown node 'zz'"):
            adapter.restart_node("wf-2", "zz")
        fut = adapter.submit_workflow_command("launch_rockets", "wf-2")
        with pytest.raises(CommandError, match="unknown command 'launch_rockets'"):
            fut.result(10)
        assert adapter.get_status().pending_commands == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fifty_commands_from_ten_threads_each_get_their_own_answer(magk_backend: Backend, transport: str) -> None:
    with make_adapter(magk_backend.base_url, transport) as adapter:
        barrier = threading.Barrier(10)
        results: List[tuple] = []
        lock = threading.Lock()

        def worker(t: int) -> None:
            barrier.wait()
            for k in range(5):
                tag = t * 5 + k
                response = adapter.update_config("wf-1", {"tag": tag})
                with lock:
                    results.append((tag, response))

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(10)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        assert len(results) == 50
        for tag, response in results:
            assert response.data is not None and response.data["config"]["tag"] == tag
        assert len({r.request_id for _, r in results}) == 50
        assert all(magk_backend.command_counts[r.request_id] == 1 for _, r in results)
        assert adapter.get_status().commands.answered == 50 and adapter.get_status().pending_commands == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_submit_forms_return_futures_and_complete_off_the_reader(magk_backend: Backend, transport: str) -> None:
    with make_adapter(magk_backend.base_url, transport) as adapter:
        completing: List[str] = []
        fut = adapter.submit_update_config("wf-2", {"a": 1})
        fut.add_done_callback(lambda f: completing.append(threading.current_thread().name))
        assert isinstance(fut, concurrent.futures.Future)
        assert fut.result(10).success
        eventually(lambda: bool(completing), 5, "the done-callback")
        assert not any(name.startswith("magk-reader") for name in completing)
        futures = [adapter.submit_start_workflow("wf-2"), adapter.submit_pause_workflow("wf-2"),
                   adapter.submit_resume_workflow("wf-2"), adapter.submit_skip_node("wf-2", "a")]
        for f in futures:
            f.exception(10)
        assert futures[0].result().success
        stop = adapter.submit_stop_workflow("wf-2")
        restart = adapter.submit_restart_node("wf-2", "a")
        for f in (stop, restart):
            f.exception(10)
        assert restart.result().success


def test_node_subscribers_get_node_events_with_their_payloads(magk_backend: Backend) -> None:
    nodes: Recorder[NodeEvent] = Recorder()
    with make_adapter(magk_backend.base_url) as adapter:
        sub = adapter.subscribe_to_node("n-2", "wf-1", nodes)
        adapter.start_workflow("wf-1")
        got = nodes.wait_for(lambda items: any(e.status == "completed" for e in items), 20)
        kinds = {e.type for e in got}
        assert kinds == {"node_status_update", "node_progress_update", "node_log", "node_metadata", "node_result"}
        assert all(e.node_id == "n-2" and e.workflow_id == "wf-1" for e in got)
        assert next(e for e in got if e.type == "node_result").result is not None
        assert next(e for e in got if e.type == "node_metadata").metadata is not None
        logs = next(e for e in got if e.type == "node_log").logs
        assert logs and "message" in logs[0]
        assert next(e for e in got if e.type == "node_progress_update").progress is not None
        assert sub in adapter.get_status().subscriptions
        assert adapter.unsubscribe(sub) and sub not in adapter.get_status().subscriptions


def test_a_blocking_command_is_refused_in_a_callback_and_submit_works_there(magk_backend: Backend) -> None:
    outcome: Recorder[Any] = Recorder()
    with make_adapter(magk_backend.base_url) as adapter:

        def on_event(event: WorkflowEvent) -> None:
            if event.type != "workflow_started":
                return
            try:
                adapter.pause_workflow("wf-1")
            except MagkError as exc:
                outcome(exc)
            outcome(adapter.submit_pause_workflow("wf-1"))

        adapter.subscribe_to_workflow("wf-1", on_event)
        adapter.start_workflow("wf-1")
        refused, fut = outcome.wait_count(2, 10)
        assert "submit_pause_workflow" in str(refused)
        assert fut.result(10).success


def test_commands_need_a_connection_and_valid_arguments(magk_backend: Backend) -> None:
    adapter = make_adapter(magk_backend.base_url)
    with pytest.raises(NotConnectedError):
        adapter.start_workflow("wf-1")
    with adapter:
        for bad in (lambda: adapter.start_workflow(""), lambda: adapter.restart_node("wf-1", None),  # type: ignore[arg-type]
                    lambda: adapter.update_config("wf-1", [1]),  # type: ignore[arg-type]
                    lambda: adapter.start_workflow("wf-1", timeout=0)):
            with pytest.raises(ConfigError):
                bad()
    with pytest.raises(MagkError):
        adapter.connect()  # closed by the with block


def test_with_the_pipeline_off_commands_are_refused_and_answers_stay_plain_messages(magk_backend: Backend) -> None:
    raw: Recorder[RealtimeMessage] = Recorder()
    with make_adapter(magk_backend.base_url, enable_command_pipeline=False) as adapter:
        with pytest.raises(CommandError, match="enable_command_pipeline"):
            adapter.start_workflow("wf-1")
        adapter.service.subscribe("workflow_event", raw)
        adapter.service.send_message({"id": "r-1", "type": "workflow_event", "workflowId": "wf-2",
                                      "data": {"type": "command", "command": {"command": "start_workflow",
                                                                              "workflowId": "wf-2", "requestId": "r-1"}}})
        raw.wait_for(lambda items: any(m.data.get("type") == "command_response" for m in items), 10)
    assert magk_backend.command_counts == {"r-1": 1}


@pytest.mark.parametrize("enabled", [True, False])
def test_log_messages_logs_messages_and_commands_at_log_level(
    magk_backend: Backend, enabled: bool, caplog: pytest.LogCaptureFixture
) -> None:
    token_server = magk_backend
    caplog.set_level(logging.DEBUG, logger="magk_client")
    with make_adapter(token_server.base_url, log_messages=enabled, log_level="warn", auth_token="tok-secret-1") as adapter:
        adapter.start_workflow("wf-2")
    records = [r for r in caplog.records if r.name == "magk_client.adapter"]
    if not enabled:
        assert records == []
        return
    lines = [r.getMessage() for r in records]
    assert all(r.levelno == logging.WARNING for r in records)
    assert any(line.startswith("message workflow_event") for line in lines)
    assert any("start_workflow wf-2" in line and "sent over websocket" in line for line in lines)
    assert any("success=True" in line for line in lines)
    assert not any("tok-secret-1" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("enabled", [True, False])
def test_enable_message_transformation_gates_the_adapters_transformers(magk_backend: Backend, enabled: bool) -> None:
    events: Recorder[WorkflowEvent] = Recorder()
    magk_backend.sse_script(
        [b'event: custom_done\ndata: {"data": {"workflowId": "wf-2"}}\n\n',
         b'id: e-99\ndata: {"id": "e-99", "type": "workflow_event", "workflowId": "wf-2", '
         b'"data": {"type": "marker"}}\n\n'],
        hold_open=True,
    )
    adapter = make_adapter(magk_backend.base_url, "eventsource", enable_message_transformation=enabled)
    adapter.register_message_transformer(
        "custom_done",
        lambda msg: {"id": "c-1", "type": "workflow_event", "workflowId": msg["data"]["workflowId"],
                     "data": {"type": "workflow_completed"}},
    )
    adapter.register_response_transformer("start_workflow", lambda r: CommandResponse(
        r.request_id, r.command, r.success, r.error, {**(r.data or {}), "seen": True}))
    adapter.subscribe_to_workflow("wf-2", events)
    with adapter:
        got = events.wait_for(lambda items: any(e.type == "marker" for e in items), 10)
        assert ("workflow_completed" in types(got)) is enabled
        assert (adapter.service.get_connection_health().invalid_messages == 1) is not enabled
    magk_backend.reset_faults()
    with make_adapter(magk_backend.base_url, enable_message_transformation=enabled) as plain:
        plain.register_response_transformer("start_workflow", lambda r: CommandResponse(
            r.request_id, r.command, r.success, r.error, {**(r.data or {}), "seen": True}))
        response = plain.start_workflow("wf-2")
        assert (response.data or {}).get("seen", False) is enabled


def test_workflow_controller_drives_one_workflow(magk_backend: Backend) -> None:
    events: Recorder[WorkflowEvent] = Recorder()
    nodes: Recorder[NodeEvent] = Recorder()
    with create_realtime_adapter(backend_base_url=magk_backend.base_url, enable_health_check=False,
                                 connection_config={"fallback_to_secondary": False}) as adapter:
        assert isinstance(adapter, RealtimeAdapter)
        controller = WorkflowController(adapter, "wf-1")
        controller.subscribe(events)
        controller.subscribe_to_node("n-1", nodes)
        assert controller.update_config({"progressSteps": 20}).success
        assert controller.start().data == {"workflowId": "wf-1", "state": "running"}
        assert controller.pause().data["state"] == "paused"  # type: ignore[index]
        assert controller.resume().data["state"] == "running"  # type: ignore[index]
        assert controller.skip_node("n-3").success
        assert controller.restart_node("n-1").success
        assert controller.submit("pause_workflow").result(10).success
        assert controller.stop().data["state"] == "stopped"  # type: ignore[index]
        events.wait_for(has("workflow_stopped"), 10)
        assert nodes.wait_for(lambda items: any(e.status == "pending" and e.data.get("restarted") for e in items), 10)
        controller.unsubscribe_all()
        assert adapter.get_status().subscriptions == ()


def test_the_seed_helpers_subscribe_a_service_with_the_seed_type_lists(magk_backend: Backend) -> None:
    workflow: Recorder[RealtimeMessage] = Recorder()
    node: Recorder[RealtimeMessage] = Recorder()
    service = create_realtime_service(websocket_url=magk_backend.websocket_url, event_source_url=magk_backend.event_source_url)
    assert isinstance(service, RealtimeService)
    subscribe_to_workflow(service, "wf-2", workflow)
    subscribe_to_node(service, "a", node)
    with service:
        service.send_message({"id": "r-9", "type": "workflow_event", "workflowId": "wf-2",
                              "data": {"type": "command", "command": {"command": "start_workflow",
                                                                      "workflowId": "wf-2", "requestId": "r-9"}}})
        got = workflow.wait_for(lambda items: any(m.data.get("type") == "workflow_completed" for m in items), 10)
        node_got = node.wait_for(lambda items: any(m.data.get("status") == "completed" for m in items), 10)
    assert not [m for m in got if m.data.get("type") in ("command", "command_response")]
    assert {m.type for m in got} <= {MessageType.NODE_STATUS_UPDATE, MessageType.NODE_PROGRESS_UPDATE,
                                     MessageType.NODE_ERROR, MessageType.NODE_RESULT, MessageType.WORKFLOW_EVENT}
    assert {MessageType.NODE_LOG, MessageType.NODE_METADATA} <= {m.type for m in node_got}
    assert all(m.node_id == "a" for m in node_got)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_credentials_go_on_both_transports_and_every_request(transport: str) -> None:
    with Backend(token="tok-abcdef", api_key="key-123456") as server:
        with make_adapter(server.base_url, transport, auth_token="tok-abcdef", api_key="key-123456",
                          enable_health_check=True, health_check_interval_ms=60000) as adapter:
            response = adapter.start_workflow("wf-1")
            assert response.success
            assert adapter.get_backend_health().status == "healthy"
            log = server.connections_log
            assert log and all(e["authorization"] == "Bearer tok-abcdef" and e["headers"]["X-API-Key"] == "key-123456"
                               for e in log)
            assert server.counters.get("auth_failures", 0) == 0
            assert "tok-abcdef" not in repr(adapter) and "tok-abcdef" not in repr(adapter.config)
        refused = make_adapter(server.base_url, transport)
        with pytest.raises(AuthError):
            refused.connect(10)
        with pytest.raises(NotConnectedError):
            refused.start_workflow("wf-1")
        with pytest.raises(AuthError):
            refused.get_backend_health()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_disconnect_from_a_callback_with_a_command_pending(magk_backend: Backend, transport: str) -> None:
    returned = threading.Event()
    with make_adapter(magk_backend.base_url, transport) as adapter:
        pending: List[concurrent.futures.Future[CommandResponse]] = []

        def on_event(event: WorkflowEvent) -> None:
            if event.type == "workflow_started":
                magk_backend.go_silent(True)
                pending.append(adapter.submit_update_config("wf-1", {"late": True}))
                adapter.disconnect()
                returned.set()

        adapter.subscribe_to_workflow("wf-1", on_event)
        try:
            started = adapter.submit_start_workflow("wf-1")
            assert returned.wait(10)
            with pytest.raises(CommandError, match="disconnected"):
                pending[0].result(5)
            assert started.done()  # answered, or failed by the disconnect: never left waiting
        finally:
            magk_backend.go_silent(False)
    eventually(lambda: adapter_threads() == [], 10, "adapter threads to end")
