"""The per-command record and the command-level fault controls of the reference backend
(``command_log``, ``executions``, ``wait_for_command``, ``set_health(http_status=...)`` and
``backend.faults``), shown on raw websocket-client / requests clients."""

from __future__ import annotations

import time
from typing import Any, Callable, Dict

import pytest
import requests
import websocket
from conftest import RawSSE, RawWS, is_command_response

from magk_client.testing import Backend, CommandRecord


def envelope(command: str, request_id: str, workflow_id: str = "wf-1") -> Dict[str, Any]:
    payload = {"command": command, "workflowId": workflow_id, "requestId": request_id}
    return {"id": request_id, "type": "workflow_event", "workflowId": workflow_id,
            "data": {"type": "command", "command": payload}}


def post(backend: Backend, command: str, request_id: str, workflow_id: str = "wf-1", **kw: Any) -> requests.Response:
    return requests.post(backend.commands_url, json={"command": command, "workflowId": workflow_id,
                                                     "requestId": request_id}, timeout=kw.pop("timeout", 5), **kw)


# ------------------------------------------------------------------------------------ the command log


def test_command_log_names_route_replay_and_executions(
    backend: Backend, ws_client: Callable[..., RawWS], sse_client: Callable[..., RawSSE]
) -> None:
    ws = ws_client(backend.websocket_url)
    ws_id = ws.recv_json()["data"]["connectionId"]
    sse = sse_client(backend.event_source_url)
    sse_ack = sse.next_event()
    assert sse_ack is not None
    sse_id = sse_ack[1]["data"]["connectionId"]
    began = time.monotonic()

    assert ws.command("update_config", request_id="r-ws", data={"k": 1})["success"] is True
    assert post(backend, "pause_workflow", "r-post").json()["success"] is False  # rejected: still ran
    r = requests.post(backend.messages_url, json=envelope("update_config", "r-msg", "wf-1"),
                      headers={"X-Connection-Id": sse_id}, timeout=5)
    assert r.status_code == 200
    backend.execute_command("update_config", "wf-1", request_id="r-py")
    assert ws.command("pause_workflow", request_id="r-post")["success"] is False  # a repeat: from the store

    log = backend.command_log
    assert all(isinstance(c, CommandRecord) for c in log)
    assert [(c.request_id, c.route, c.replay, c.executed) for c in log] == [
        ("r-ws", "ws", False, True), ("r-post", "commands", False, True), ("r-msg", "messages", False, True),
        ("r-py", "python", False, True), ("r-post", "ws", True, False)]
    assert [c.command for c in log] == ["update_config", "pause_workflow", "update_config", "update_config",
                                        "pause_workflow"]
    assert {c.workflow_id for c in log} == {"wf-1"} and all(c.fault is None for c in log)
    assert [c.connection_id for c in log] == [ws_id, None, sse_id, None, ws_id]
    assert [c.success for c in log] == [True, False, True, True, False]
    assert log[0].payload == {"command": "update_config", "workflowId": "wf-1", "requestId": "r-ws", "data": {"k": 1}}
    times = [c.received_at for c in log]
    assert times == sorted(times) and times[0] >= began
    assert {rid: backend.executions(rid) for rid in ("r-ws", "r-post", "r-msg", "r-py", "nope")} == {
        "r-ws": 1, "r-post": 1, "r-msg": 1, "r-py": 1, "nope": 0}
    assert backend.command_counts["r-post"] == 2 and backend.counters["commands_replayed"] == 1

    backend.clear_records()
    assert backend.command_log == [] and backend.executions("r-ws") == 0


def test_wait_for_command_by_request_id_count_or_predicate(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ws = ws_client(backend.websocket_url)
    ws.recv_json()
    ws.send_json(envelope("start_workflow", "r-1"))
    first = backend.wait_for_command("r-1")
    assert len(first) == 1 and first[0].route == "ws" and not first[0].replay
    ws.send_json(envelope("start_workflow", "r-1"))
    both = backend.wait_for_command("r-1", count=2)
    assert [c.replay for c in both] == [False, True] and backend.executions("r-1") == 1
    post(backend, "stop_workflow", "r-2")
    got = backend.wait_for_command(lambda c: c.route == "commands")
    assert [c.request_id for c in got] == ["r-2"]
    with pytest.raises(TimeoutError, match="r-1"):
        backend.wait_for_command("r-1", count=3, timeout=0.2)


# ------------------------------------------------------------------------------------ /health status


def test_set_health_http_status(backend: Backend) -> None:
    backend.set_health("healthy", http_status=500)
    r = requests.get(backend.health_url, timeout=5)
    assert r.status_code == 500 and r.json()["status"] == "healthy" and "services" in r.json()
    backend.set_health("degraded", minimal=True, http_status=503)
    r = requests.get(backend.health_url, timeout=5)
    assert r.status_code == 503 and r.json() == {"status": "degraded", "service": "magk-reference-backend"}
    backend.set_health()
    assert requests.get(backend.health_url, timeout=5).status_code == 200


# ------------------------------------------------------------------------------------ POST /commands faults


def test_fail_commands_answers_the_next_n_with_a_status_without_running_them(
    backend: Backend, ws_client: Callable[..., RawWS]
) -> None:
    backend.faults.fail_commands(2, 503, retry_after=2, error="busy")
    bad = requests.post(backend.commands_url, data=b"{oops", timeout=5)
    assert bad.status_code == 400  # a malformed body is answered as ever and takes no fault
    ws = ws_client(backend.websocket_url)
    ws.recv_json()
    assert ws.command("update_config", request_id="r-ws", data={})["success"] is True  # WebSocket: not affected
    for _ in range(2):
        r = post(backend, "start_workflow", "r-1")
        assert r.status_code == 503 and r.headers["Retry-After"] == "2" and r.json() == {"error": "busy"}
    assert backend.workflow_state("wf-1") == "idle"
    r = post(backend, "start_workflow", "r-1")
    assert r.status_code == 200 and r.json()["success"] is True
    log = [c for c in backend.command_log if c.request_id == "r-1"]
    assert [(c.route, c.fault, c.executed, c.success) for c in log] == [
        ("commands", "http 503", False, None), ("commands", "http 503", False, None), ("commands", None, True, True)]
    assert backend.executions("r-1") == 1 and backend.command_counts["r-1"] == 1
    assert backend.counters["commands_faulted"] == 2
    backend.faults.fail_commands(1, 400)
    r = post(backend, "start_workflow", "r-2")
    assert r.status_code == 400 and "fault injection" in r.json()["error"] and "Retry-After" not in r.headers


def test_reset_commands_resets_the_connection_after_reading_the_body(backend: Backend) -> None:
    backend.faults.reset_commands(1)
    backend.faults.fail_commands(1, 502)  # faults queue up: each request takes the oldest
    with pytest.raises(requests.exceptions.ConnectionError):
        post(backend, "start_workflow", "r-1")
    assert post(backend, "start_workflow", "r-1").status_code == 502
    assert backend.workflow_state("wf-1") == "idle"
    assert post(backend, "start_workflow", "r-1").json()["success"] is True
    assert [c.fault for c in backend.command_log] == ["reset", "http 502", None]
    assert backend.executions("r-1") == 1 and backend.counters["commands_faulted"] == 2


def test_reset_faults_clears_the_command_faults(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    backend.faults.fail_commands(5, 500)
    backend.faults.reset_commands(5)
    backend.faults.drop_command_answers(5, then_drop=True)
    backend.faults.delay_command_answers(30)
    backend.reset_faults()
    assert post(backend, "start_workflow", "r-1", timeout=10).json()["success"] is True
    ws = ws_client(backend.websocket_url, timeout=10)
    ws.recv_json()
    assert ws.command("update_config", request_id="r-2", data={})["success"] is True
    assert backend.counters.get("commands_faulted", 0) == backend.counters.get("answers_dropped", 0) == 0


# ------------------------------------------------------------------------------------ command answers


def test_drop_command_answers_withholds_the_next_answers_on_the_websocket(
    backend: Backend, ws_client: Callable[..., RawWS]
) -> None:
    ws = ws_client(backend.websocket_url)
    ws.recv_json()
    backend.faults.drop_command_answers(1)
    assert post(backend, "update_config", "r-http").json()["success"] is True  # HTTP answers: not affected
    ws.send_json(envelope("update_config", "r-1"))
    backend.wait_for_command("r-1")
    ws.send_json({"type": "ping", "data": {"pingId": "p-1"}})
    after = ws.recv_until(lambda m: m["type"] == "pong")
    assert not [m for m in after if is_command_response(m)]  # the answer was never sent
    assert backend.counters["answers_dropped"] == 1
    assert ws.command("update_config", request_id="r-1")["requestId"] == "r-1"  # the repeat is answered
    assert backend.executions("r-1") == 1


def test_drop_command_answers_then_drop_cuts_the_connection_after_the_command(
    backend: Backend, ws_client: Callable[..., RawWS]
) -> None:
    ws = ws_client(backend.websocket_url)
    ws.recv_json()  # no need to wait for anything else: only the answer is affected
    backend.faults.drop_command_answers(1, then_drop=True)
    ws.send_json(envelope("start_workflow", "r-1"))
    with pytest.raises((ConnectionError, websocket.WebSocketConnectionClosedException)):
        while True:
            msg = ws.recv_json()
            assert not is_command_response(msg)
    backend.wait_for_disconnects()
    assert backend.counters["dropped"] == 1 and backend.counters["answers_dropped"] == 1
    assert backend.executions("r-1") == 1
    again = ws_client(backend.websocket_url)
    again.recv_json()
    assert again.command("start_workflow", request_id="r-1")["success"] is True  # answered from the store
    assert backend.executions("r-1") == 1 and [c.replay for c in backend.command_log] == [False, True]


def test_delay_command_answers_delays_answers_only_and_keeps_their_order(
    backend: Backend, ws_client: Callable[..., RawWS]
) -> None:
    ws = ws_client(backend.websocket_url)
    ws.recv_json()
    backend.faults.delay_command_answers(0.4)
    began = time.monotonic()
    ws.send_json(envelope("update_config", "r-1"))
    ws.send_json(envelope("update_config", "r-2"))
    ws.send_json({"type": "ping", "data": {"pingId": "p-1"}})
    backend.publish({"type": "node_log", "data": {"marker": True}})
    got = ws.recv_until(lambda m: is_command_response(m) and m["data"]["response"]["requestId"] == "r-2")
    assert time.monotonic() - began >= 0.39
    kinds = [m["data"]["response"]["requestId"] if is_command_response(m) else m["type"] for m in got]
    assert kinds.index("pong") < kinds.index("r-1") and kinds.index("node_log") < kinds.index("r-1")
    assert kinds.index("r-1") < kinds.index("r-2")
    assert backend.executions("r-1") == backend.executions("r-2") == 1

    # POST /commands: the command runs at once, the answer comes late
    with pytest.raises(requests.exceptions.ReadTimeout):
        post(backend, "start_workflow", "r-3", timeout=0.1)
    assert backend.wait_for_command("r-3")[0].executed
    began = time.monotonic()
    assert post(backend, "start_workflow", "r-3").json()["success"] is True
    assert time.monotonic() - began >= 0.39
    backend.faults.delay_command_answers(0)
    ws.send_json({"type": "ping", "data": {"pingId": "p-2"}})
    ws.recv_until(lambda m: m["type"] == "pong")
    assert ws.command("update_config", request_id="r-4", data={})["success"] is True
    with pytest.raises(ValueError):
        backend.faults.delay_command_answers(-1)
