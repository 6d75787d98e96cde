"""Golden wire files (tests/data/*.json), one per message shape, checked against what the backend sends.

The files are written from docs/protocol.rst, not generated from the backend, so the backend and the codec
cannot agree on one bug unnoticed. Checking is shape-wise: the same keys and the same JSON types.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import requests
from conftest import RawWS, is_command_response, is_workflow_event

from magk_client.testing import Backend

DATA = Path(__file__).parent / "data"
LEGACY_TYPES = {"node_started", "node_progress", "node_completed", "node_error", "workflow_completed"}


def golden(name: str) -> Dict[str, Any]:
    loaded: Dict[str, Any] = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def assert_same_shape(expected: Any, actual: Any, path: str = "$") -> None:
    assert kind(expected) == kind(actual), f"{path}: {kind(expected)} expected, got {kind(actual)} ({actual!r})"
    if isinstance(expected, dict):
        assert set(expected) == set(actual), f"{path}: keys {sorted(expected)} expected, got {sorted(actual)}"
        for key in expected:
            assert_same_shape(expected[key], actual[key], f"{path}.{key}")
    elif isinstance(expected, list) and expected and actual:
        assert_same_shape(expected[0], actual[0], f"{path}[0]")


@pytest.fixture(scope="module")
def samples() -> Iterator[Dict[str, Dict[str, Any]]]:
    """One real message of each shape, from a live backend."""
    out: Dict[str, Dict[str, Any]] = {}
    with Backend(pace=0.0, heartbeat_interval=0.05) as backend:
        backend.add_workflow("bad", ["n-1", "n-2"], fail_node="n-2")
        ws = RawWS(backend.websocket_url)
        try:
            out["subscription_ack"] = ws.recv_json()
            envelope = golden("command_envelope")
            ws.send_json(envelope)
            msgs: List[Dict[str, Any]] = ws.recv_until(is_workflow_event("workflow_completed"))
            while not any(is_command_response(m) for m in msgs):
                msgs.append(ws.recv_json())
            ws.send_json({"id": "msg-1", "type": "workflow_event", "workflowId": "wf-1", "data": {"type": "note"}})
            ws.send_json(golden("ping"))
            msgs += ws.recv_until(lambda m: m["type"] == "pong")
            ws.ws.send("{not json")
            msgs += ws.recv_until(lambda m: m["type"] == "subscription_error")
            for m in msgs:
                t = m["type"]
                key = m["data"].get("type") if t == "workflow_event" else t
                if key == "subscription_error":
                    key = m["data"]["code"]
                out.setdefault(key, m)
        finally:
            ws.close()
        backend.execute_command("start_workflow", "bad")
        backend.wait_for_workflow("bad", "failed")
        backend.execute_command("update_config", "wf-1", data={"batchSize": 10})
        for e in backend.logged_events():
            key = e["data"].get("type") if e["type"] == "workflow_event" else e["type"]
            out.setdefault(key, e)
        out["command_response_failure"] = requests.post(
            backend.commands_url, json={"command": "pause_workflow", "workflowId": "wf-1", "requestId": "x"}, timeout=5
        ).json()
        payload = golden("command_payload")
        answer = requests.post(backend.commands_url, json=payload, timeout=5)
        assert answer.status_code == 200 and answer.json()["requestId"] == payload["requestId"]
        out["health"] = requests.get(backend.health_url, timeout=5).json()
        backend.set_health(minimal=True)
        out["health_minimal"] = requests.get(backend.health_url, timeout=5).json()
        gap = RawWS(backend.websocket_url, header=["Last-Event-ID: e-999999"])
        try:
            out["resume_gap"] = gap.recv_json()
        finally:
            gap.close()
    with Backend(pace=0.01) as slow:
        slow.add_workflow("s", ["n-1", "n-2"], progress_steps=20)
        slow.execute_command("start_workflow", "s")
        slow.wait_for_event(lambda e: e["type"] == "node_progress_update")
        for command in ("pause_workflow", "resume_workflow", "stop_workflow"):
            assert slow.execute_command(command, "s")["success"]
        for e in slow.logged_events():
            if e["type"] == "workflow_event":
                out.setdefault(e["data"]["type"], e)
    yield out


EMITTED = [
    "node_status_update",
    "node_progress_update",
    "node_log",
    "node_metadata",
    "node_result",
    "node_error",
    "workflow_started",
    "workflow_paused",
    "workflow_resumed",
    "workflow_stopped",
    "workflow_completed",
    "workflow_failed",
    "config_updated",
    "command_response",
    "command_response_failure",
    "pong",
    "heartbeat",
    "subscription_ack",
    "ack",
    "resume_gap",
    "bad_message",
    "health",
    "health_minimal",
]


@pytest.mark.parametrize("name", [n for n in EMITTED if n != "heartbeat"])
def test_backend_output_matches_golden_shape(samples: Dict[str, Dict[str, Any]], name: str) -> None:
    assert name in samples, f"backend never sent a {name}"
    assert_same_shape(golden(name), samples[name])


def test_heartbeat_matches_golden() -> None:
    with Backend(heartbeat_interval=0.02) as backend:
        ws = RawWS(backend.websocket_url)
        try:
            ws.recv_json()
            assert_same_shape(golden("heartbeat"), ws.recv_json())
        finally:
            ws.close()


def test_every_golden_file_is_covered() -> None:
    names = {p.stem for p in DATA.glob("*.json")}
    inbound = {"command_envelope", "command_payload", "ping"}
    legacy = {n for n in names if n.startswith("legacy_")}
    assert names == set(EMITTED) | inbound | legacy


@pytest.mark.parametrize("name", sorted(p.stem for p in DATA.glob("legacy_*.json")))
def test_legacy_files_follow_the_old_format(name: str) -> None:
    msg = golden(name)
    assert "id" not in msg and msg["type"] in LEGACY_TYPES
    assert set(msg) <= {"type", "workflowId", "nodeId", "timestamp", "data"} and isinstance(msg["data"], dict)


def test_events_carry_ids_and_control_messages_do_not(samples: Dict[str, Dict[str, Any]]) -> None:
    for name in EMITTED:
        g = golden(name)
        if name.startswith("health") or name == "command_response_failure":
            continue
        is_event = name.startswith(("node_", "workflow_")) or name == "config_updated"
        assert ("id" in g) == is_event, name
        if name in samples:
            assert ("id" in samples[name]) == is_event, name
            assert samples[name]["timestamp"].endswith("Z")
