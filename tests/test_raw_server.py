"""The raw test server itself (magk_client.testing.raw): close() ends every thread it started, with no
thread exception, even when a connection was accepted an instant before; a handler's failure is never
lost; the WebSocket and TCP scripts and the frame encoder do what the tests rely on."""

from __future__ import annotations

import errno
import socket
import struct
import threading
from typing import Any, Iterator, List

import pytest
import requests
import websocket

from magk_client.testing.raw import (
    OP_TEXT,
    Conn,
    RawServer,
    Request,
    echo,
    reply,
    sse,
    ws_frame,
    ws_script,
)


@pytest.fixture()
def thread_errors() -> Iterator[List[Any]]:
    errors: List[Any] = []
    previous = threading.excepthook
    threading.excepthook = errors.append
    try:
        yield errors
    finally:
        threading.excepthook = previous


def test_close_right_after_a_connect_ends_every_handler_cleanly(thread_errors: List[Any]) -> None:
    for _ in range(200):
        server = RawServer([reply(200, b"ok")])
        client = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        server.close()
        client.close()
        assert not [e for e in server.errors if getattr(e, "errno", None) == errno.EBADF]
        alive = [t.name for t in threading.enumerate() if t.name.startswith("raw-server") and t.is_alive()]
        assert alive == []
    assert [(e.exc_type, e.exc_value) for e in thread_errors] == []


def test_close_ends_a_held_stream_and_a_request_in_progress(thread_errors: List[Any]) -> None:
    server = RawServer([sse([b"data: x\n\n"], finish="hold")])
    half = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    half.sendall(b"GET /events/realtime HTTP/1.1\r\n")  # the head never ends: its handler waits in recv
    held = socket.create_connection(("127.0.0.1", server.port), timeout=5)  # accepted after ``half``
    held.sendall(b"GET /events/realtime HTTP/1.1\r\nHost: x\r\n\r\n")
    head = b""
    while not head.endswith(b"data: x\n\n"):
        chunk = held.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200") and len(server.wait_requests(1)) == 1
    server.close()
    assert held.recv(4096) == b"" and half.recv(4096) == b""
    held.close()
    half.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("raw-server") and t.is_alive()]
    assert thread_errors == []


def test_websocket_script_reads_the_clients_frames_and_join_returns_its_result() -> None:
    def script(conn: Conn) -> Any:
        conn.send(ws_frame(OP_TEXT, b"hi"))
        return conn.read_frame(), conn.read_close_code()

    with RawServer(ws_script(script)) as server:
        client = websocket.create_connection(server.ws_url(), timeout=5)
        assert client.recv() == "hi"
        client.send("back")
        client.send_close(4321)
        assert server.join() == ((OP_TEXT, b"back", True), 4321)
        assert server.close_codes == [4321] and server.accepted == 1
        assert server.wait_requests(1)[0].line == "GET /ws/realtime HTTP/1.1"
        client.shutdown()


def test_a_handler_failure_fails_close_unless_join_reported_it() -> None:
    def broken(conn: Conn, req: Request) -> None:
        raise AssertionError("the handler saw something wrong")

    for joined in (False, True):
        server = RawServer([broken])
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url(), timeout=5)
        if joined:
            with pytest.raises(AssertionError, match="something wrong"):
                server.join()
            server.close()  # already reported
        else:
            with pytest.raises(AssertionError, match="handler failed"):
                server.close()
        assert len(server.errors) == 1


def test_tcp_echo_records_each_connections_reads() -> None:
    with RawServer(tcp=echo) as server:
        for word in (b"first", b"second"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as client:
                client.sendall(word)
                got = b""
                while len(got) < len(word):
                    got += client.recv(64)
                assert got == word
                client.shutdown(socket.SHUT_WR)
                assert client.recv(64) == b""
        assert server.wait(lambda: server.finished == 2)
        assert [bytes(r) for r in server.received] == [b"first", b"second"]
        assert [sum(s) for s in server.recv_sizes] == [5, 6] and server.total_received() == 11
        assert server.errors == [] and server.requests == []


@pytest.mark.parametrize(
    ("size", "head"),
    [(0, b"\x81\x00"), (125, b"\x81\x7d"), (126, b"\x81\x7e\x00\x7e"), (65536, b"\x81\x7f" + struct.pack("!Q", 65536))],
    ids=["empty", "7-bit", "16-bit", "64-bit"],
)
def test_ws_frame_length_forms(size: int, head: bytes) -> None:
    assert ws_frame(OP_TEXT, b"a" * size) == head + b"a" * size


def test_ws_frame_broken_on_purpose() -> None:
    assert ws_frame(OP_TEXT, b"ab", fin=False, rsv=4) == b"\x41\x02ab"
    assert ws_frame(OP_TEXT, b"abc", length=2**62)[:10] == b"\x81\x7f" + struct.pack("!Q", 2**62)
    masked = ws_frame(OP_TEXT, b"abcd", masked=True, mask_key=b"\x01\x02\x03\x04")
    assert masked[:6] == b"\x81\x84\x01\x02\x03\x04"
    assert bytes(b ^ masked[2 + i % 4] for i, b in enumerate(masked[6:])) == b"abcd"
