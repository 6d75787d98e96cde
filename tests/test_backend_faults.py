"""Each fault switch of the reference backend, shown on a raw websocket-client / requests client."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Callable

import pytest
import requests
import websocket
from conftest import RawSSE, RawWS
from timings import well_before

from magk_client.testing import BAD_KINDS, Backend


def test_drop_connections_aborts_without_close_frame(backend: Backend, ws_client: Callable[..., RawWS], sse_client: Callable[..., RawSSE]) -> None:
    ws = ws_client(backend.websocket_url)
    ws.recv_json()
    sse = sse_client(backend.event_source_url)
    sse.next_event()
    backend.wait_for_connections(2)
    assert backend.drop_connections() == 2
    with pytest.raises((ConnectionError, websocket.WebSocketConnectionClosedException)):
        frame = ws.ws.recv_frame()  # a close frame would be returned here, not raised
        pytest.fail(f"got a frame: {frame.opcode}")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        sse.next_block()
    backend.wait_for_disconnects()
    assert backend.counters["dropped"] == 2


def test_close_connections_with_code(backend: Backend, ws_client: Callable[..., RawWS], sse_client: Callable[..., RawSSE]) -> None:
    ws = ws_client(backend.websocket_url)
    ws.recv_json()
    sse = sse_client(backend.event_source_url)
    sse.next_event()
    backend.wait_for_connections(2)
    assert backend.close_connections(4001, "go away") == 2
    frame = ws.ws.recv_frame()
    assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(frame.data[:2], "big") == 4001 and frame.data[2:] == b"go away"
    assert sse.next_block() is None  # clean end of stream
    backend.wait_for_disconnects()


@pytest.mark.parametrize("status", [503, 403, 429])
def test_refuse_websocket_then_sse_still_works(backend: Backend, sse_client: Callable[..., RawSSE], status: int) -> None:
    backend.refuse_websocket(status, retry_after=3)
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(backend.websocket_url, timeout=5)
    assert info.value.status_code == status
    assert info.value.resp_headers["retry-after"] == "3"
    sse = sse_client(backend.event_source_url)
    assert sse.response.status_code == 200
    backend.refuse_websocket(None)
    ws = websocket.create_connection(backend.websocket_url, timeout=5)
    ws.close()
    assert backend.counters["refused"] == 1 and backend.ws_connects == 1


def test_refuse_sse(backend: Backend) -> None:
    backend.refuse_sse(500)
    assert requests.get(backend.event_source_url, timeout=5).status_code == 500
    backend.refuse_sse(204)
    r = requests.get(backend.event_source_url, timeout=5)
    assert r.status_code == 204 and r.content == b""
    backend.refuse_sse(None)
    r = requests.get(backend.event_source_url, stream=True, timeout=5)
    assert r.status_code == 200
    r.close()


def test_go_silent_is_half_open_and_resume_recovers(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ws = ws_client(backend.websocket_url, timeout=0.3)
    ws.recv_json()
    backend.go_silent(True)
    ws.send_json({"type": "ping", "data": {"pingId": "p"}})
    silent_id = backend.publish({"type": "node_log", "data": {}})
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv_json()  # no pong, no event: the socket is open but mute
    assert ws.ws.connected
    # the ping still reached the server
    backend.wait_until(lambda: backend.counters.get("pings") == 1, what="ping recorded")
    backend.go_silent(False)
    ws.send_json({"type": "ping", "data": {"pingId": "q"}})
    assert ws.recv_json()["data"]["pingId"] == "q"
    # the event published while silent was logged: resume gets it
    ws2 = ws_client(backend.websocket_url, header=["Last-Event-ID: e-0"])
    msgs = [ws2.recv_json() for _ in range(2)]
    assert msgs[0]["type"] == "subscription_ack" and msgs[1]["id"] == silent_id


def test_go_silent_holds_http_answers(backend: Backend) -> None:
    backend.go_silent(True)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(backend.commands_url, json={"command": "start_workflow", "workflowId": "wf-1"}, timeout=0.3)
    backend.go_silent(False)
    assert requests.post(backend.commands_url, json={"command": "stop_workflow", "workflowId": "wf-1"}, timeout=5).status_code == 200


def test_set_delay_delays_every_message_in_order(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ws = ws_client(backend.websocket_url)
    ws.recv_json()
    delay = 2.0  # long: undelayed, a message must arrive well before it even on a loaded machine
    backend.set_delay(delay)
    began = time.monotonic()
    ids = backend.publish_many([{"type": "node_log", "data": {"i": i}} for i in range(5)])
    assert [ws.recv_json()["id"] for _ in range(5)] == ids
    assert time.monotonic() - began >= delay - 0.01
    backend.set_delay(0)
    began = time.monotonic()
    backend.publish({"type": "node_log", "data": {}})
    ws.recv_json()
    assert time.monotonic() - began < well_before(delay)


def test_drop_after_n_messages(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ws = ws_client(backend.websocket_url)
    ws.recv_json()
    backend.wait_for_connections(1)
    backend.drop_after(3)
    ids = backend.publish_many([{"type": "node_log", "data": {"i": i}} for i in range(10)])
    assert [ws.recv_json()["id"] for _ in range(3)] == ids[:3]
    with pytest.raises((ConnectionError, websocket.WebSocketConnectionClosedException)):
        ws.ws.recv_frame()
    backend.drop_after(None)


def test_accept_then_close(backend: Backend) -> None:
    backend.accept_then_close(True, code=1013)
    for _ in range(3):
        ws = websocket.create_connection(backend.websocket_url, timeout=5)
        frame = ws.recv_frame()
        assert frame.opcode == websocket.ABNF.OPCODE_CLOSE and int.from_bytes(frame.data[:2], "big") == 1013
        ws.shutdown()
    assert backend.ws_connects == 3
    backend.accept_then_close(False)
    ws = websocket.create_connection(backend.websocket_url, timeout=5)
    assert json.loads(ws.recv())["type"] == "subscription_ack"
    ws.close()


def recv_raw_ws(ws: RawWS) -> websocket.ABNF:
    return ws.ws.recv_frame()


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_send_bad_kinds_on_websocket(backend: Backend, ws_client: Callable[..., RawWS], kind: str) -> None:
    ws = ws_client(backend.websocket_url, skip_utf8_validation=True)
    ws.recv_json()
    backend.wait_for_connections(1)
    backend.send_bad(kind, size=300000, depth=100000)
    frame = recv_raw_ws(ws)
    data: bytes = frame.data
    if kind == "binary":
        assert frame.opcode == websocket.ABNF.OPCODE_BINARY
    else:
        assert frame.opcode == websocket.ABNF.OPCODE_TEXT
    check_bad_payload(kind, data)
    # the connection goes on: the next valid event arrives
    good = backend.publish({"type": "node_log", "data": {}})
    assert ws.recv_json()["id"] == good


def check_bad_payload(kind: str, data: bytes) -> None:
    if kind == "invalid_utf8":
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
        return
    if kind == "binary":
        assert data.startswith(b"\x00")
        return
    text = data.decode("utf-8")
    if kind in ("malformed_json",):
        with pytest.raises(ValueError):
            json.loads(text)
    elif kind == "non_object":
        assert isinstance(json.loads(text), list)
    elif kind == "unknown_type":
        msg = json.loads(text)
        assert msg["type"] == "mystery_message" and "id" not in msg
    elif kind == "wrong_field_types":
        msg = json.loads(text)
        assert isinstance(msg["id"], int) and isinstance(msg["data"], str)
    elif kind == "oversized":
        assert len(data) >= 300000 and json.loads(text)["type"] == "node_log"
    elif kind == "deep_nesting":
        assert text.count("[") == 100000
        with pytest.raises(RecursionError):
            json.loads(text)
    elif kind == "huge_int":
        assert "9" * 5000 in text
        with pytest.raises(ValueError):  # Python's int-digits limit (4300) rejects it
            json.loads(text)
    elif kind == "nan":
        assert "NaN" in text
        with pytest.raises(ValueError):
            json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


@pytest.mark.parametrize("kind", [k for k in BAD_KINDS if k != "binary"])
def test_send_bad_kinds_on_sse(backend: Backend, sse_client: Callable[..., RawSSE], kind: str) -> None:
    sse = sse_client(backend.event_source_url)
    sse.next_event()
    backend.wait_for_connections(1)
    backend.send_bad(kind, size=300000)
    block = sse.next_block()
    assert block is not None and block.startswith(b"data: ") and b"\nid:" not in block
    check_bad_payload(kind, block[len(b"data: ") :])
    good = backend.publish({"type": "node_log", "data": {}})
    assert sse.next_event()[0] == good  # type: ignore[index]


def test_send_bad_binary_honours_transports(backend: Backend, ws_client: Callable[..., RawWS], sse_client: Callable[..., RawSSE]) -> None:
    """``transports=("sse",)`` keeps the binary frame off every WebSocket (and SSE skips binary)."""
    ws = ws_client(backend.websocket_url)
    ws.recv_json()
    sse = sse_client(backend.event_source_url)
    sse.next_event()
    backend.wait_for_connections(2)
    backend.send_bad("binary", transports=("sse",))
    backend.publish_raw('{"type": "marker"}', transports=("websocket",))
    frame = recv_raw_ws(ws)
    assert frame.opcode == websocket.ABNF.OPCODE_TEXT, "the binary frame reached a WebSocket"
    assert json.loads(frame.data)["type"] == "marker"
    good = backend.publish({"type": "node_log", "data": {}})
    assert sse.next_event()[0] == good  # type: ignore[index]
    assert ws.recv_json()["id"] == good


def test_send_bad_unknown_kind(backend: Backend) -> None:
    with pytest.raises(ValueError):
        backend.send_bad("spicy")


def test_publish_raw(backend: Backend, ws_client: Callable[..., RawWS], sse_client: Callable[..., RawSSE]) -> None:
    ws = ws_client(backend.websocket_url)
    ws.recv_json()
    sse = sse_client(backend.event_source_url)
    sse.next_event()
    backend.wait_for_connections(2)
    backend.publish_raw("line1\nline2", sse_bytes=b"event: workflow_started\ndata: {\"data\": {}}\n\n")
    assert ws.ws.recv() == "line1\nline2"
    assert sse.next_block() == b'event: workflow_started\ndata: {"data": {}}'
    assert backend.logged_events() == []


def test_restart_same_port_keeps_log_and_counter(ws_client: Callable[..., RawWS]) -> None:
    with Backend(pace=0.0) as backend:
        port = backend.port
        ws = ws_client(backend.websocket_url)
        ws.recv_json()
        ids = backend.publish_many([{"type": "node_log", "data": {"i": i}} for i in range(5)])
        assert [ws.recv_json()["id"] for _ in range(5)] == ids
        backend.restart()
        frame = ws.ws.recv_frame()
        assert frame.opcode == websocket.ABNF.OPCODE_CLOSE and int.from_bytes(frame.data[:2], "big") == 1012
        assert backend.port == port
        ws2 = ws_client(backend.websocket_url, header=[f"Last-Event-ID: {ids[1]}"])
        assert ws2.recv_json()["data"]["replayed"] == 3
        assert [ws2.recv_json()["id"] for _ in range(3)] == ids[2:]
        assert backend.publish({"type": "node_log", "data": {}}) == "e-6"


def test_restart_mid_workflow_carries_on(ws_client: Callable[..., RawWS]) -> None:
    with Backend(pace=0.002) as backend:
        backend.add_workflow("long", ["a", "b", "c"], progress_steps=20)
        backend.execute_command("start_workflow", "long")
        backend.wait_for_event(lambda e: e.get("nodeId") == "b")
        backend.restart()
        backend.wait_for_workflow("long", "completed")
        results = [e["nodeId"] for e in backend.logged_events() if e["type"] == "node_result"]
        assert results[-2:] == ["b", "c"] and results[0] == "a"


def test_stop_ends_every_thread_and_connection(ws_client: Callable[..., RawWS]) -> None:
    before = {t.ident for t in threading.enumerate()}
    backend = Backend().start()
    ws = ws_client(backend.websocket_url)
    ws.recv_json()
    sse = RawSSE(backend.event_source_url)
    sse.next_event()
    port = backend.port
    backend.stop()
    assert {t.ident for t in threading.enumerate()} <= before
    frame = ws.ws.recv_frame()
    assert frame.opcode == websocket.ABNF.OPCODE_CLOSE and int.from_bytes(frame.data[:2], "big") == 1001
    assert sse.next_block() is None
    sse.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    backend.stop()  # idempotent


def test_heartbeats_on_ws_and_sse(ws_client: Callable[..., RawWS], sse_client: Callable[..., RawSSE]) -> None:
    with Backend(heartbeat_interval=0.05) as backend:
        ws = ws_client(backend.websocket_url)
        ws.recv_json()
        hb = ws.recv_json()
        assert hb["type"] == "heartbeat" and hb["data"]["ping"].startswith("hb-") and "id" not in hb
        ws.send_json({"type": "pong", "data": {"pingId": hb["data"]["ping"]}})
        backend.wait_until(lambda: len(backend.pongs) == 1, what="pong")
        sse = sse_client(backend.event_source_url)
        sse.next_event()
        assert sse.next_block() == b": ping"


def test_sse_retry_option(sse_client: Callable[..., RawSSE]) -> None:
    with Backend(sse_retry_ms=1500) as backend:
        sse = sse_client(backend.event_source_url)
        assert sse.next_block() == b"retry: 1500"


def test_tls_with_trustme(ws_client: Callable[..., RawWS]) -> None:
    trustme = pytest.importorskip("trustme")
    import ssl

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    with Backend(ssl_context=server_ctx) as backend, ca.cert_pem.tempfile() as ca_file:
        assert backend.base_url.startswith("https://") and backend.websocket_url.startswith("wss://")
        ws = ws_client(backend.websocket_url, sslopt={"ca_certs": ca_file})
        assert ws.recv_json()["type"] == "subscription_ack"
        assert requests.get(backend.health_url, verify=ca_file, timeout=5).json()["status"] == "healthy"
        sse = RawSSE(backend.event_source_url, verify=ca_file)
        try:
            assert sse.next_event()[1]["type"] == "subscription_ack"  # type: ignore[index]
        finally:
            sse.close()
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(backend.health_url, timeout=5)
        with pytest.raises(ssl.SSLError):
            websocket.create_connection(backend.websocket_url, timeout=5)
