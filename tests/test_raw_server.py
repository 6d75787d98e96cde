"""The raw test server itself: close() ends every thread it started, with no thread exception, even
when a connection was accepted an instant before."""

from __future__ import annotations

import socket
import threading
from typing import Any, Iterator, List

import pytest

from magk_client.testing.raw import RawServer, reply, sse


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
