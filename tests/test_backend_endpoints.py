"""Each endpoint of the reference backend, its bad input, and auth, over real sockets."""

from __future__ import annotations

import json
import socket
import threading
from typing import Callable

import pytest
import requests
import websocket
from conftest import RawSSE, RawWS, is_command_response

from magk_client.testing import Backend


def command_payload(command: str = "start_workflow", request_id: str = "r-1", **extra: object) -> dict:
    return {"command": command, "workflowId": "wf-1", "requestId": request_id, **extra}


# -- health ----------------------------------------------------------------------------------------


def test_health_full_degraded_and_minimal(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ws_client(backend.websocket_url).recv_json()
    body = requests.get(backend.health_url, timeout=5).json()
    assert body["status"] == "healthy"
    assert body["services"] == {"database": True, "messaging": True, "workflows": True}
    assert body["metrics"]["activeConnections"] == 1
    assert isinstance(body["metrics"]["responseTime"], float)
    backend.set_health("degraded", database=False)
    body = requests.get(backend.health_url, timeout=5).json()
    assert body["status"] == "degraded" and body["services"]["database"] is False
    backend.set_health(minimal=True)
    assert requests.get(backend.health_url, timeout=5).json() == {"status": "healthy", "service": "magk-reference-backend"}


def test_unknown_path_is_404(backend: Backend) -> None:
    assert requests.get(backend.base_url + "/nope", timeout=5).status_code == 404


def test_plain_get_on_websocket_path_is_400(backend: Backend) -> None:
    r = requests.get(backend.websocket_url.replace("ws://", "http://"), timeout=5)
    assert r.status_code == 400


# -- POST /commands --------------------------------------------------------------------------------


def test_http_command_success_and_failure(backend: Backend) -> None:
    r = requests.post(backend.commands_url, json=command_payload(), timeout=5)
    assert r.status_code == 200
    assert r.json() == {
        "requestId": "r-1",
        "command": "start_workflow",
        "success": True,
        "data": {"workflowId": "wf-1", "state": "running"},
    }
    r = requests.post(backend.commands_url, json={"command": "start_workflow", "workflowId": "nope", "requestId": "r-2"}, timeout=5)
    assert r.status_code == 200 and r.json()["success"] is False and "unknown workflow" in r.json()["error"]
    r = requests.post(backend.commands_url, json=command_payload("launch", "r-3"), timeout=5)
    assert r.status_code == 200 and r.json()["success"] is False and "unknown command" in r.json()["error"]


def test_http_command_idempotent_by_request_id(backend: Backend) -> None:
    first = requests.post(backend.commands_url, json=command_payload(request_id="same"), timeout=5).json()
    backend.wait_for_workflow("wf-1", "completed")
    second = requests.post(backend.commands_url, json=command_payload(request_id="same"), timeout=5).json()
    assert second == first and first["success"] is True
    starts = [e for e in backend.logged_events() if e["data"].get("type") == "workflow_started"]
    assert len(starts) == 1
    assert backend.command_counts["same"] == 2
    assert backend.counters["commands_replayed"] == 1
    # a new id runs again
    third = requests.post(backend.commands_url, json=command_payload(request_id="other"), timeout=5).json()
    assert third["success"] is True


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'"just a string"',
        b'{"workflowId": "wf-1"}',
        b'{"command": 5, "workflowId": "wf-1"}',
        b'{"command": "start_workflow"}',
        b'{"command": "start_workflow", "workflowId": "wf-1", "data": "x"}',
        b'{"command": "start_workflow", "workflowId": "wf-1", "nodeId": 3}',
        b'{"command": "start_workflow", "workflowId": "wf-1", "requestId": 7}',
        b"\xff\xfe\x00",
        b"[" * 100000 + b"]" * 100000,
    ],
)
def test_http_malformed_command_is_400_and_backend_survives(backend: Backend, body: bytes) -> None:
    r = requests.post(backend.commands_url, data=body, headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 400
    assert isinstance(r.json()["error"], str)
    assert requests.get(backend.health_url, timeout=5).status_code == 200


def test_http_huge_body_is_413(backend: Backend) -> None:
    r = requests.post(backend.commands_url, data=b"x" * (2 * 1024 * 1024), timeout=10)
    assert r.status_code == 413 and "error" in r.json()
    r = requests.post(backend.messages_url, data=b"x" * (2 * 1024 * 1024), timeout=10)
    assert r.status_code == 413
    # chunked upload without Content-Length
    r = requests.post(backend.commands_url, data=iter([b"x" * 65536] * 40), timeout=10)
    assert r.status_code == 413
    assert requests.get(backend.health_url, timeout=5).status_code == 200


# -- POST /messages --------------------------------------------------------------------------------


def test_messages_records_envelopes(backend: Backend) -> None:
    envelope = {"id": "m-1", "type": "node_log", "data": {"logs": []}}
    r = requests.post(backend.messages_url, json=envelope, timeout=5)
    assert r.status_code == 202 and r.json() == {"accepted": True, "id": "m-1"}  # the answer is the ack
    received = backend.wait_for_received(1)
    assert received[0].transport == "http" and received[0].message == envelope
    for bad in (b"{oops", b"[1]", b'{"data": {}}'):
        assert requests.post(backend.messages_url, data=bad, timeout=5).status_code == 400
    assert len(backend.received_messages) == 1


def test_messages_command_envelope_runs_command_and_answers_sse_stream(
    backend: Backend, sse_client: Callable[..., RawSSE]
) -> None:
    sse = sse_client(backend.event_source_url)
    ack = sse.next_event()
    assert ack is not None and ack[1]["type"] == "subscription_ack"
    conn_id = ack[1]["data"]["connectionId"]
    assert sse.response.headers["X-Connection-Id"] == conn_id
    envelope = {"id": "req-9", "type": "workflow_event", "workflowId": "wf-1", "data": {"type": "command", "command": {"command": "start_workflow", "workflowId": "wf-1"}}}
    r = requests.post(backend.messages_url, json=envelope, headers={"X-Connection-Id": conn_id}, timeout=5)
    assert r.status_code == 200
    assert r.json()["response"]["requestId"] == "req-9" and r.json()["response"]["success"] is True
    events = sse.events_until(is_command_response)
    assert events[-1][0] is None  # answers carry no id
    assert events[-1][1]["data"]["response"]["requestId"] == "req-9"
    assert backend.command_counts == {"req-9": 1}
    bad = dict(envelope, data={"type": "command", "command": {"command": "start_workflow"}})
    assert requests.post(backend.messages_url, json=bad, timeout=5).status_code == 400


# -- WebSocket -------------------------------------------------------------------------------------


def test_ws_ack_ping_pong_and_records(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ws = ws_client(backend.websocket_url, header=["X-Custom: yes"])
    ack = ws.recv_json()
    assert ack["type"] == "subscription_ack" and ack["data"]["replayed"] == 0 and "id" not in ack
    ws.send_json({"type": "ping", "data": {"pingId": "p-77"}})
    pong = ws.recv_json()
    assert pong["type"] == "pong" and pong["data"] == {"pingId": "p-77"} and pong["timestamp"].endswith("Z")
    ws.send_json({"type": "subscribe", "data": {"workflowId": "wf-1"}})
    ws.send_json({"type": "pong", "data": {"pingId": "hb-1"}})
    got = backend.wait_for_received(lambda m: m.message.get("type") == "subscribe")
    assert got[0].transport == "websocket" and got[0].connection_id == ack["data"]["connectionId"]
    backend.wait_until(lambda: len(backend.pongs) == 1, what="pong")
    assert backend.pongs[0].message["data"]["pingId"] == "hb-1"
    assert backend.counters["pings"] == 1
    log = backend.connections_log[-1]
    assert log["transport"] == "websocket" and log["headers"]["X-Custom"] == "yes" and log["outcome"] == "accepted"
    assert backend.wait_for_connections(1, transport="websocket") == 1


def test_ws_command_and_idempotency(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ws = ws_client(backend.websocket_url)
    ws.recv_json()
    first = ws.command("start_workflow", request_id="req-7")
    assert first["success"] is True and first["requestId"] == "req-7"
    second = ws.command("start_workflow", request_id="req-7")
    assert second == first
    # the same id over HTTP is the same command too
    assert requests.post(backend.commands_url, json=command_payload(request_id="req-7"), timeout=5).json() == first
    assert backend.command_counts["req-7"] == 3
    starts = [e for e in backend.logged_events() if e["data"].get("type") == "workflow_started"]
    assert len(starts) == 1
    # response envelope shape
    ws.send_json({"id": "req-8", "type": "workflow_event", "workflowId": "wf-1", "data": {"type": "command", "command": {"command": "pause_workflow", "workflowId": "nope"}}})
    msg = ws.recv_until(is_command_response)[-1]
    assert msg["workflowId"] == "nope" and msg["data"]["response"]["requestId"] == "req-8"
    assert msg["data"]["response"]["success"] is False


@pytest.mark.parametrize(
    "frame",
    ["{nope", "[1, 2, 3]", '"text"', '{"no_type": 1}', "1e999999", "[" * 100000 + "]" * 100000],
)
def test_ws_bad_messages_answered_and_connection_stays(backend: Backend, ws_client: Callable[..., RawWS], frame: str) -> None:
    ws = ws_client(backend.websocket_url)
    ws.recv_json()
    ws.ws.send(frame)
    err = ws.recv_json()
    assert err["type"] == "subscription_error" and err["data"]["code"] == "bad_message"
    ws.send_json({"type": "ping", "data": {"pingId": "after"}})
    assert ws.recv_json()["data"]["pingId"] == "after"
    assert backend.counters["bad_messages"] == 1


def test_ws_malformed_command_gets_error_answer(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ws = ws_client(backend.websocket_url)
    ws.recv_json()
    ws.send_json({"id": "req-x", "type": "workflow_event", "data": {"type": "command", "command": "start please"}})
    answer = ws.recv_json()
    assert is_command_response(answer)
    assert answer["data"]["response"]["success"] is False and answer["data"]["response"]["requestId"] == "req-x"
    assert "malformed command" in answer["data"]["response"]["error"]
    assert ws.command("start_workflow", request_id="req-ok")["success"] is True


def test_ws_binary_frame_is_rejected_not_fatal(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ws = ws_client(backend.websocket_url)
    ws.recv_json()
    ws.ws.send_binary(b"\x00\x01\x02")
    err = ws.recv_json()
    assert err["type"] == "subscription_error" and err["data"]["code"] == "bad_message"
    ws.send_json({"type": "ping", "data": {"pingId": 1}})
    assert ws.recv_json()["type"] == "pong"


def test_ws_too_big_message_closes_1009_backend_survives(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ws = ws_client(backend.websocket_url)
    ws.recv_json()
    try:
        ws.ws.send("x" * (2 * 1024 * 1024))
    except (ConnectionResetError, BrokenPipeError, websocket.WebSocketConnectionClosedException):
        # The backend closes (1009) as soon as it sees the size; closing with our unread bytes
        # in its buffer resets the connection, which can cut our send short. The close frame
        # it sent before that is still in our receive queue.
        pass
    frame = ws.ws.recv_frame()
    assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(frame.data[:2], "big") == 1009
    assert requests.get(backend.health_url, timeout=5).status_code == 200


def test_ws_rfc6455_ping_answered(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ws = ws_client(backend.websocket_url)
    ws.recv_json()
    ws.ws.ping(b"hello")
    opcode, frame = ws.ws.recv_data_frame(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_PONG and frame.data == b"hello"


def test_garbage_tcp_does_not_crash(backend: Backend) -> None:
    with socket.create_connection((backend.host, backend.port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01 this is not http\r\n\r\n")
        sock.recv(1024)
    assert requests.get(backend.health_url, timeout=5).status_code == 200


# -- SSE ---------------------------------------------------------------------------------------------


def test_sse_stream_headers_and_framing(backend: Backend, sse_client: Callable[..., RawSSE]) -> None:
    sse = sse_client(backend.event_source_url)
    assert sse.response.status_code == 200
    assert sse.response.headers["Content-Type"] == "text/event-stream"
    assert sse.response.headers["Cache-Control"] == "no-cache"
    assert sse.next_event()[1]["type"] == "subscription_ack"  # type: ignore[index]
    event_id = backend.publish({"type": "node_log", "workflowId": "wf-1", "data": {"logs": [{"message": "héllo\nworld"}]}})
    block = sse.next_block()
    assert block is not None
    text = block.decode("utf-8")
    lines = text.split("\n")
    assert lines[0] == f"id: {event_id}" and lines[1].startswith("data: {") and len(lines) == 2
    assert json.loads(lines[1][6:])["data"]["logs"][0]["message"] == "héllo\nworld"


# -- auth --------------------------------------------------------------------------------------------


GOOD = {"Authorization": "Bearer s3cret", "X-API-Key": "k-1"}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-API-Key": "k-1"}, 401),
        ({"Authorization": "Bearer wrong", "X-API-Key": "k-1"}, 403),
        ({"Authorization": "Basic czNjcmV0", "X-API-Key": "k-1"}, 403),
        ({"Authorization": "Bearer s3cret"}, 401),
        ({"Authorization": "Bearer s3cret", "X-API-Key": "nope"}, 403),
    ],
)
@pytest.mark.magk_backend(token="s3cret", api_key="k-1")
def test_auth_failures_everywhere(magk_backend: Backend, headers: dict, status: int) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(magk_backend.websocket_url, header=headers, timeout=5)
    assert info.value.status_code == status
    assert requests.get(magk_backend.event_source_url, headers=headers, timeout=5).status_code == status
    assert requests.post(magk_backend.commands_url, json=command_payload(), headers=headers, timeout=5).status_code == status
    assert requests.post(magk_backend.messages_url, json={"type": "x"}, headers=headers, timeout=5).status_code == status
    assert requests.get(magk_backend.health_url, headers=headers, timeout=5).status_code == status
    assert magk_backend.workflow_state("wf-1") == "idle"
    assert magk_backend.ws_connects == 0 and magk_backend.sse_connects == 0


@pytest.mark.magk_backend(token="s3cret", api_key="k-1")
def test_auth_success_everywhere(magk_backend: Backend) -> None:
    ws = websocket.create_connection(magk_backend.websocket_url, header=GOOD, timeout=5)
    try:
        assert json.loads(ws.recv())["type"] == "subscription_ack"
    finally:
        ws.close()
    r = requests.get(magk_backend.event_source_url, headers=GOOD, stream=True, timeout=5)
    assert r.status_code == 200
    r.close()
    assert requests.post(magk_backend.commands_url, json=command_payload(), headers=GOOD, timeout=5).json()["success"]
    assert requests.get(magk_backend.health_url, headers=GOOD, timeout=5).status_code == 200
    assert magk_backend.connections_log[0]["authorization"] == "Bearer s3cret"


def test_token_in_query_and_open_health() -> None:
    with Backend(token="t", open_health=True) as server:
        assert requests.get(server.health_url, timeout=5).status_code == 200
        ws = websocket.create_connection(server.websocket_url + "?token=t", timeout=5)
        ws.close()
        with pytest.raises(websocket.WebSocketBadStatusException):
            websocket.create_connection(server.websocket_url + "?token=x", timeout=5)
        assert server.counters["auth_failures"] == 1


def test_concurrent_clients_all_get_every_event(backend: Backend) -> None:
    clients = [RawWS(backend.websocket_url) for _ in range(4)]
    sse = RawSSE(backend.event_source_url)
    try:
        for c in clients:
            c.recv_json()
        sse.next_event()
        backend.wait_for_connections(5)
        threads = [threading.Thread(target=backend.publish_many, args=([{"type": "node_log", "data": {"i": i}} for i in range(200)],)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        expected = [e["id"] for e in backend.logged_events()]
        assert len(expected) == 600
        for c in clients:
            assert [c.recv_json()["id"] for _ in range(600)] == expected
        assert [sse.next_event()[0] for _ in range(600)] == expected  # type: ignore[index]
    finally:
        for c in clients:
            c.close()
        sse.close()
