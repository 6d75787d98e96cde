"""Acknowledgements of client messages (docs/protocol.rst, "Acknowledgements"), on the reference backend.

Raw websocket-client / requests clients against a real Backend on 127.0.0.1. A ``ping`` is the sentinel
that proves something was NOT sent: the backend answers a connection's messages in order (an ack is never
held back behind a later answer), so a ``pong`` that comes first means no ack was due.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List

import pytest
import requests
from conftest import RawSSE, RawWS, is_command_response

from magk_client.testing import Backend


def message(mid: str, **extra: Any) -> Dict[str, Any]:
    return {"id": mid, "type": "workflow_event", "workflowId": "wf-1", "data": {"type": "note", **extra}}


def ping(ping_id: str = "p-1") -> Dict[str, Any]:
    return {"type": "ping", "data": {"pingId": ping_id}}


def is_ack(msg: Dict[str, Any]) -> bool:
    return msg.get("type") == "ack"


def acked_ids(msgs: List[Dict[str, Any]]) -> List[str]:
    return [i for m in msgs if is_ack(m) for i in m["data"]["ids"]]


def until_pong(ws: RawWS, ping_id: str = "sentinel") -> List[Dict[str, Any]]:
    """Send a ping; everything received up to its pong (the pong excluded)."""
    ws.send_json(ping(ping_id))
    msgs = ws.recv_until(lambda m: m["type"] == "pong" and m["data"]["pingId"] == ping_id)
    return msgs[:-1]


def connect(ws_client: Callable[..., RawWS], backend: Backend, **kwargs: Any) -> RawWS:
    ws = ws_client(backend.websocket_url, **kwargs)
    assert ws.recv_json()["type"] == "subscription_ack"
    return ws


# -- the feature is advertised -----------------------------------------------------------------------


def test_subscription_ack_advertises_acks(backend: Backend, ws_client: Callable[..., RawWS], sse_client: Callable[..., RawSSE]) -> None:
    ws = ws_client(backend.websocket_url)
    ack = ws.recv_json()
    assert ack["type"] == "subscription_ack" and "ack" in ack["data"]["features"]
    sse = sse_client(backend.event_source_url)
    item = sse.next_event()
    assert item is not None and item[1]["type"] == "subscription_ack" and "ack" in item[1]["data"]["features"]


@pytest.mark.magk_backend(acks=False)
def test_no_ack_feature_when_off(backend: Backend, ws_client: Callable[..., RawWS], sse_client: Callable[..., RawSSE]) -> None:
    ack = ws_client(backend.websocket_url).recv_json()
    assert ack["type"] == "subscription_ack" and "ack" not in ack["data"].get("features", [])
    item = sse_client(backend.event_source_url).next_event()
    assert item is not None and "ack" not in item[1]["data"].get("features", [])


def test_set_acks_switches_at_runtime(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    backend.set_acks(False)
    assert backend.acks is False
    ws = ws_client(backend.websocket_url)
    assert "ack" not in ws.recv_json()["data"].get("features", [])
    ws.send_json(message("m-off"))
    assert until_pong(ws) == []
    backend.set_acks(True)
    assert "ack" in connect_features(ws_client, backend)
    ws.send_json(message("m-on"))
    assert acked_ids(until_pong(ws)) == ["m-on"]


def connect_features(ws_client: Callable[..., RawWS], backend: Backend) -> List[str]:
    features: List[str] = ws_client(backend.websocket_url).recv_json()["data"]["features"]
    return features


# -- WebSocket acks ----------------------------------------------------------------------------------


def test_one_message_is_acked(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ws = connect(ws_client, backend)
    ws.send_json(message("msg-1"))
    ack = ws.recv_json()
    assert ack["type"] == "ack" and ack["data"] == {"ids": ["msg-1"]}
    assert "id" not in ack and "workflowId" not in ack and ack["timestamp"].endswith("Z")
    assert backend.processed_counts == {"msg-1": 1}
    assert backend.counters["acks_sent"] == 1


def test_many_messages_are_acked_once_each_in_order(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ws = connect(ws_client, backend)
    ids = [f"msg-{i}" for i in range(500)]
    for mid in ids:
        ws.send_json(message(mid))
    got: List[Dict[str, Any]] = []
    while len(acked_ids(got)) < len(ids):
        msg = ws.recv_json()
        assert is_ack(msg), msg
        assert msg["data"]["ids"], "an ack names at least one id"
        got.append(msg)
    assert acked_ids(got) == ids  # each id once, in the order sent
    assert len(got) <= len(ids)
    assert until_pong(ws) == []
    counts = backend.processed_counts
    assert set(counts) == set(ids) and set(counts.values()) == {1}


def test_duplicate_is_acked_again_but_processed_once(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ws = connect(ws_client, backend)
    ws.send_json(message("dup-1", n=1))
    assert acked_ids(until_pong(ws, "a")) == ["dup-1"]
    ws.send_json(message("dup-1", n=2))
    assert acked_ids(until_pong(ws, "b")) == ["dup-1"]
    assert backend.processed_counts == {"dup-1": 1}
    assert backend.counters["duplicates_ignored"] == 1
    received = [r for r in backend.received_messages if r.message.get("id") == "dup-1"]
    assert [r.duplicate for r in received] == [False, True]


def test_duplicate_after_reconnect_is_not_processed_again(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    first = connect(ws_client, backend)
    first.send_json(message("again"))
    assert acked_ids(until_pong(first)) == ["again"]
    first.close()
    second = connect(ws_client, backend)
    second.send_json(message("again"))
    assert acked_ids(until_pong(second)) == ["again"]
    assert backend.processed_counts == {"again": 1}


def test_processed_ids_survive_a_restart(backend: Backend) -> None:
    assert requests.post(backend.messages_url, json=message("r-1"), timeout=5).status_code == 202
    backend.restart()
    answer = requests.post(backend.messages_url, json=message("r-1"), timeout=5)
    assert answer.status_code == 202 and answer.json()["duplicate"] is True
    assert backend.processed_counts == {"r-1": 1}


def test_the_processed_set_is_bounded() -> None:
    with Backend(pace=0.0, processed_ids_size=3) as backend:
        for mid in ("a", "b", "c", "d"):  # "a" falls out of the set
            assert requests.post(backend.messages_url, json=message(mid), timeout=5).status_code == 202
        assert "duplicate" not in requests.post(backend.messages_url, json=message("a"), timeout=5).json()
        assert requests.post(backend.messages_url, json=message("d"), timeout=5).json()["duplicate"] is True
        assert backend.processed_counts == {"a": 2, "b": 1, "c": 1, "d": 1}


def test_a_message_without_id_is_processed_not_acked(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ws = connect(ws_client, backend)
    ws.send_json({"type": "workflow_event", "workflowId": "wf-1", "data": {"type": "note"}})
    ws.send_json({"id": "pong-1", "type": "pong", "data": {"pingId": "hb-1"}})
    assert until_pong(ws) == []
    assert any(r.message.get("data", {}).get("type") == "note" for r in backend.received_messages)
    assert backend.processed_counts == {}


def test_a_command_answer_is_its_ack(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ws = connect(ws_client, backend)
    response = ws.command("update_config", request_id="req-ack", data={"x": 1})
    assert response["requestId"] == "req-ack" and response["success"] is True
    assert not any(is_ack(m) for m in until_pong(ws))
    # a resend gets the stored answer again, still no separate ack
    assert ws.command("update_config", request_id="req-ack", data={"x": 1}) == response
    assert not any(is_ack(m) for m in until_pong(ws, "again"))
    assert backend.command_counts["req-ack"] == 2 and backend.counters["commands_replayed"] == 1
    assert backend.processed_counts == {}


def test_a_refused_message_names_its_id_and_is_not_acked(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ws = connect(ws_client, backend)
    ws.send_json({"id": "bad-1", "type": 7})
    msgs = until_pong(ws)
    assert [m["type"] for m in msgs] == ["subscription_error"]
    assert msgs[0]["data"]["code"] == "bad_message" and msgs[0]["data"]["id"] == "bad-1"
    assert backend.processed_counts == {}


@pytest.mark.magk_backend(acks=False)
def test_no_ack_and_no_dedup_when_off(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ws = connect(ws_client, backend)
    ws.send_json(message("m-1"))
    ws.send_json(message("m-1"))
    assert until_pong(ws) == []
    assert backend.processed_counts == {"m-1": 2}
    assert backend.counters.get("acks_sent", 0) == 0
    answer = requests.post(backend.messages_url, json=message("m-1"), timeout=5)
    assert answer.status_code == 202 and answer.json() == {"accepted": True}
    assert backend.processed_counts == {"m-1": 3}


# -- POST /messages ----------------------------------------------------------------------------------


def test_post_answer_is_the_ack_and_dedups_across_transports(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ws = connect(ws_client, backend)
    ws.send_json(message("x-1"))
    assert acked_ids(until_pong(ws)) == ["x-1"]
    answer = requests.post(backend.messages_url, json=message("x-1"), timeout=5)
    assert answer.status_code == 202 and answer.json() == {"accepted": True, "id": "x-1", "duplicate": True}
    assert backend.processed_counts == {"x-1": 1}
    # and the other way round: first over HTTP, then over the WebSocket
    answer = requests.post(backend.messages_url, json=message("x-2"), timeout=5)
    assert answer.status_code == 202 and answer.json() == {"accepted": True, "id": "x-2"}
    ws.send_json(message("x-2"))
    assert acked_ids(until_pong(ws)) == ["x-2"]
    assert backend.processed_counts == {"x-1": 1, "x-2": 1}
    assert backend.counters["duplicates_ignored"] == 2


def test_post_command_is_answered_not_deduplicated_as_a_message(backend: Backend) -> None:
    envelope = {
        "id": "req-h",
        "type": "workflow_event",
        "workflowId": "wf-1",
        "data": {"type": "command", "command": {"command": "update_config", "workflowId": "wf-1", "data": {}}},
    }
    first = requests.post(backend.messages_url, json=envelope, timeout=5)
    second = requests.post(backend.messages_url, json=envelope, timeout=5)
    assert first.status_code == second.status_code == 200
    assert first.json()["response"] == second.json()["response"]
    assert backend.command_counts["req-h"] == 2 and backend.processed_counts == {}


# -- acks are not events -----------------------------------------------------------------------------


def test_acks_are_never_logged_nor_replayed(backend: Backend, ws_client: Callable[..., RawWS], sse_client: Callable[..., RawSSE]) -> None:
    ws = connect(ws_client, backend)
    before = backend.publish({"type": "node_log", "data": {}})
    assert ws.recv_json()["id"] == before
    for i in range(5):
        ws.send_json(message(f"r-{i}"))
    assert acked_ids(until_pong(ws)) == [f"r-{i}" for i in range(5)]
    after = backend.publish({"type": "node_log", "data": {}})
    assert ws.recv_json()["id"] == after
    assert [e["id"] for e in backend.logged_events()] == [before, after]
    assert backend.last_event_id == after

    resumed = ws_client(backend.websocket_url, header=["Last-Event-ID: e-0"])
    head = resumed.recv_json()
    assert head["type"] == "subscription_ack" and head["data"]["replayed"] == 2
    assert [m.get("id") for m in until_pong(resumed)] == [before, after]

    sse = sse_client(backend.event_source_url, headers={"Last-Event-ID": "e-0"})
    first = sse.next_event()
    assert first is not None and first[1]["type"] == "subscription_ack" and first[1]["data"]["replayed"] == 2
    sentinel = backend.publish({"type": "node_log", "data": {"last": True}})
    replayed = sse.events_until(lambda m: m.get("id") == sentinel)
    assert [m["type"] for _, m in replayed] == ["node_log"] * 3
    assert [event_id for event_id, _ in replayed] == [before, after, sentinel]


def test_acks_go_only_to_the_sender(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    sender = connect(ws_client, backend)
    other = connect(ws_client, backend)
    sender.send_json(message("mine"))
    assert acked_ids(until_pong(sender)) == ["mine"]
    assert until_pong(other) == []


def test_answers_keep_the_order_of_the_messages(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    """The ack of a plain message comes before the answer to a command sent right after it."""
    ws = connect(ws_client, backend)
    command = {"command": "update_config", "workflowId": "wf-1", "requestId": "after-msg", "data": {}}
    ws.send_json(message("before-cmd"))
    ws.send_json({"id": "after-msg", "type": "workflow_event", "workflowId": "wf-1", "data": {"type": "command", "command": command}})
    msgs = [m for m in ws.recv_until(is_command_response) if "id" not in m]  # events of the command aside
    assert [m["type"] for m in msgs] == ["ack", "workflow_event"]
    assert msgs[0]["data"]["ids"] == ["before-cmd"]
