"""WebSocketTransport over real sockets on 127.0.0.1.

Most tests use a ``RawServer`` (magk_client.testing.raw): a plain socket speaking just enough
RFC 6455 on the server side to send crafted (also broken) frames and to read what the client
sends. A few run against the reference backend. Nothing is mocked; waits are on events with timeouts, never sleeps.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from checks import exception_chain
from timings import well_before, within

from magk_client.errors import (
    AuthError,
    MagkTimeoutError,
    MessageTooLargeError,
    NetworkError,
    ProtocolError,
    ServerError,
    TransportClosed,
)
from magk_client.testing.raw import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Conn,
    RawServer,
    Script,
    close_payload,
    respond,
    ws_frame,
    ws_script,
)
from magk_client.transports.base import TransportOptions
from magk_client.transports.websocket import WebSocketTransport

TOKEN = "tok-SECRET-5f3a9c"
pytestmark = [pytest.mark.timeout(30), pytest.mark.magk_backend(token=TOKEN)]
API_KEY = "key-SECRET-77e1"
AUTH = {"Authorization": f"Bearer {TOKEN}", "X-API-Key": API_KEY, "X-Tenant": "acme"}
WAIT = 5.0


# ---------------------------------------------------------------------------------------------
# the server side: magk_client.testing.raw (a plain socket speaking just enough RFC 6455)


def text(s: str, **kw: Any) -> bytes:
    return ws_frame(OP_TEXT, s.encode("utf-8"), **kw)


@pytest.fixture
def servers(raw_servers: Callable[..., RawServer]) -> Callable[..., RawServer]:
    """``servers(script)``: a raw server answering the upgrade, then running ``script(conn)``;
    ``servers(response=b"...")``: one sending those bytes instead and holding the connection."""

    def make(
        script: Optional[Script] = None,
        *,
        response: Optional[bytes] = None,
        tls: Optional[ssl.SSLContext] = None,
        rcvbuf: Optional[int] = None,
    ) -> RawServer:
        handler = ws_script(script) if response is None else respond(response, hold=True)
        return raw_servers(handler, ssl_context=tls, rcvbuf=rcvbuf, timeout=WAIT)

    return make


@pytest.fixture
def transports() -> Iterator[Callable[..., WebSocketTransport]]:
    made: List[WebSocketTransport] = []

    def make(url: str, **kw: Any) -> WebSocketTransport:
        kw.setdefault("headers", AUTH)
        kw.setdefault("connect_timeout", WAIT)
        kw.setdefault("send_timeout", WAIT)
        t = WebSocketTransport(TransportOptions(url=url, **kw))
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def no_secret(exc: BaseException) -> BaseException:
    for s in (str(exc), repr(exc)):
        assert TOKEN not in s and API_KEY not in s, s
    return exc


def fails(cls: type, fn: Callable[[], Any]) -> Any:
    with pytest.raises(cls) as info:
        fn()
    return no_secret(info.value)


def receive_n(t: WebSocketTransport, n: int) -> Tuple[List[Any], List[int]]:
    got: List[Any] = []
    sizes: List[int] = []
    while len(got) < n:
        batch = t.receive()
        assert batch, "receive() returned an empty batch"
        sizes.append(len(batch))
        got.extend(batch)
    return got, sizes


def in_thread(fn: Callable[[], Any]) -> Tuple[threading.Event, Dict[str, Any]]:
    done = threading.Event()
    box: Dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc
        finally:
            box["at"] = time.monotonic()
            done.set()

    threading.Thread(target=run, daemon=True).start()
    return done, box


# ---------------------------------------------------------------------------------------------
# handshake


def test_handshake_carries_auth_headers_and_last_event_id(servers, transports) -> None:
    server = servers(lambda peer: peer.send(text("hi")))
    t = transports(server.ws_url())
    t.open(last_event_id="e-41")
    assert t.receive() == ["hi"]
    request = server.wait_requests(1)[0]
    assert request.line == "GET /ws/realtime HTTP/1.1"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["x-tenant"] == "acme"
    assert request.headers["last-event-id"] == "e-41"
    server.join()


def test_no_last_event_id_header_when_none_or_unsafe(servers, transports) -> None:
    server = servers(lambda peer: None)
    t = transports(server.ws_url())
    t.open(last_event_id="e-1\r\nX-Evil: 1")
    server.join()
    headers = server.wait_requests(1)[0].headers
    assert "last-event-id" not in headers
    assert "x-evil" not in headers


@pytest.mark.parametrize(
    ("status", "extra", "cls", "terminal", "retry_after"),
    [
        (401, "", AuthError, True, None),
        (403, "", AuthError, True, None),
        (404, "", ProtocolError, False, None),
        (426, "", ProtocolError, False, None),
        (503, "Retry-After: 3\r\n", ServerError, False, 3.0),
        (429, "Retry-After: 7\r\n", ServerError, False, 7.0),
        (500, "", ServerError, False, None),
    ],
)
def test_refused_handshake_is_classified(servers, transports, status, extra, cls, terminal, retry_after) -> None:
    body = f"secret body mentioning {TOKEN}"
    server = servers(
        response=(
            f"HTTP/1.1 {status} Nope\r\n{extra}Content-Length: {len(body)}\r\nX-Echo: {TOKEN}\r\n\r\n{body}"
        ).encode()
    )
    t = transports(server.ws_url("/ws/realtime?token=" + TOKEN))
    exc = fails(cls, t.open)
    assert type(exc) is cls
    assert exc.status == status
    assert exc.terminal is terminal
    assert exc.retry_after == retry_after
    assert t.closed
    assert fails(cls, t.receive) is exc  # receive() after a failed open() repeats why


def test_redirect_is_refused_and_never_followed(servers, transports) -> None:
    other = socket.socket()
    other.bind(("127.0.0.2", 0))
    other.listen(1)
    try:
        target = f"ws://127.0.0.2:{other.getsockname()[1]}/ws/realtime"
        server = servers(response=f"HTTP/1.1 302 Found\r\nLocation: {target}\r\n\r\n".encode())
        t = transports(server.ws_url())
        exc = fails(ProtocolError, t.open)
        assert exc.terminal
        assert exc.status == 302
        assert "redirect refused" in str(exc)
        other.setblocking(False)
        with pytest.raises(BlockingIOError):  # nobody connected to the second host
            other.accept()
    finally:
        other.close()


def test_not_a_websocket_answer_is_a_protocol_error(servers, transports) -> None:
    server = servers(
        response=b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: d3Jvbmc=\r\n\r\n"
    )
    t = transports(server.ws_url())
    exc = fails(ProtocolError, t.open)
    assert not exc.terminal


def test_listener_that_never_answers_times_out_within_connect_timeout(transports) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # never accepted: the TCP connect succeeds, the handshake never answers
    try:
        t = transports(f"ws://127.0.0.1:{listener.getsockname()[1]}/ws/realtime", connect_timeout=0.5)
        start = time.monotonic()
        exc = fails(MagkTimeoutError, t.open)
        elapsed = time.monotonic() - start
        assert 0.45 <= elapsed <= within(0.5), elapsed
        assert isinstance(exc, TimeoutError)
    finally:
        listener.close()


def test_connection_refused_is_a_network_error(transports) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    t = transports(f"ws://127.0.0.1:{port}/ws/realtime")
    exc = fails(NetworkError, t.open)
    assert not exc.terminal
    assert "refused" in str(exc)


def test_close_during_a_hanging_handshake_unblocks_open(transports) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        t = transports(f"ws://127.0.0.1:{listener.getsockname()[1]}/", connect_timeout=10)
        done, box = in_thread(t.open)
        conn, _ = listener.accept()  # the client is in its handshake now
        with conn:
            conn.recv(4096)  # its upgrade request arrived: open() is waiting for the answer
            closed_at = time.monotonic()
            t.close()
            assert done.wait(WAIT)
        assert isinstance(box.get("error"), TransportClosed)
        assert box["at"] - closed_at < well_before(10)  # not the connect timeout
    finally:
        listener.close()


def test_open_twice_and_open_after_close_are_refused(servers, transports) -> None:
    server = servers(lambda peer: None)
    t = transports(server.ws_url())
    t.open()
    fails(TransportClosed, t.open)
    t2 = transports(server.ws_url())
    t2.close()
    fails(TransportClosed, t2.open)


# ---------------------------------------------------------------------------------------------
# receiving


def test_batches_1000_messages_in_order(servers, transports) -> None:
    msgs = [json.dumps({"id": f"e-{i}", "type": "node_log", "data": {"pad": "x" * 100}}) for i in range(1000)]
    server = servers(lambda peer: peer.send(b"".join(text(m) for m in msgs)))
    t = transports(server.ws_url())
    before = t.last_activity
    t.open()
    got, sizes = receive_n(t, 1000)
    assert got == msgs
    assert max(sizes) > 1, sizes
    assert len(sizes) < 1000
    assert t.last_activity > before
    server.join()


def test_one_byte_segments_are_reassembled(servers, transports) -> None:
    msgs = [f"message {i} " + "é" * i for i in range(60)] + ["z" * 70000]

    def script(peer: Conn) -> None:
        peer.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = b"".join(text(m) for m in msgs[:-1])
        for i in range(len(data)):
            peer.send(data[i : i + 1])
        peer.send(text(msgs[-1]))

    server = servers(script)
    t = transports(server.ws_url())
    t.open()
    got, _ = receive_n(t, len(msgs))
    assert got == msgs
    server.join()


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 3 * 1024 * 1024 + 7])
def test_length_encodings_and_big_frames(servers, transports, size) -> None:
    payload = ("0123456789abcdef" * (size // 16 + 1))[:size]
    server = servers(lambda peer: peer.send(text(payload) + text("after")))
    t = transports(server.ws_url())
    t.open()
    got, _ = receive_n(t, 2)
    assert got == [payload, "after"]
    server.join()


def test_fragmented_message_with_interleaved_ping(servers, transports) -> None:
    word = "héllo wörld ✓"
    raw = word.encode("utf-8")
    cut = raw.index("ö".encode()) + 1  # split inside a multi-byte character

    def script(peer: Conn) -> Tuple[int, bytes]:
        peer.send(ws_frame(OP_TEXT, raw[:3], fin=False))
        peer.send(ws_frame(OP_CONT, raw[3:cut], fin=False))
        peer.send(ws_frame(OP_PING, b"are you there"))
        peer.send(ws_frame(OP_CONT, raw[cut:], fin=True) + text("next"))
        opcode, payload, _ = peer.read_frame()
        return opcode, payload

    server = servers(script)
    t = transports(server.ws_url())
    t.open()
    got, _ = receive_n(t, 2)
    assert got == [word, "next"]
    assert server.join() == (OP_PONG, b"are you there")


def test_ping_is_answered_and_pongs_are_ignored(servers, transports) -> None:
    def script(peer: Conn) -> Tuple[int, bytes]:
        peer.send(ws_frame(OP_PONG, b"unsolicited") + ws_frame(OP_PING, b"p-1") + text("x"))
        opcode, payload, _ = peer.read_frame()
        return opcode, payload

    server = servers(script)
    t = transports(server.ws_url())
    t.open()
    assert t.receive() == ["x"]
    assert server.join() == (OP_PONG, b"p-1")


def test_binary_message_is_decoded_as_text(servers, transports) -> None:
    server = servers(lambda peer: peer.send(ws_frame(OP_BINARY, b'{"type":"ping"}')))
    t = transports(server.ws_url())
    t.open()
    assert t.receive() == ['{"type":"ping"}']


def test_binary_message_that_is_not_utf8_is_an_invalid_message_and_the_connection_stays_up(
    servers, transports
) -> None:
    """RFC 6455 requires UTF-8 of text messages only (Autobahn 1.2.x, 5.x, 9.2.x send binary
    payloads of 0xfe bytes): an undecodable binary message is returned as an item the codec
    rejects (dropped and counted like malformed JSON), never a 1007 failure."""
    from magk_client.codec import InvalidMessage, decode

    word = "héllo ✓".encode()
    cut = word.index("é".encode()) + 1  # a valid message split inside a character

    def script(peer: Conn) -> Optional[int]:
        peer.send(
            ws_frame(OP_BINARY, b"\xfe" * 125)  # one frame, 7-bit length
            + ws_frame(OP_BINARY, b"\xfe" * 70000)  # 64-bit length, the memoryview decode
            + ws_frame(OP_BINARY, b"ab", fin=False)
            + ws_frame(OP_CONT, b"\xff", fin=False)  # bad in the middle: the rest is still read
            + ws_frame(OP_CONT, b"cd")
            + ws_frame(OP_BINARY, b"ab", fin=False)
            + ws_frame(OP_CONT, b"\xe2\x82")  # truncated at the end
            + ws_frame(OP_BINARY, b"")  # empty is valid UTF-8
            + ws_frame(OP_BINARY, word[:cut], fin=False)
            + ws_frame(OP_PING, b"mid")
            + ws_frame(OP_CONT, word[cut:])
            + text("after")
        )
        return peer.read_close_code()

    server = servers(script)
    t = transports(server.ws_url())
    t.open()
    got, _ = receive_n(t, 7)
    assert got[4:] == ["", "héllo ✓", "after"]
    for item in got[:4]:
        assert isinstance(item, str)
        with pytest.raises(InvalidMessage):
            decode(item)
        with pytest.raises(ValueError):
            json.loads(item)
    assert not t.closed
    t.send('{"type":"pong"}')  # the connection is still usable
    t.close()
    assert server.join() == 1000  # an orderly close, not 1007


def test_binary_message_limit_still_applies(servers, transports) -> None:
    server = servers(
        lambda peer: (peer.send(ws_frame(OP_BINARY, b"\xfe" * 60, fin=False) + ws_frame(OP_CONT, b"\xfe" * 60)),
                      peer.read_close_code())[1]
    )
    t = transports(server.ws_url(), max_message_size=100)
    t.open()
    exc = fails(MessageTooLargeError, t.receive)
    assert exc.close_code == 1009
    assert server.join() == 1009


VIOLATIONS = {
    "masked frame": (text("x", masked=True), 1002),
    "rsv bit": (text("x", rsv=4), 1002),
    "126-byte ping": (ws_frame(OP_PING, b"p" * 126), 1002),
    "fragmented ping": (ws_frame(OP_PING, b"p", fin=False), 1002),
    "unknown opcode": (ws_frame(3, b"x"), 1002),
    "unknown control opcode": (ws_frame(11, b""), 1002),
    "continuation first": (ws_frame(OP_CONT, b"x"), 1002),
    "text inside fragments": (ws_frame(OP_TEXT, b"a", fin=False) + text("b"), 1002),
    "invalid utf-8": (ws_frame(OP_TEXT, b"ok \xff\xfe"), 1007),
    "invalid utf-8 long": (ws_frame(OP_TEXT, b"\xc3" * 5000), 1007),
    "invalid utf-8 fragmented": (ws_frame(OP_TEXT, b"ab", fin=False) + ws_frame(OP_CONT, b"\xed\xa0\x80"), 1007),
    "truncated utf-8 at end": (ws_frame(OP_TEXT, b"ab", fin=False) + ws_frame(OP_CONT, b"\xe2\x82"), 1007),
    "1-byte close": (ws_frame(OP_CLOSE, b"\x03"), 1002),
    "close code 1005": (ws_frame(OP_CLOSE, close_payload(1005)), 1002),
    "close code 999": (ws_frame(OP_CLOSE, close_payload(999)), 1002),
    "close reason not utf-8": (ws_frame(OP_CLOSE, close_payload(1000) + b"\xff"), 1007),
}


@pytest.mark.parametrize("name", list(VIOLATIONS))
def test_protocol_violations_fail_the_connection(servers, transports, name) -> None:
    data, code = VIOLATIONS[name]
    server = servers(lambda peer: (peer.send(data), peer.read_close_code())[1])
    t = transports(server.ws_url())
    t.open()
    exc = fails(ProtocolError, t.receive)
    assert type(exc) is ProtocolError
    assert exc.close_code == code
    assert exc.terminal
    assert server.join() == code  # the server got our close frame with that code
    assert t.closed
    again = fails(ProtocolError, t.receive)
    assert again.close_code == code


def test_messages_before_a_violation_are_delivered_first(servers, transports) -> None:
    server = servers(
        lambda peer: (peer.send(text("a") + text("b") + text("c", masked=True)), peer.read_close_code())[1]
    )
    t = transports(server.ws_url())
    t.open()
    assert t.receive() == ["a", "b"]
    exc = fails(ProtocolError, t.receive)
    assert exc.close_code == 1002
    assert server.join() == 1002


def test_header_claiming_2_62_bytes_fails_at_once(servers, transports) -> None:
    def script(peer: Conn) -> Optional[int]:
        peer.send(ws_frame(OP_TEXT, b"abc", length=2**62))  # then trickle nothing more
        return peer.read_close_code()

    server = servers(script)
    t = transports(server.ws_url())
    t.open()
    start = time.monotonic()
    exc = fails(MessageTooLargeError, t.receive)
    assert time.monotonic() - start < well_before(WAIT)  # not until the server gives up and closes
    assert exc.close_code == 1009
    assert server.join() == 1009


@pytest.mark.parametrize("fragmented", [False, True])
def test_max_message_size_boundary(servers, transports, fragmented) -> None:
    limit = 1000

    def frames(size: int) -> bytes:
        data = b"y" * size
        if not fragmented:
            return ws_frame(OP_TEXT, data)
        return (
            ws_frame(OP_TEXT, data[:400], fin=False)
            + ws_frame(OP_CONT, data[400:800], fin=False)
            + ws_frame(OP_CONT, data[800:])
        )

    server = servers(lambda peer: (peer.send(frames(limit) + frames(limit + 1)), peer.read_close_code())[1])
    t = transports(server.ws_url(), max_message_size=limit)
    t.open()
    assert t.receive() == ["y" * limit]
    exc = fails(MessageTooLargeError, t.receive)
    assert exc.close_code == 1009
    assert server.join() == 1009


def test_hot_path_respects_a_small_limit(servers, transports) -> None:
    server = servers(lambda peer: (peer.send(text("z" * 150)), peer.read_close_code())[1])
    t = transports(server.ws_url(), max_message_size=100)
    t.open()
    fails(MessageTooLargeError, t.receive)
    assert server.join() == 1009


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_short_frames_respect_a_limit_below_125(servers, transports, opcode) -> None:
    """The 7-bit length form (up to 125 bytes) is checked against max_message_size too."""
    limit = 100
    server = servers(
        lambda peer: (peer.send(ws_frame(opcode, b"s" * limit) + ws_frame(opcode, b"s" * (limit + 20))),
                      peer.read_close_code())[1]
    )
    t = transports(server.ws_url(), max_message_size=limit)
    t.open()
    assert t.receive() == ["s" * limit]
    exc = fails(MessageTooLargeError, t.receive)
    assert exc.close_code == 1009
    assert str(limit + 20) in str(exc)
    assert server.join() == 1009


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (1000, TransportClosed),
        (1001, TransportClosed),
        (1008, AuthError),
        (4401, AuthError),
        (1011, ServerError),
        (1012, ServerError),
        (1009, MessageTooLargeError),
        (4000, NetworkError),
    ],
)
def test_server_close_codes_are_classified_and_answered(servers, transports, code, cls) -> None:
    server = servers(
        lambda peer: (peer.send(text("last") + ws_frame(OP_CLOSE, close_payload(code, "bye"))), peer.read_close_code())[1]
    )
    t = transports(server.ws_url())
    t.open()
    got = t.receive()
    if got == ["last"]:
        exc = fails(cls, t.receive)
    else:  # pragma: no cover - both frames always arrive together on loopback
        pytest.fail(f"unexpected {got!r}")
    assert type(exc) is cls
    assert exc.close_code == code
    assert server.join() == code  # echoed


def test_empty_close_frame_is_an_orderly_close(servers, transports) -> None:
    server = servers(lambda peer: (peer.send(ws_frame(OP_CLOSE)), peer.read_close_code())[1])
    t = transports(server.ws_url())
    t.open()
    exc = fails(TransportClosed, t.receive)
    assert exc.close_code == 1005
    assert server.join() == 1000


def test_eof_without_close_frame_is_a_network_error(servers, transports) -> None:
    server = servers(lambda peer: peer.send(text("one") + ws_frame(OP_TEXT, b"partial", length=50)))
    t = transports(server.ws_url())
    t.open()
    assert t.receive() == ["one"]
    server.join()  # the server closes its socket when the script returns
    exc = fails(NetworkError, t.receive)
    assert exc.close_code == 1006
    assert not exc.terminal


def test_reset_is_a_network_error(servers, transports) -> None:
    def script(peer: Conn) -> None:
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    server = servers(script)
    t = transports(server.ws_url())
    t.open()
    server.join()
    exc = fails(NetworkError, t.receive)
    assert exc.close_code == 1006


# ---------------------------------------------------------------------------------------------
# sending and closing


def test_concurrent_sends_are_serialised(servers, transports) -> None:
    n_threads, per_thread = 4, 50
    total = n_threads * per_thread

    def script(peer: Conn) -> List[str]:
        return [peer.read_frame()[1].decode() for _ in range(total)]

    server = servers(script)
    t = transports(server.ws_url())
    t.open()
    start = threading.Barrier(n_threads)

    def sender(k: int) -> None:
        start.wait()
        for i in range(per_thread):
            t.send(json.dumps({"thread": k, "i": i, "pad": "p" * (i * 37 % 3000)}))

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(WAIT)
    got = [json.loads(s) for s in server.join()]
    for k in range(n_threads):
        assert [m["i"] for m in got if m["thread"] == k] == list(range(per_thread))


def test_send_to_a_peer_that_stops_reading_times_out(servers, transports) -> None:
    server = servers(lambda peer: peer.sock and server.stopped.wait(WAIT), rcvbuf=4096)
    t = transports(server.ws_url(), send_timeout=0.5)
    t.open()
    big = "x" * (10 * 1024 * 1024)
    start = time.monotonic()
    exc = fails(MagkTimeoutError, lambda: t.send(big))
    assert time.monotonic() - start <= within(0.5)  # the send timeout
    assert isinstance(exc, TimeoutError)
    # half a frame may be on the wire: the connection is dropped and says why
    assert t.closed
    fails(MagkTimeoutError, t.receive)
    fails(NetworkError, lambda: t.send("{}"))


def test_close_from_another_thread_unblocks_receive(servers, transports) -> None:
    def script(peer: Conn) -> Optional[int]:
        peer.send(text("first"))
        return peer.read_close_code()

    server = servers(script)
    t = transports(server.ws_url())
    t.open()
    assert t.receive() == ["first"]
    done, box = in_thread(t.receive)  # blocks: nothing more is coming
    closed_at = time.monotonic()
    t.close()
    assert done.wait(WAIT)
    assert box["at"] - closed_at < well_before(WAIT)  # not until the server gives up and closes
    assert isinstance(box.get("error"), TransportClosed)
    assert str(box["error"]) == "closed locally"
    assert server.join() == 1000
    t.close()  # idempotent
    t.close(1001)
    fails(TransportClosed, t.receive)
    exc = fails(NetworkError, lambda: t.send("{}"))
    assert "closed" in str(exc)


def test_close_is_quick_when_the_peer_does_not_read(servers, transports) -> None:
    server = servers(lambda peer: server.stopped.wait(WAIT), rcvbuf=4096)
    t = transports(server.ws_url(), send_timeout=5.0)
    t.open()
    done, box = in_thread(lambda: t.send("x" * (10 * 1024 * 1024)))  # fills every buffer
    deadline = time.monotonic() + WAIT
    while not t._send_lock.locked():  # the sender is inside send() (then stuck on a full socket)
        assert time.monotonic() < deadline
    # close() must not wait for it
    start = time.monotonic()
    t.close()
    assert time.monotonic() - start < well_before(5.0)  # not the send timeout
    assert done.wait(WAIT)
    assert isinstance(box.get("error"), NetworkError)


def test_send_before_open_and_close_before_open(transports) -> None:
    t = transports("ws://127.0.0.1:9/ws/realtime")
    fails(NetworkError, lambda: t.send("{}"))
    t.close()
    assert t.closed
    fails(TransportClosed, t.receive)


# ---------------------------------------------------------------------------------------------
# TLS


@pytest.fixture(scope="module")
def tls_material(tmp_path_factory) -> Tuple[Any, ssl.SSLContext, str]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(server_ctx)
    ca_file = str(tmp_path_factory.mktemp("ca") / "ca.pem")
    ca.cert_pem.write_to_path(ca_file)
    return ca, server_ctx, ca_file


def test_tls_is_verified_by_default_and_env_bundles_do_not_override(
    servers, transports, tls_material, monkeypatch
) -> None:
    _, server_ctx, ca_file = tls_material
    monkeypatch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", ca_file)
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent")  # the default context must not pick it up either
    for ctx in (None, ssl.create_default_context()):
        server = servers(lambda peer: None, tls=server_ctx)
        t = transports(server.ws_url(), ssl_context=ctx)
        exc = fails(NetworkError, t.open)
        assert exc.terminal
        assert "certificate verification failed" in str(exc)
        assert exc.close_code == 1015


def test_tls_with_a_context_trusting_the_ca(servers, transports, tls_material) -> None:
    ca, server_ctx, _ = tls_material
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    def script(peer: Conn) -> Tuple[int, bytes]:
        peer.send(text("secure") + ws_frame(OP_PING, b"tls"))
        opcode, payload, _ = peer.read_frame()
        return opcode, payload

    server = servers(script, tls=server_ctx)
    t = transports(server.ws_url(), ssl_context=client_ctx)
    t.open()
    assert t.receive() == ["secure"]
    assert server.join() == (OP_PONG, b"tls")
    assert server.wait_requests(1)[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_tls_close_unblocks_receive(servers, transports, tls_material) -> None:
    ca, server_ctx, _ = tls_material
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    server = servers(lambda peer: peer.read_close_code(), tls=server_ctx)
    t = transports(server.ws_url(), ssl_context=client_ctx)
    t.open()
    done, box = in_thread(t.receive)
    t.close()
    assert done.wait(WAIT)
    assert isinstance(box.get("error"), TransportClosed)


def test_debug_logs_and_library_trace_hold_no_secret(servers, transports, caplog) -> None:
    import websocket

    server = servers(lambda peer: (peer.send(ws_frame(OP_CLOSE, close_payload(4401, "no"))), peer.read_close_code())[1])
    websocket.enableTrace(True)
    try:
        with caplog.at_level("DEBUG"):
            t = transports(server.ws_url("/ws/realtime?token=" + TOKEN))
            t.open()
            fails(AuthError, t.receive)
    finally:
        websocket.enableTrace(False)
    server.join()
    assert "authorization" in caplog.text.lower()  # the trace ran and was redacted
    assert TOKEN not in caplog.text
    assert API_KEY not in caplog.text
    assert TOKEN not in repr(t)


def chain_text(exc: BaseException) -> str:
    import traceback

    parts = ["".join(traceback.format_exception(type(exc), exc, exc.__traceback__))]
    for e in exception_chain(exc):
        parts += [str(e), repr(e), repr(e.args), repr(vars(e))]
    return "\n".join(parts)


@pytest.mark.parametrize("status", [401, 403, 500])
def test_refused_handshake_echoing_credentials_leaks_them_nowhere(servers, transports, caplog, status) -> None:
    """A hostile server echoes the credentials in its refusal (headers and body): neither the
    library trace nor the raised error (with its __cause__/__context__ chain) holds them."""
    import websocket

    body = f"you sent Authorization: Bearer {TOKEN} and X-API-Key: {API_KEY}"
    server = servers(
        response=(
            f"HTTP/1.1 {status} Denied {TOKEN}\r\nContent-Length: {len(body)}\r\n"
            f"X-Echo: Bearer {TOKEN}\r\nX-Seen: {API_KEY}\r\n"
            f"WWW-Authenticate: Bearer error=invalid_token, token={TOKEN}\r\n\r\n{body}"
        ).encode()
    )
    websocket.enableTrace(True)
    try:
        with caplog.at_level("DEBUG"):
            t = transports(server.ws_url())
            with pytest.raises(Exception) as info:
                t.open()
    finally:
        websocket.enableTrace(False)
    exc = info.value
    assert getattr(exc, "status", None) == status
    assert "x-echo" in caplog.text.lower()  # the trace of the response headers ran
    everything = "\n".join([caplog.text, chain_text(exc)])
    for secret in (TOKEN, API_KEY):
        assert secret not in everything
    for e in exception_chain(exc):  # nothing of websocket-client's is chained
        assert not type(e).__module__.startswith("websocket"), type(e)


def test_garbled_answer_echoing_the_token_keeps_a_scrubbed_reason(servers, transports, caplog) -> None:
    server = servers(response=f"HTTP/1.1 abc {TOKEN}\r\n\r\n".encode())
    t = transports(server.ws_url())
    with caplog.at_level("DEBUG"):
        exc = fails(ProtocolError, t.open)
    # the library's reason, scrubbed (websocket-client versions differ: some fail parsing the status
    # code first and give only the exception's type)
    assert ("Invalid status line" in str(exc) and "***" in str(exc)) or "(ValueError)" in str(exc)
    everything = "\n".join([caplog.text, chain_text(exc)])
    assert TOKEN not in everything
    assert exception_chain(exc) == [exc]


def test_trace_filter_is_installed_once_and_redacts_active_handshakes() -> None:
    import importlib
    import logging

    from magk_client.transports import ws_trace

    lib_logger = logging.getLogger("websocket")

    def ours() -> List[logging.Filter]:
        return [f for f in lib_logger.filters if isinstance(f, logging.Filter) and "magk" in type(f).__module__]

    ws_trace.install_trace_filter()
    ws_trace.install_trace_filter()
    importlib.reload(ws_trace)  # a reloaded module finds the installed filter (and its registry)
    ws_trace.install_trace_filter()
    assert len(ours()) == 1
    records: List[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    keep = Keep(logging.DEBUG)
    lib_logger.addHandler(keep)
    level = lib_logger.level
    lib_logger.setLevel(logging.DEBUG)
    try:
        with ws_trace.handshake_secrets(lambda text: text.replace("hunter2", "***")):
            lib_logger.debug("X-Echo: hunter2 and GET /ws?token=abc")
        lib_logger.debug("after: hunter2")  # no handshake any more: only the generic rules
    finally:
        lib_logger.removeHandler(keep)
        lib_logger.setLevel(level)
    assert records == ["X-Echo: *** and GET /ws?token=***", "after: hunter2"]


# ---------------------------------------------------------------------------------------------
# against the reference backend


def test_backend_ping_pong_and_published_events(magk_backend, transports) -> None:
    t = transports(magk_backend.websocket_url)
    t.open()
    t.send(json.dumps({"type": "ping", "data": {"pingId": "p-7"}}))
    ids = magk_backend.publish_many({"type": "node_log", "data": {"i": i}} for i in range(200))
    seen: List[Dict[str, Any]] = []
    while not (any(m.get("type") == "pong" for m in seen) and sum(1 for m in seen if m.get("id") in ids) == 200):
        seen.extend(json.loads(s) for s in t.receive())
    pong = next(m for m in seen if m["type"] == "pong")
    assert pong["data"]["pingId"] == "p-7"
    assert [m["id"] for m in seen if m.get("id") in ids] == ids


def test_backend_resume_and_auth_close(magk_backend, transports) -> None:
    ids = magk_backend.publish_many({"type": "node_log", "data": {"i": i}} for i in range(3))
    t = transports(magk_backend.websocket_url)
    t.open(last_event_id=ids[0])
    got: List[str] = []
    while len(got) < 2:
        got.extend(m["id"] for m in map(json.loads, t.receive()) if m.get("id"))
    assert got == ids[1:]
    magk_backend.close_connections(4401, "token revoked")
    exc = fails(AuthError, lambda: [t.receive() for _ in range(100)])
    assert exc.close_code == 4401


def test_backend_refuses_a_bad_token(magk_backend, transports) -> None:
    t = transports(magk_backend.websocket_url, headers={"Authorization": "Bearer wrong"})
    exc = fails(AuthError, t.open)
    assert exc.status in (401, 403)


# ---------------------------------------------------------------------------------------------
# through the fault proxy (docs/faults.rst rows 1, 2, 3, 5, 8, 9)


@pytest.fixture
def proxied(servers) -> Iterator[Callable[..., Tuple[RawServer, Any]]]:
    from magk_client.testing.proxy import FaultProxy

    made: List[Any] = []

    def make(script: Optional[Script] = None, **kw: Any) -> Tuple[RawServer, Any]:
        server = servers(script, **kw)
        proxy = FaultProxy("127.0.0.1", server.port)
        made.append(proxy)
        return server, proxy

    yield make
    for proxy in made:
        proxy.close()


def test_proxy_one_byte_slices(proxied, transports) -> None:
    msgs = [json.dumps({"id": f"e-{i}", "v": "ü" * (i % 7)}) for i in range(200)]
    server, proxy = proxied(lambda peer: peer.send(b"".join(text(m) for m in msgs)))
    proxy.set_slice(1)
    t = transports(proxy.url(server.ws_url()))
    t.open()
    got, _ = receive_n(t, len(msgs))
    assert got == msgs


def test_proxy_cut_mid_frame_delivers_only_whole_messages(proxied, transports) -> None:
    go = threading.Event()
    frames = [text(f"message-{i}-" + "x" * 40) for i in range(10)]

    def script(peer: Conn) -> None:
        go.wait(WAIT)
        peer.send(b"".join(frames))
        server.stopped.wait(WAIT)

    server, proxy = proxied(script)
    t = transports(proxy.url(server.ws_url()))
    t.open()
    proxy.limit_data(sum(len(f) for f in frames[:3]) + 5)  # cut 5 bytes into the 4th frame
    go.set()
    got: List[Any] = []
    with pytest.raises(NetworkError) as info:
        while True:
            got.extend(t.receive())
    no_secret(info.value)
    assert info.value.close_code == 1006
    assert got == [f"message-{i}-" + "x" * 40 for i in range(3)]


def test_proxy_reset_is_a_network_error(proxied, transports) -> None:
    server, proxy = proxied(lambda peer: server.stopped.wait(WAIT))
    t = transports(proxy.url(server.ws_url()))
    t.open()
    assert proxy.wait_for_connections(1, timeout=WAIT)
    done, box = in_thread(t.receive)
    proxy.reset_peer()
    assert done.wait(WAIT)
    assert isinstance(box.get("error"), NetworkError)
    assert not box["error"].terminal


def test_proxy_blackhole_then_close_unblocks_receive(proxied, transports) -> None:
    server, proxy = proxied(lambda peer: server.stopped.wait(WAIT))
    t = transports(proxy.url(server.ws_url()))
    t.open()
    proxy.blackhole(True)
    done, box = in_thread(t.receive)
    assert not done.wait(0.2)  # silent: receive() stays blocked (the service's heartbeat notices)
    closed_at = time.monotonic()
    t.close()
    assert done.wait(WAIT)
    assert box["at"] - closed_at < well_before(WAIT)  # not until the server gives up and closes
    assert isinstance(box.get("error"), TransportClosed)


def test_proxy_stop_reading_bounds_a_10mb_send(proxied, transports) -> None:
    server, proxy = proxied(lambda peer: server.stopped.wait(WAIT))
    t = transports(proxy.url(server.ws_url()), send_timeout=0.5)
    t.open()
    proxy.stop_reading(True)
    start = time.monotonic()
    fails(MagkTimeoutError, lambda: t.send("y" * (10 * 1024 * 1024)))
    assert time.monotonic() - start <= within(0.5)  # the send timeout


def test_proxy_hang_accept_times_out_within_connect_timeout(proxied, transports) -> None:
    server, proxy = proxied(lambda peer: None)
    proxy.hang_accept(True)
    t = transports(proxy.url(server.ws_url()), connect_timeout=0.4)
    start = time.monotonic()
    fails(MagkTimeoutError, t.open)
    assert time.monotonic() - start <= within(0.4)  # the connect timeout


def test_proxy_refuse_is_a_network_error(proxied, transports) -> None:
    server, proxy = proxied(lambda peer: None)
    proxy.refuse(True)
    t = transports(proxy.url(server.ws_url()))
    exc = fails(NetworkError, t.open)
    assert "refused" in str(exc)


# ---------------------------------------------------------------------------------------------
# small pure pieces and argument checks


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("ftp://127.0.0.1/ws", {}),
        ("ws://127.0.0.1:99999/ws", {}),
        ("ws://127.0.0.1:9/ws", {"X-Bad": "a\r\nInjected: 1"}),
    ],
)
def test_bad_url_or_header_is_a_terminal_error(transports, url, headers) -> None:
    t = transports(url, headers=headers)
    exc = fails(ProtocolError, t.open)
    assert exc.terminal
    assert t.closed


def test_http_urls_are_mapped_to_ws(servers, transports) -> None:
    server = servers(lambda peer: peer.send(text("mapped")))
    t = transports(f"http://127.0.0.1:{server.port}/ws/realtime")
    t.open()
    assert t.receive() == ["mapped"]


@pytest.mark.parametrize("fragmented", [False, True])
def test_memory_of_a_message_at_the_limit_stays_near_twice_the_limit(servers, transports, fragmented) -> None:
    import tracemalloc

    limit = 4 * 1024 * 1024
    payload = b"m" * limit
    if fragmented:
        step = limit // 8
        parts = [payload[i : i + step] for i in range(0, limit, step)]
        data = b"".join(ws_frame(OP_TEXT if i == 0 else OP_CONT, p, fin=i == len(parts) - 1) for i, p in enumerate(parts))
    else:
        data = ws_frame(OP_TEXT, payload)
    go = threading.Event()
    server = servers(lambda peer: (go.wait(WAIT), peer.send(data)))
    t = transports(server.ws_url(), max_message_size=limit)
    t.open()
    tracemalloc.start()
    try:
        go.set()
        got = t.receive()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(got) == 1 and len(got[0]) == limit
    assert peak <= 2.2 * limit, peak / limit
