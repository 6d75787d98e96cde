"""Scripted SSE responses: exact bytes, statuses and framings for the SSE parser's WHATWG tests."""

from __future__ import annotations

import socket

import pytest
import requests

from magk_client.testing import Backend


def raw_get(backend: Backend, path: str = "/events/realtime") -> bytes:
    """The whole HTTP response, as bytes, read until the server closes."""
    with socket.create_connection((backend.host, backend.port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        out = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            out += chunk


def test_chunked_script_exact_body(backend: Backend) -> None:
    body = b"\xef\xbb\xbfdata:a\r\n\r\ndata: b\rid: 7\r\r: c\n"
    backend.sse_script([body[:5], body[5:9], body[9:]])
    r = requests.get(backend.event_source_url, timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/event-stream"
    assert r.headers.get("Transfer-Encoding") == "chunked"
    assert r.content == body
    assert backend.connections_log[-1]["outcome"] == "scripted 200"


def test_close_delimited_script(backend: Backend) -> None:
    backend.sse_script([b"data: 1\n\n", b"data: 2\n\n"], chunked=False)
    raw = raw_get(backend)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower() and b"content-length" not in head.lower()
    assert body == b"data: 1\n\ndata: 2\n\n"


@pytest.mark.parametrize(
    ("status", "ctype"),
    [(204, "text/event-stream"), (404, "text/event-stream"), (503, "text/event-stream"), (200, "text/x-bogus"), (200, "text/event-stream; charset=utf-8")],
)
def test_status_and_content_type(backend: Backend, status: int, ctype: str) -> None:
    backend.sse_script(b"" if status == 204 else b"data: x\n\n", status=status, content_type=ctype)
    r = requests.get(backend.event_source_url, timeout=5)
    assert r.status_code == status
    if status != 204:
        assert r.headers["Content-Type"] == ctype


def test_abort_mid_stream(backend: Backend) -> None:
    backend.sse_script([b"data: partial"], abort=True)
    r = requests.get(backend.event_source_url, stream=True, timeout=5)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        b"".join(r.iter_content(None))


def test_scripts_queue_in_order_then_normal_stream(backend: Backend) -> None:
    backend.sse_script(b"data: first\n\n", headers={"Retry-After": "2"})
    backend.sse_script(b"", status=500, content_type="text/plain", times=2)
    first = requests.get(backend.event_source_url, timeout=5)
    assert first.content == b"data: first\n\n" and first.headers["Retry-After"] == "2"
    assert [requests.get(backend.event_source_url, timeout=5).status_code for _ in range(2)] == [500, 500]
    normal = requests.get(backend.event_source_url, stream=True, timeout=5)
    assert normal.status_code == 200 and normal.headers["X-Connection-Id"].startswith("c-")
    normal.close()
    assert backend.counters["sse_attempts"] == 4


def test_chunk_delay_and_hold_open(backend: Backend) -> None:
    backend.sse_script([b"data: a\n\n", b"data: b\n\n"], chunk_delay=0.05, hold_open=True)
    r = requests.get(backend.event_source_url, stream=True, timeout=5)
    it = r.iter_content(None)
    got = b""
    while got != b"data: a\n\ndata: b\n\n":
        got += next(it)
    r.close()
    backend.wait_until(lambda: not backend.open_connections)


def test_script_records_last_event_id(backend: Backend) -> None:
    backend.sse_script(b"")
    requests.get(backend.event_source_url, headers={"Last-Event-ID": "7"}, timeout=5)
    assert backend.connections_log[-1]["last_event_id"] == "7"
