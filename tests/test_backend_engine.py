"""The simulated workflow engine, seen by a raw WebSocket client."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple

import pytest
from conftest import RawWS, is_workflow_event

import magk_client
import magk_client.testing as testing_pkg
from magk_client.testing import Backend, EngineCommandRejected
from magk_client.testing.engine import Engine


def summary(msgs: List[Dict[str, Any]]) -> List[Tuple[str, Any, Any]]:
    """(type, nodeId, status or event type) of each event, control messages left out."""
    out = []
    for m in msgs:
        if "id" not in m:
            continue
        data = m["data"]
        out.append((m["type"], m.get("nodeId"), data.get("status", data.get("type"))))
    return out


def node_sequence(node: str, steps: int = 3) -> List[Tuple[str, Any, Any]]:
    return (
        [("node_status_update", node, "running")]
        + [("node_progress_update", node, None)] * steps
        + [
            ("node_log", node, None),
            ("node_metadata", node, None),
            ("node_result", node, None),
            ("node_status_update", node, "completed"),
        ]
    )


def test_two_node_workflow_full_sequence(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    backend.add_workflow("two", ["a", "b"])
    ws = ws_client(backend.websocket_url)
    assert ws.recv_json()["type"] == "subscription_ack"
    response = ws.command("start_workflow", "two", "req-start")
    assert response == {
        "requestId": "req-start",
        "command": "start_workflow",
        "success": True,
        "data": {"workflowId": "two", "state": "running"},
    }
    msgs = ws.recv_until(is_workflow_event("workflow_completed"))
    events = backend.logged_events()
    got = summary(events)
    assert got == [
        ("workflow_event", None, "workflow_started"),
        *node_sequence("a"),
        *node_sequence("b"),
        ("workflow_event", None, "workflow_completed"),
    ]
    # ids are e-1, e-2, ... in order, timestamps are UTC with Z, the client saw the same events
    assert [e["id"] for e in events] == [f"e-{i}" for i in range(1, len(events) + 1)]
    assert all(e["timestamp"].endswith("Z") and e["workflowId"] == "two" for e in events)
    # workflow_started went out before the command's answer, which ws.command() consumed
    assert [m["id"] for m in msgs if "id" in m] == [e["id"] for e in events[1:]]
    progress = [e["data"]["progress"] for e in events if e["type"] == "node_progress_update"][:3]
    assert [p["current"] for p in progress] == [1, 2, 3] and progress[-1]["percentage"] == 100
    assert backend.workflow_state("two") == "completed"


def test_failing_node(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    backend.add_workflow("bad", ["a", "b", "c"], fail_node="b", progress_steps=4)
    ws = ws_client(backend.websocket_url)
    ws.recv_json()
    assert ws.command("start_workflow", "bad")["success"] is True
    ws.recv_until(is_workflow_event("workflow_failed"))
    got = summary(backend.logged_events())
    tail = got[len(node_sequence("a", 4)) + 1 :]
    assert tail == [
        ("node_status_update", "b", "running"),
        ("node_progress_update", "b", None),
        ("node_progress_update", "b", None),
        ("node_log", "b", None),
        ("node_error", "b", None),
        ("node_status_update", "b", "error"),
        ("workflow_event", None, "workflow_failed"),
    ]
    error = next(e for e in backend.logged_events() if e["type"] == "node_error")["data"]["error"]
    assert error["code"] == "UNKNOWN_ERROR" and error["recoverable"] is True and error["message"]
    assert backend.workflow_state("bad") == "failed"
    assert not any(e.get("nodeId") == "c" for e in backend.logged_events())

    # clear the failure, restart the failed node: the workflow finishes
    assert backend.execute_command("update_config", "bad", data={"failNode": None})["success"] is True
    assert backend.execute_command("restart_node", "bad", node_id="b")["success"] is True
    ws.recv_until(is_workflow_event("workflow_completed"))
    statuses = [(e.get("nodeId"), e["data"].get("status")) for e in backend.logged_events() if e["type"] == "node_status_update"]
    assert ("b", "pending") in statuses and statuses[-1] == ("c", "completed")


def test_pause_resume_and_wrong_states() -> None:
    with Backend(pace=0.01) as backend:
        backend.add_workflow("slow", ["a", "b"], progress_steps=50)
        assert backend.execute_command("pause_workflow", "slow")["success"] is False
        assert backend.execute_command("start_workflow", "slow")["success"] is True
        backend.wait_for_event(lambda e: e["type"] == "node_progress_update")
        again = backend.execute_command("start_workflow", "slow")
        assert again["success"] is False and "already running" in again["error"]
        paused = backend.execute_command("pause_workflow", "slow")
        assert paused["success"] is True and paused["data"]["state"] == "paused"
        count = len(backend.logged_events())
        # while paused, no further events; prove it by a round trip through the loop
        assert backend.execute_command("pause_workflow", "slow")["success"] is False
        assert len(backend.logged_events()) == count
        assert backend.execute_command("resume_workflow", "slow")["success"] is True
        assert backend.execute_command("resume_workflow", "slow")["success"] is False
        assert backend.execute_command("stop_workflow", "slow")["success"] is True
        kinds = [e["data"].get("type") for e in backend.logged_events() if e["type"] == "workflow_event"]
        assert kinds == ["workflow_started", "workflow_paused", "workflow_resumed", "workflow_stopped"]
        assert backend.workflow_state("slow") == "stopped"
        assert backend.execute_command("stop_workflow", "slow")["success"] is False
        node_states = [e["data"]["status"] for e in backend.logged_events() if e["type"] == "node_status_update"]
        assert "paused" in node_states


def test_pause_holds_events_until_resume() -> None:
    with Backend(pace=0.001) as backend:
        backend.add_workflow("p", ["a"], progress_steps=200)
        backend.execute_command("start_workflow", "p")
        backend.execute_command("pause_workflow", "p")
        count = len(backend.logged_events())
        # the engine is parked on a future: publishing through the loop does not unpark it
        backend.publish({"type": "node_log", "data": {"logs": []}})
        assert len(backend.logged_events()) == count + 1
        backend.execute_command("resume_workflow", "p")
        backend.wait_for_workflow("p", "completed", timeout=10)
        assert len(backend.logged_events()) > count + 200


def test_skip_current_and_future_nodes() -> None:
    with Backend(pace=0.002) as backend:
        backend.add_workflow("s", ["a", "b", "c"], progress_steps=20)
        backend.execute_command("start_workflow", "s")
        backend.execute_command("pause_workflow", "s")
        assert backend.execute_command("skip_node", "s", node_id="a")["success"] is True
        assert backend.execute_command("skip_node", "s", node_id="c")["success"] is True
        bad = backend.execute_command("skip_node", "s", node_id="zzz")
        assert bad["success"] is False and "unknown node" in bad["error"]
        backend.execute_command("resume_workflow", "s")
        backend.wait_for_workflow("s", "completed")
        events = backend.logged_events()
        skipped = [e["nodeId"] for e in events if e["type"] == "node_status_update" and e["data"].get("skipped")]
        assert skipped == ["a", "c"]
        assert not any(e["type"] == "node_result" and e["nodeId"] in ("a", "c") for e in events)
        assert any(e["type"] == "node_result" and e["nodeId"] == "b" for e in events)
        late = backend.execute_command("skip_node", "s", node_id="b")
        assert late["success"] is False


def test_update_config_emits_event_and_validates(backend: Backend) -> None:
    ok = backend.execute_command("update_config", "wf-1", data={"batchSize": 10, "progressSteps": 5})
    assert ok["success"] is True and ok["data"]["config"]["batchSize"] == 10
    event = backend.logged_events()[-1]
    assert event["type"] == "workflow_event" and event["data"] == {
        "type": "config_updated",
        "config": {"batchSize": 10, "progressSteps": 5},
    }
    assert backend.execute_command("update_config", "wf-1", data={"progressSteps": 0})["success"] is False
    assert backend.execute_command("update_config", "wf-1", data={"failNode": "nope"})["success"] is False
    backend.execute_command("start_workflow", "wf-1")
    backend.wait_for_workflow("wf-1", "completed")
    progress = [e for e in backend.logged_events() if e["type"] == "node_progress_update"]
    assert len(progress) == 3 * 5


def test_restart_running_node() -> None:
    with Backend(pace=0.01) as backend:
        backend.add_workflow("r", ["a", "b"], progress_steps=30)
        backend.execute_command("start_workflow", "r")
        backend.wait_for_event(lambda e: e["type"] == "node_progress_update")
        backend.execute_command("pause_workflow", "r")
        assert backend.execute_command("restart_node", "r", node_id="a")["success"] is True
        backend.execute_command("resume_workflow", "r")
        backend.wait_for_workflow("r", "completed")
        events = backend.logged_events()
        assert [e["nodeId"] for e in events if e["type"] == "node_result"] == ["a", "b"]
        a_statuses = [e["data"]["status"] for e in events if e["type"] == "node_status_update" and e["nodeId"] == "a"]
        assert a_statuses == ["running", "paused", "pending", "running", "completed"]
        assert backend.execute_command("restart_node", "r")["success"] is False  # needs a nodeId


def test_restart_completed_node_runs_it_again(backend: Backend) -> None:
    backend.add_workflow("r", ["a", "b"])
    backend.execute_command("start_workflow", "r")
    backend.wait_for_workflow("r", "completed")
    assert backend.execute_command("restart_node", "r", node_id="b")["success"] is True
    backend.wait_for_workflow("r", "completed")
    results = [e["nodeId"] for e in backend.logged_events() if e["type"] == "node_result"]
    assert results == ["a", "b", "b"]


def test_long_workflow_makes_thousands_of_events(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    backend.add_workflow("big", [f"n{i}" for i in range(300)], progress_steps=5)
    ws = ws_client(backend.websocket_url)
    ws.recv_json()
    backend.execute_command("start_workflow", "big")
    msgs = ws.recv_until(is_workflow_event("workflow_completed"))
    ids = [int(m["id"][2:]) for m in msgs if "id" in m]
    assert len(ids) == 300 * 10 + 2
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_unknown_workflow_and_command(backend: Backend) -> None:
    r = backend.execute_command("start_workflow", "nope")
    assert r["success"] is False and "unknown workflow" in r["error"]
    r = backend.execute_command("fly_to_moon", "wf-1")
    assert r["success"] is False and "unknown command" in r["error"]


def test_engine_rejection_is_not_the_clients_command_error() -> None:
    engine = Engine(lambda *event: None, lambda: 0.0)
    with pytest.raises(EngineCommandRejected, match="unknown workflow"):
        engine.execute("start_workflow", "nope")
    with pytest.raises(EngineCommandRejected, match="unknown command"):
        engine.execute("launch", "nope")
    assert not issubclass(EngineCommandRejected, magk_client.MagkError)
    # the old export still resolves, with a warning naming the new one
    with pytest.warns(DeprecationWarning, match="EngineCommandRejected"):
        old = testing_pkg.CommandError
    assert old is EngineCommandRejected
