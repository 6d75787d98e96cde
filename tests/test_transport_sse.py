"""SSETransport over real sockets on 127.0.0.1: request headers, response validation,
framing and latency, failures and their classification, close() from another thread,
send() over POST, TLS (trustme), limits, redaction, and the reference Backend."""

from __future__ import annotations

import gzip
import json
import logging
import os
import socket
import ssl
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

import pytest
import trustme
from timings import well_before, within

from magk_client.errors import (
    AuthError,
    MagkConnectionError,
    MagkTimeoutError,
    MessageTooLargeError,
    NetworkError,
    ProtocolError,
    ServerError,
    TransportClosed,
)
from magk_client.models import ConnectionType
from magk_client.testing.raw import Conn, RawServer, Request, Step, reply, sse
from magk_client.transports.base import SSEEvent, TransportOptions
from magk_client.transports.sse import SSETransport

TOKEN = "tok-SECRET-4242"
pytestmark = [pytest.mark.timeout(30), pytest.mark.magk_backend(token=TOKEN, send_ack=False)]
API_KEY = "key-SECRET-9999"
AUTH = {"Authorization": f"Bearer {TOKEN}", "X-API-Key": API_KEY}


#: how soon close() ends a blocked receive() or open(): generous, and far below the timeouts that
#: would otherwise end the wait (connect 10 s and more, read 40 s, or none)
PROMPT = well_before(10.0)


def opts(url: str, **kw: Any) -> TransportOptions:
    kw.setdefault("read_timeout", 5.0)
    kw.setdefault("connect_timeout", 5.0)
    return TransportOptions(url=url, **kw)


def data(batch: List[Any]) -> List[str]:
    return [e.data for e in batch if isinstance(e, SSEEvent) and e.dispatch]


def wait_reading(t: SSETransport, timeout: float = 5.0) -> None:
    """Wait (bounded) until a receive() in another thread is inside its socket read."""
    deadline = time.monotonic() + timeout
    while not t._reading:  # white-box: the flag close() coordinates with
        assert time.monotonic() < deadline, "reader never started reading"
        time.sleep(0.002)


def in_thread(fn: Callable[[], object], name: str) -> Tuple[threading.Thread, threading.Event, List[BaseException]]:
    """Start ``fn()`` on a thread; returns the thread, an event set when fn returned or raised, and
    what it raised."""
    ended = threading.Event()
    outcome: List[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            outcome.append(exc)
        ended.set()

    th = threading.Thread(target=run, name=name)
    th.start()
    return th, ended, outcome


def receive_in_thread(t: SSETransport) -> Tuple[threading.Thread, threading.Event, List[BaseException]]:
    """Start one ``t.receive()`` on a thread (:func:`in_thread`) and wait until it is inside its socket read."""
    started = in_thread(t.receive, "test-sse-reader")
    wait_reading(t)
    return started


# --- the request ---------------------------------------------------------------------------


def test_request_headers_auth_accept_and_last_event_id(raw_servers: Any, sse_transports: Any) -> None:
    srv = raw_servers([sse([]), sse([])])
    t = sse_transports(srv.url(), headers={**AUTH, "X-Extra": "1"})
    assert t.connection_type is ConnectionType.EVENTSOURCE
    t.open(last_event_id="e-41")
    t2 = sse_transports(srv.url(), headers=AUTH)
    t2.open()
    first, second = srv.wait_requests(2)
    assert first.method == "GET" and first.path == "/events/realtime"
    h = first.headers
    assert h["authorization"] == f"Bearer {TOKEN}"
    assert h["x-api-key"] == API_KEY and h["x-extra"] == "1"
    assert h["accept"] == "text/event-stream"
    assert h["cache-control"] == "no-cache"
    assert h["last-event-id"] == "e-41"
    assert "last-event-id" not in second.headers


def test_open_twice_and_open_after_close_are_refused(raw_servers: Any, sse_transports: Any) -> None:
    srv = raw_servers([sse([], finish="hold")])
    t = sse_transports(srv.url())
    t.open()
    with pytest.raises(ProtocolError):
        t.open()
    t3 = sse_transports(srv.url())
    t3.close()
    with pytest.raises(TransportClosed):
        t3.open()
    assert len(srv.requests) == 1


# --- response validation ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_401_403_are_auth_errors(raw_servers: Any, sse_transports: Any, status: int) -> None:
    srv = raw_servers([reply(status, b'{"error":"nope"}')])
    t = sse_transports(srv.url(), headers=AUTH)
    with pytest.raises(AuthError) as ei:
        t.open()
    assert ei.value.terminal and ei.value.status == status


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [(503, "3", 3.0), (500, None, None), (429, "120", 120.0), (502, "soon", None)],
)
def test_5xx_and_429_are_server_errors_with_retry_after(
    raw_servers: Any, sse_transports: Any, status: int, retry_after: Optional[str], expected: Optional[float]
) -> None:
    headers = [("Retry-After", retry_after)] if retry_after else []
    srv = raw_servers([reply(status, b"busy", headers)])
    t = sse_transports(srv.url())
    with pytest.raises(ServerError) as ei:
        t.open()
    assert not ei.value.terminal
    assert ei.value.status == status
    assert ei.value.retry_after == expected


def test_retry_after_as_http_date(raw_servers: Any, sse_transports: Any) -> None:
    from email.utils import formatdate

    srv = raw_servers([reply(503, b"", [("Retry-After", formatdate(time.time() + 60, usegmt=True))])])
    t = sse_transports(srv.url())
    with pytest.raises(ServerError) as ei:
        t.open()
    assert ei.value.retry_after is not None and 55 <= ei.value.retry_after <= 61


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_refused_and_credentials_never_reach_the_other_host(
    raw_servers: Any, sse_transports: Any, status: int
) -> None:
    other = raw_servers([sse([b"data: stolen\n\n"])])
    srv = raw_servers([reply(status, b"", [("Location", other.url() + "?token=" + TOKEN)])])
    t = sse_transports(srv.url(), headers=AUTH)
    with pytest.raises(ProtocolError) as ei:
        t.open()
    assert ei.value.terminal and ei.value.status == status
    assert "redirect refused" in str(ei.value)
    assert TOKEN not in str(ei.value)
    assert other.requests == []


def test_content_type_with_charset_is_accepted(raw_servers: Any, sse_transports: Any) -> None:
    srv = raw_servers([sse([b"data: ok\n\n"], content_type="text/event-stream; charset=utf-8")])
    t = sse_transports(srv.url())
    t.open()
    assert data(t.receive()) == ["ok"]


def test_non_200_2xx_is_a_terminal_protocol_error(raw_servers: Any, sse_transports: Any) -> None:
    srv = raw_servers([reply(202, b"data: x\n\n", [("Content-Type", "text/event-stream")])])
    t = sse_transports(srv.url())
    with pytest.raises(ProtocolError) as ei:
        t.open()
    assert ei.value.terminal and ei.value.status == 202


# --- framing and latency (docs/faults.rst row 22) --------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["close-delimited", "chunked"])
def test_each_event_is_handed_over_before_the_next_one_is_sent(raw_servers: Any, sse_transports: Any, chunked: bool) -> None:
    got: List[threading.Event] = [threading.Event() for _ in range(3)]
    server_saw: List[bool] = []
    steps: List[Step] = []
    for i in range(3):
        steps.append(b'id: %d\ndata: {"n": %d}\n\n' % (i, i))
        steps.append(lambda i=i: server_saw.append(got[i].wait(5)))  # type: ignore[misc]
    srv = raw_servers([sse(steps, chunked=chunked)])
    t = sse_transports(srv.url())
    t.open()
    latencies = []
    for i in range(3):
        start = time.monotonic()
        batch = t.receive()
        latencies.append(time.monotonic() - start)
        # Only event i exists yet: the server sends i+1 after we signal.
        assert [(json.loads(e.data)["n"], e.id) for e in batch] == [(i, str(i))]  # type: ignore[union-attr]
        got[i].set()
    with pytest.raises(TransportClosed):
        t.receive()
    assert server_saw == [True, True, True]
    assert max(latencies) < well_before(5.0)  # not until the server's 5 s wait; the synchronisation above is the real check


def test_content_length_body_is_read_to_its_end(raw_servers: Any, sse_transports: Any) -> None:
    srv = raw_servers([reply(200, b"data: a\n\ndata: b\n\n", [("Content-Type", "text/event-stream")])])
    t = sse_transports(srv.url())
    t.open()
    items: List[Any] = []
    with pytest.raises(TransportClosed) as ei:
        while True:
            items += t.receive()
    assert data(items) == ["a", "b"] and not ei.value.terminal


@pytest.mark.parametrize("chunked", [False, True], ids=["close-delimited", "chunked"])
def test_a_compressed_body_is_decoded_although_identity_was_asked(
    raw_servers: Any, sse_transports: Any, chunked: bool
) -> None:
    body = b"".join(b'id: %d\ndata: {"n": %d}\n\n' % (i, i) for i in range(200))
    packed = gzip.compress(body)
    steps: List[Step] = [packed[i : i + 500] for i in range(0, len(packed), 500)]
    srv = raw_servers([sse(steps, headers=[("Content-Encoding", "gzip")], chunked=chunked)])
    t = sse_transports(srv.url())
    t.open()
    items: List[Any] = []
    with pytest.raises(TransportClosed):
        while True:
            items += t.receive()
    assert [json.loads(e.data)["n"] for e in items] == list(range(200))
    assert t.last_event_id == "199"


# --- failures while streaming --------------------------------------------------------------


def test_cut_chunked_stream_is_a_reconnectable_network_error(raw_servers: Any, sse_transports: Any) -> None:
    srv = raw_servers([sse([b"id: 1\ndata: a\n\n", b"data: par"], chunked=True, finish="cut")])
    t = sse_transports(srv.url())
    t.open()
    items: List[Any] = []
    with pytest.raises(NetworkError) as ei:
        while True:
            items += t.receive()
    assert data(items) == ["a"]  # the partial event is discarded
    assert not isinstance(ei.value, TransportClosed) and not ei.value.terminal
    assert t.last_event_id == "1"
    with pytest.raises(NetworkError):  # stays failed
        t.receive()


def test_connection_reset_mid_stream_is_a_network_error(raw_servers: Any, sse_transports: Any) -> None:
    def handler(conn: Conn, req: Request) -> None:
        conn.head(200, [("Content-Type", "text/event-stream")])
        conn.send(b"data: a\n\n")
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    srv = raw_servers([handler])
    t = sse_transports(srv.url())
    t.open()
    items: List[Any] = []
    with pytest.raises(MagkConnectionError) as ei:
        while True:
            items += t.receive()
    assert data(items) == ["a"]
    assert isinstance(ei.value, NetworkError) and not ei.value.terminal


def test_silent_stream_times_out(raw_servers: Any, sse_transports: Any) -> None:
    srv = raw_servers([sse([b"data: a\n\n"], chunked=True, finish="hold")])
    t = sse_transports(srv.url(), read_timeout=0.3)
    t.open()
    assert data(t.receive()) == ["a"]
    start = time.monotonic()
    with pytest.raises(MagkTimeoutError) as ei:
        t.receive()
    assert 0.25 <= time.monotonic() - start < within(0.3)  # the read timeout
    assert "silent" in str(ei.value)


def test_no_response_headers_within_read_timeout(raw_servers: Any, sse_transports: Any) -> None:
    hold = threading.Event()
    srv = raw_servers([lambda conn, req: hold.wait(10)])
    t = sse_transports(srv.url(), read_timeout=0.3)
    try:
        with pytest.raises(MagkTimeoutError):
            t.open()
    finally:
        hold.set()


def test_connection_refused_is_a_network_error(sse_transports: Any) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    t = sse_transports(f"http://127.0.0.1:{port}/events?token={TOKEN}", headers=AUTH)
    with pytest.raises(NetworkError) as ei:
        t.open()
    assert not ei.value.terminal
    assert "ECONNREFUSED" in str(ei.value)
    assert TOKEN not in str(ei.value) and TOKEN not in repr(ei.value)


def test_connect_timeout(sse_transports: Any) -> None:
    # A listener whose accept queue is full and never accepted: SYNs go unanswered.
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            fillers.append(c)
        t = sse_transports(f"http://127.0.0.1:{port}/events", connect_timeout=0.3)
        start = time.monotonic()
        with pytest.raises((MagkTimeoutError, NetworkError)) as ei:
            t.open()
        if not isinstance(ei.value, MagkTimeoutError):
            pytest.skip(f"this kernel answered the SYN: {ei.value}")
        assert time.monotonic() - start < within(0.3)  # the connect timeout
    finally:
        for c in fillers:
            c.close()
        lst.close()


# --- close() ---------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["close-delimited", "chunked"])
def test_close_from_another_thread_unblocks_receive(raw_servers: Any, sse_transports: Any, chunked: bool) -> None:
    srv = raw_servers([sse([], chunked=chunked, finish="hold")])
    t = sse_transports(srv.url(), read_timeout=None)  # no timeout would ever save it
    t.open()
    th, ended, outcome = receive_in_thread(t)
    start = time.monotonic()
    t.close()
    close_took = time.monotonic() - start
    assert ended.wait(PROMPT), "receive() still blocked after close()"
    th.join(PROMPT)
    assert close_took < PROMPT
    assert len(outcome) == 1 and isinstance(outcome[0], TransportClosed)
    assert t.closed and t._response is None  # released by the reader on its way out
    t.close()  # idempotent
    with pytest.raises(TransportClosed):
        t.receive()


def open_in_thread(t: SSETransport) -> Tuple[threading.Thread, threading.Event, List[BaseException]]:
    """Start ``t.open()`` on a thread (:func:`in_thread`)."""
    return in_thread(t.open, "test-sse-opener")


def assert_close_ends_open(
    t: SSETransport, opening: Tuple[threading.Thread, threading.Event, List[BaseException]], where: str
) -> BaseException:
    """``t.close()`` returns at once and the ``open()`` of ``opening`` (:func:`open_in_thread`),
    blocked ``where``, ends with :class:`TransportClosed`, which is returned."""
    th, ended, outcome = opening
    start = time.monotonic()
    t.close()
    assert time.monotonic() - start < PROMPT
    assert ended.wait(PROMPT), f"open() still blocked {where} after close()"
    th.join(PROMPT)
    assert len(outcome) == 1 and isinstance(outcome[0], TransportClosed), outcome
    return outcome[0]


def test_close_from_another_thread_interrupts_the_wait_for_response_headers(raw_servers: Any, sse_transports: Any) -> None:
    # The server accepts and reads the request, and never answers the headers (issue 8 item 4).
    answer = threading.Event()
    srv = raw_servers([lambda conn, req: answer.wait(60)])
    t = sse_transports(srv.url(), read_timeout=40.0, connect_timeout=10.0)
    try:
        opening = open_in_thread(t)
        srv.wait_requests(1)  # the request is sent: open() now waits for the response headers
        # Fails if urllib3 stops setting HTTPConnection.sock on connect (sse_http._reporting_pools)
        assert t._watch.watching, "the socket under the request was never reported"
        error = assert_close_ends_open(t, opening, "waiting for the response headers")
        assert "closed while connecting" in str(error)
        assert error.__context__ is None and error.__cause__ is None
    finally:
        answer.set()


def test_close_from_another_thread_interrupts_the_tls_handshake(sse_transports: Any) -> None:
    # A listener that accepts and never speaks TLS: the handshake waits (up to connect_timeout).
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    accepted: List[socket.socket] = []
    try:
        t = sse_transports(f"https://127.0.0.1:{lst.getsockname()[1]}/events", connect_timeout=30.0, read_timeout=40.0)
        opening = open_in_thread(t)
        conn, _ = lst.accept()
        accepted.append(conn)
        assert conn.recv(5)  # the ClientHello has been sent: the handshake is waiting on us
        assert_close_ends_open(t, opening, "in the TLS handshake")
    finally:
        for c in accepted:
            c.close()
        lst.close()


def test_close_racing_with_connect_never_leaves_open_blocked(raw_servers: Any, sse_transports: Any) -> None:
    # close() at every moment of open(): whatever the interleaving, open() ends promptly.
    answer = threading.Event()
    srv = raw_servers([lambda conn, req: answer.wait(60)])
    try:
        for _ in range(20):
            t = sse_transports(srv.url(), read_timeout=40.0)
            th, ended, outcome = open_in_thread(t)
            t.close()
            assert ended.wait(PROMPT), "open() still blocked after close()"
            th.join(PROMPT)
            assert len(outcome) == 1 and isinstance(outcome[0], TransportClosed), outcome
    finally:
        answer.set()


@pytest.mark.parametrize("chunked", [False, True], ids=["close-delimited", "chunked"])
def test_close_unblocks_receive_through_urllib3_if_the_socket_was_never_reported(
    raw_servers: Any, sse_transports: Any, chunked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fallback for a urllib3 that no longer reports its sockets: HTTPResponse.shutdown().
    from magk_client.transports.sse_http import SocketWatch

    monkeypatch.setattr(SocketWatch, "seen", lambda self, sock: None)
    srv = raw_servers([sse([], chunked=chunked, finish="hold")])
    t = sse_transports(srv.url(), read_timeout=None)
    t.open()
    assert not t._watch.watching
    th, ended, outcome = receive_in_thread(t)
    t.close()
    assert ended.wait(PROMPT), "receive() still blocked after close()"
    th.join(PROMPT)
    assert len(outcome) == 1 and isinstance(outcome[0], TransportClosed)


def test_close_never_raises_in_any_state(raw_servers: Any) -> None:
    t = SSETransport(opts("http://127.0.0.1:9/x"))
    t.close()
    t.close(1001)
    srv = raw_servers([sse([b"data: a\n\n"])])
    t2 = SSETransport(opts(srv.url()))
    t2.open()
    t2.close()
    t2.close()
    with pytest.raises(TransportClosed):
        t2.receive()


# --- send() ----------------------------------------------------------------------------------


def test_send_posts_json_with_auth(raw_servers: Any, sse_transports: Any) -> None:
    srv = raw_servers([reply(202), reply(204), reply(200, b'{"ok":true}')])
    t = sse_transports("http://127.0.0.1:1/events", headers=AUTH, messages_url=srv.url("/messages"))
    msgs = [json.dumps({"type": "pong", "data": {"pingId": str(i)}, "n": "é"}) for i in range(3)]
    for m in msgs:
        t.send(m)
    reqs = srv.wait_requests(3)
    for req, m in zip(reqs, msgs):
        assert req.method == "POST" and req.path == "/messages"
        assert req.headers["content-type"] == "application/json"
        assert req.headers["authorization"] == f"Bearer {TOKEN}"
        assert req.headers["x-api-key"] == API_KEY
        assert req.body == m.encode("utf-8")


def test_send_from_many_threads_is_serialised(raw_servers: Any, sse_transports: Any) -> None:
    srv = raw_servers([reply(204)])
    t = sse_transports("http://127.0.0.1:1/events", messages_url=srv.url("/messages"))
    errors: List[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(5):
                t.send(json.dumps({"k": k, "i": i}))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    assert errors == []
    bodies = [json.loads(r.body) for r in srv.wait_requests(20)]
    assert sorted((b["k"], b["i"]) for b in bodies) == [(k, i) for k in range(4) for i in range(5)]


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (401, AuthError),
        (403, AuthError),
        (500, ServerError),
        (503, ServerError),
        (302, ProtocolError),
        (400, ProtocolError),
    ],
)
def test_send_errors_are_classified(raw_servers: Any, sse_transports: Any, status: int, exc: type) -> None:
    srv = raw_servers([reply(status, b"no", [("Location", "http://127.0.0.2/")])])
    t = sse_transports("http://127.0.0.1:1/events", headers=AUTH, messages_url=srv.url("/messages"))
    with pytest.raises(MagkConnectionError) as ei:
        t.send("{}")
    assert type(ei.value) is exc and ei.value.status == status
    assert TOKEN not in str(ei.value)


def test_send_without_messages_url_and_after_close(sse_transports: Any) -> None:
    t = sse_transports("http://127.0.0.1:1/events")
    with pytest.raises(ProtocolError) as ei:
        t.send("{}")
    assert "messages_url" in str(ei.value)
    t2 = sse_transports("http://127.0.0.1:1/events", messages_url="http://127.0.0.1:1/messages")
    t2.close()
    with pytest.raises(TransportClosed):
        t2.send("{}")


def test_send_network_error_and_timeout(raw_servers: Any, sse_transports: Any) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    t = sse_transports("http://127.0.0.1:1/events", messages_url=f"http://127.0.0.1:{port}/messages")
    with pytest.raises(NetworkError):
        t.send("{}")
    hold = threading.Event()
    srv = raw_servers([lambda conn, req: hold.wait(10)])
    t2 = sse_transports("http://127.0.0.1:1/events", messages_url=srv.url("/messages"), send_timeout=0.3)
    start = time.monotonic()
    try:
        with pytest.raises(MagkTimeoutError):
            t2.send("{}")
        assert time.monotonic() - start < within(0.3)  # the send timeout
    finally:
        hold.set()


# --- limits (docs/faults.rst row 18) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "flood",
    [b"data: " + b"x" * 1000, b"data: x\n" * 100, b":" + b"c" * 1000],
    ids=["endless-line", "endless-data-lines", "endless-comment"],
)
def test_oversized_event_or_line_drops_the_connection(raw_servers: Any, sse_transports: Any, flood: bytes) -> None:
    srv = raw_servers([sse([b"data: small\n\n", *([flood] * 200)], chunked=True, finish="hold")])
    t = sse_transports(srv.url(), max_message_size=10_000)
    t.open()
    items: List[Any] = []
    with pytest.raises(MessageTooLargeError) as ei:
        while True:
            items += t.receive()
            assert t._decoder.buffered <= 10_000 + 4096 + 65536  # bounded before the parser
    assert data(items) == ["small"]
    assert "max_message_size" in str(ei.value)
    assert t._response is None  # connection dropped
    with pytest.raises(MessageTooLargeError):
        t.receive()


def test_event_at_the_limit_is_accepted(raw_servers: Any, sse_transports: Any) -> None:
    payload = b"y" * 10_000
    srv = raw_servers([sse([b"id: 1\nevent: big\ndata: " + payload + b"\n\n"])])
    t = sse_transports(srv.url(), max_message_size=10_000)
    t.open()
    batch = t.receive()
    assert [(e.data, e.event) for e in batch] == [(payload.decode(), "big")]  # type: ignore[union-attr]


# --- TLS (docs/faults.rst row 33) -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_server(raw_servers: Callable[..., RawServer], ca: trustme.CA, *handlers: Any, host: str = "localhost") -> RawServer:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(ctx)
    return raw_servers(list(handlers), ssl_context=ctx)


def client_ctx(ca: Optional[trustme.CA]) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca is not None:
        ca.configure_trust(ctx)
    return ctx


def test_tls_accepted_with_the_right_ca(raw_servers: Any, sse_transports: Any, ca: trustme.CA) -> None:
    srv = tls_server(raw_servers, ca, sse([b"data: secure\n\n"]))
    t = sse_transports(srv.url(), ssl_context=client_ctx(ca))
    t.open()
    assert data(t.receive()) == ["secure"]


@pytest.mark.parametrize("ctx_kind", ["system-cas", "none"])
def test_tls_refused_without_the_ca_and_terminal(raw_servers: Any, sse_transports: Any, ca: trustme.CA, ctx_kind: str) -> None:
    srv = tls_server(raw_servers, ca, sse([b"data: x\n\n"]))
    ctx = client_ctx(None) if ctx_kind == "system-cas" else None
    t = sse_transports(srv.url(), ssl_context=ctx, headers=AUTH)
    with pytest.raises(NetworkError) as ei:
        t.open()
    assert ei.value.terminal
    assert "certificate verification failed" in str(ei.value)
    assert TOKEN not in str(ei.value)


def test_tls_hostname_mismatch_is_refused(raw_servers: Any, sse_transports: Any, ca: trustme.CA) -> None:
    srv = tls_server(raw_servers, ca, sse([b"data: x\n\n"]), host="other.example")
    t = sse_transports(srv.url(), ssl_context=client_ctx(ca))
    with pytest.raises(NetworkError) as ei:
        t.open()
    assert ei.value.terminal and "certificate verification failed" in str(ei.value)


@pytest.mark.parametrize("var", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_tls_env_ca_bundle_cannot_override_the_context(
    raw_servers: Any, sse_transports: Any, ca: trustme.CA, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    other_ca = trustme.CA()
    other_pem = tmp_path / "other.pem"
    other_ca.cert_pem.write_to_path(str(other_pem))
    right_pem = tmp_path / "right.pem"
    ca.cert_pem.write_to_path(str(right_pem))
    srv = tls_server(raw_servers, ca, sse([b"data: ok\n\n"]), sse([b"data: ok\n\n"]))

    # The env points elsewhere: the SDK's context (with the right CA) still wins.
    monkeypatch.setenv(var, str(other_pem))
    t = sse_transports(srv.url(), ssl_context=client_ctx(ca))
    t.open()
    assert data(t.receive()) == ["ok"]

    # The env points at the server's CA, the SDK's context does not trust it: refused.
    monkeypatch.setenv(var, str(right_pem))
    ctx = client_ctx(other_ca)
    cas_before = ctx.cert_store_stats()["x509_ca"]
    t2 = sse_transports(srv.url(), ssl_context=ctx)
    with pytest.raises(NetworkError) as ei:
        t2.open()
    assert ei.value.terminal
    assert ctx.cert_store_stats()["x509_ca"] == cas_before  # no bundle was loaded into it
    assert os.environ[var] == str(right_pem)


def test_tls_close_from_another_thread(raw_servers: Any, sse_transports: Any, ca: trustme.CA) -> None:
    srv = tls_server(raw_servers, ca, sse([], chunked=True, finish="hold"))
    t = sse_transports(srv.url(), ssl_context=client_ctx(ca), read_timeout=None)
    t.open()
    th, ended, outcome = receive_in_thread(t)
    t.close()
    assert ended.wait(PROMPT)
    th.join(PROMPT)
    assert isinstance(outcome[0], TransportClosed)


# --- redaction (docs/faults.rst row 35) -----------------------------------------------------------------


def test_no_secret_in_errors_or_logs(
    raw_servers: Any, sse_transports: Any, ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="magk_client")
    errors: List[BaseException] = []

    attempted: List[SSETransport] = []

    def attempt(url: str, **kw: Any) -> None:
        t = sse_transports(url, headers=AUTH, **kw)
        attempted.append(t)
        try:
            t.open()
            while True:
                t.receive()
        except MagkConnectionError as exc:
            errors.append(exc)
        try:
            t.send("{}")
        except MagkConnectionError as exc:
            errors.append(exc)

    q = f"?token={TOKEN}&api_key={API_KEY}"
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()
    attempt(f"http://127.0.0.1:{dead}/e{q}", messages_url=f"http://127.0.0.1:{dead}/m{q}")
    srv = raw_servers([reply(401), reply(500), reply(302, b"", [("Location", "http://x/" + q)])])
    for _ in range(3):
        attempt(srv.url("/e" + q), messages_url=srv.url("/m" + q))
    cut = raw_servers([sse([b"data: x"], chunked=True, finish="cut")])
    attempt(cut.url("/e" + q))
    silent = raw_servers([sse([], chunked=True, finish="hold")])
    attempt(silent.url("/e" + q), read_timeout=0.2)
    tls = tls_server(raw_servers, ca, sse([]))
    attempt(tls.url("/e" + q), ssl_context=client_ctx(None))
    big = raw_servers([sse([b"data: " + b"x" * 5000], chunked=True, finish="hold")])
    attempt(big.url("/e" + q), max_message_size=100)
    assert len(errors) >= 10
    for e in errors:
        for text in (str(e), repr(e)):
            assert TOKEN not in text and API_KEY not in text and "SECRET" not in text, text
    for rec in caplog.records:
        msg = rec.getMessage()
        assert "SECRET" not in msg, msg
    for t in attempted:
        assert "SECRET" not in repr(t)


# --- against the reference Backend ---------------------------------------------------------


def _collect(t: SSETransport, n: int) -> List[SSEEvent]:
    got: List[SSEEvent] = []
    while len([e for e in got if e.dispatch]) < n:
        got += t.receive()  # type: ignore[arg-type]
    return [e for e in got if e.dispatch]


def _progress(i: int) -> dict:
    return {
        "type": "node_progress_update",
        "workflowId": "wf-1",
        "nodeId": "n-1",
        "data": {"progress": {"current": i, "total": 10}},
    }


def test_backend_events_have_ids_and_replay_after_last_event_id(magk_backend: Any, sse_transports: Any) -> None:
    t = sse_transports(magk_backend.event_source_url, headers={"Authorization": f"Bearer {TOKEN}"})
    t.open()
    magk_backend.wait_for_connections(1, transport="sse")  # subscribed before we publish
    ids = magk_backend.publish_many([_progress(i) for i in range(5)])
    got = _collect(t, 5)
    assert [e.id for e in got] == ids
    assert [json.loads(e.data)["id"] for e in got] == ids
    assert t.last_event_id == ids[-1]
    t.close()
    # Resume: everything after the third event is replayed, in order.
    more = magk_backend.publish_many([_progress(i) for i in range(5, 8)])
    t2 = sse_transports(magk_backend.event_source_url, headers={"Authorization": f"Bearer {TOKEN}"})
    t2.open(last_event_id=ids[2])
    replayed = _collect(t2, 5)
    assert [e.id for e in replayed] == ids[3:] + more


def test_backend_auth_refused_and_send_over_http(magk_backend: Any, sse_transports: Any) -> None:
    t = sse_transports(magk_backend.event_source_url, headers={"Authorization": "Bearer wrong"})
    with pytest.raises(AuthError):
        t.open()
    t2 = sse_transports(
        magk_backend.event_source_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        messages_url=magk_backend.messages_url,
    )
    msg = {"type": "node_log", "workflowId": "wf-1", "data": {"logs": []}}
    t2.send(json.dumps(msg))
    received = magk_backend.wait_for_received(1)
    assert received[0].transport == "http"
    assert received[0].message == msg


def test_backend_scripted_close_delimited_stream(magk_backend: Any, sse_transports: Any) -> None:
    magk_backend.sse_script([b"id: s-1\ndata: {}\n\n", b'data: {"a": 1}\n\n'], chunked=False)
    t = sse_transports(magk_backend.event_source_url, headers={"Authorization": f"Bearer {TOKEN}"})
    t.open()
    items: List[Any] = []
    with pytest.raises(TransportClosed):
        while True:
            items += t.receive()
    assert [(e.data, e.id) for e in items] == [("{}", "s-1"), ('{"a": 1}', "s-1")]


def test_error_reply_with_an_open_ended_body_does_not_hang_open(raw_servers: Any, sse_transports: Any) -> None:
    # A refused answer whose close-delimited body never ends: open() must not wait on it.
    srv = raw_servers([sse([b"still going"], status=200, content_type="text/html", finish="hold")])
    t = sse_transports(srv.url(), read_timeout=None)
    start = time.monotonic()
    with pytest.raises(ProtocolError):
        t.open()
    assert time.monotonic() - start < PROMPT
