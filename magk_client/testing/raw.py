"""Raw loopback servers for tests and benchmarks: exact bytes and timing the reference Backend never sends.

A testing helper, not a server. It lives in the package's testing kit rather than in ``tests/``
because both the tests and the benchmarks (scripts, some of them run in a spawned child process)
need it, and each can import the package but not the other's directory; it needs only the
standard library. Code built on magk-client can use it the same way, to meet a broken server.

:class:`RawServer` listens on 127.0.0.1 (port 0) and runs each accepted connection on a thread of
its own (``raw-server-conn-N``), as a :class:`Conn`:

- HTTP (the default): the request head and a ``Content-Length`` body are read and recorded in
  ``requests``; the k-th request (0-based, over all connections) is answered by ``handlers[k]``,
  the last handler repeating. Handlers: :func:`sse` (an event stream, chunked or close-delimited,
  whose steps may wait on events), :func:`reply` (a plain answer), :func:`respond` (exact bytes),
  :func:`ws_script` (the RFC 6455 upgrade, then a script reading and writing frames).
- TCP (``tcp=script``): the script gets the bare connection (:func:`echo`, :func:`sink`,
  :func:`source`).

Encoders: :func:`ws_frame` (any server frame, broken ones too), :func:`close_payload`,
:func:`chunk` and :func:`sse_event`.

Threads and sockets: a handler owns its socket; its thread closes it when the handler returns.
:meth:`RawServer.close` never closes a socket under a running handler: it sets ``stopped`` (held
streams end), shuts every socket down (a blocked ``recv``/``send`` returns), joins every thread it
started and fails if one is left. Every exception of a handler is recorded (``errors``, and
:meth:`RawServer.join` raises a connection's); one that is not a socket error (a failed assertion
in a script) also makes :meth:`RawServer.close` raise, so it cannot pass unseen.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import struct
import threading
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

__all__ = [
    "GUID",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "Conn",
    "Handler",
    "RawServer",
    "Request",
    "Script",
    "Step",
    "chunk",
    "close_payload",
    "echo",
    "reply",
    "respond",
    "sink",
    "source",
    "sse",
    "sse_event",
    "ws_frame",
    "ws_script",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
#: how long one join of a server thread may take in :meth:`RawServer.close` (seconds)
JOIN_TIMEOUT = 5.0


# ---------------------------------------------------------------------------------------- encoders


def ws_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = False,
    length: Optional[int] = None,
    mask_key: bytes = b"\x01\x02\x03\x04",
) -> bytes:
    """One WebSocket frame as a server would send it (unmasked), or broken on purpose.

    ``rsv`` sets the three RSV bits (4 = RSV1); ``masked`` masks the payload with ``mask_key`` (a
    server must not); ``length`` overrides the length in the header, the payload is not cut.
    """
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if masked:
        payload = mask_key + bytes(b ^ mask_key[i % 4] for i, b in enumerate(payload))
    return head + payload


def close_payload(code: int, reason: str = "") -> bytes:
    """The payload of a close frame: the code, then the UTF-8 reason."""
    return struct.pack("!H", code) + reason.encode("utf-8")


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk of ``data`` (nothing for empty data: an empty chunk ends the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


def sse_event(data: bytes, event_id: Optional[str] = None, event: Optional[str] = None) -> bytes:
    """One SSE event: optional ``id:`` and ``event:`` lines, one ``data:`` line, a blank line."""
    out = b"id: " + event_id.encode() + b"\n" if event_id is not None else b""
    if event is not None:
        out += b"event: " + event.encode() + b"\n"
    return out + b"data: " + data + b"\n\n"


# ---------------------------------------------------------------------------------------- connections


@dataclass
class Request:
    """An HTTP request as read: header names lower-cased, values decoded as UTF-8."""

    method: str
    path: str
    headers: Dict[str, str]
    raw_head: bytes
    body: bytes = b""

    @property
    def line(self) -> str:
        """The request line, e.g. ``GET /ws/realtime HTTP/1.1``."""
        return self.raw_head.split(b"\r\n", 1)[0].decode("latin-1")


class Conn:
    """The server side of one connection, handed to its handler (on the connection's own thread).

    Reads go through a buffer (what was read past the request head comes first); every ``recv``
    from the socket is recorded in ``received`` and ``recv_sizes``.
    """

    def __init__(self, server: RawServer, sock: socket.socket, index: int) -> None:
        self.server = server
        self.sock = sock
        self.index = index  #: 0 for the first connection accepted
        self.buffer = bytearray()
        self.received = bytearray()
        self.recv_sizes: List[int] = []
        self.result: object = None
        self.error: Optional[BaseException] = None
        self.finished = threading.Event()

    # -- reading -----------------------------------------------------------------------

    def recv(self, size: int = 65536) -> bytes:
        """The buffered bytes if any, else one ``recv`` (b"" at the end of the stream)."""
        if self.buffer:
            data = bytes(self.buffer)
            self.buffer.clear()
            return data
        data = self.sock.recv(size)
        self.server._record_read(self, data)
        return data

    def read_exact(self, n: int) -> bytes:
        """``n`` bytes; EOFError if the stream ends first."""
        while len(self.buffer) < n:
            data = self.sock.recv(65536)
            self.server._record_read(self, data)
            if not data:
                raise EOFError("the client closed the connection")
            self.buffer += data
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    def read_until(self, marker: bytes) -> Optional[bytes]:
        """The bytes up to and including ``marker``; None if the stream ends first."""
        while marker not in self.buffer:
            data = self.sock.recv(65536)
            self.server._record_read(self, data)
            if not data:
                return None
            self.buffer += data
        end = self.buffer.index(marker) + len(marker)
        out = bytes(self.buffer[:end])
        del self.buffer[:end]
        return out

    def read_request(self) -> Optional[Request]:
        """The next HTTP request (head and Content-Length body); None if the stream ends first."""
        head = self.read_until(b"\r\n\r\n")
        if head is None:
            return None
        head = head[:-4]
        lines = head.split(b"\r\n")
        method, path, _ = lines[0].decode("latin-1").split(" ", 2)
        headers: Dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.decode("latin-1").strip().lower()] = value.strip().decode("utf-8", "replace")
        length = int(headers.get("content-length", "0"))
        try:
            body = self.read_exact(length)
        except EOFError:
            body, self.buffer = bytes(self.buffer), bytearray()
        return Request(method, path, headers, head, body)

    def read_frame(self) -> Tuple[int, bytes, bool]:
        """The client's next WebSocket frame, unmasked: ``(opcode, payload, fin)``."""
        b1, b2 = self.read_exact(2)
        n = b2 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.read_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.read_exact(8))[0]
        assert b2 & 0x80, "client frames must be masked"
        key = self.read_exact(4)
        data = self.read_exact(n)
        payload = (int.from_bytes(data, "big") ^ int.from_bytes((key * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
        return b1 & 0x0F, payload, bool(b1 & 0x80)

    def read_close_code(self) -> Optional[int]:
        """Read frames until the client's close frame; its code (1005 if it has none, None if the
        stream ended first). Appended to the server's ``close_codes`` too."""
        code: Optional[int] = None
        try:
            while True:
                opcode, payload, _ = self.read_frame()
                if opcode == OP_CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    break
        except (EOFError, OSError):
            pass
        self.server._record_close_code(code)
        return code

    def drain(self, timeout: float = 5.0) -> None:
        """Read until the client goes (at most ``timeout`` s), so it reads what was sent, not a reset."""
        self.sock.settimeout(timeout)
        try:
            while self.recv():
                pass
        except OSError:
            pass

    # -- writing -----------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def head(self, status: int, headers: Sequence[Tuple[str, str]] = (), *, chunked: bool = False) -> None:
        """A response head; without ``chunked`` the body is close-delimited (``Connection: close``)."""
        lines = [f"HTTP/1.1 {status} Status{status}", *(f"{k}: {v}" for k, v in headers)]
        lines.append("Transfer-Encoding: chunked" if chunked else "Connection: close")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def chunk(self, data: bytes) -> None:
        self.send(chunk(data))

    def end_chunks(self) -> None:
        self.send(b"0\r\n\r\n")

    def upgrade(self, request: Request) -> None:
        """Answer a WebSocket upgrade request with 101 and its ``Sec-WebSocket-Accept``."""
        key = request.headers["sec-websocket-key"]
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        self.send(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )

    def hold(self) -> None:
        """Keep the connection open until the server closes."""
        self.server.stopped.wait()


#: answers one HTTP request; its return value becomes the connection's ``result``
Handler = Callable[[Conn, Request], object]
#: runs a whole connection (TCP, or a WebSocket after the upgrade); its return value is the ``result``
Script = Callable[[Conn], object]
#: an SSE body step: bytes to send, or a callable run in the connection's thread (e.g. ``event.wait``)
Step = Union[bytes, Callable[[], object]]


# ---------------------------------------------------------------------------------------- handlers


def sse(
    steps: Iterable[Step] = (),
    *,
    status: int = 200,
    content_type: Optional[str] = "text/event-stream",
    headers: Sequence[Tuple[str, str]] = (),
    chunked: bool = False,
    finish: str = "end",
) -> Handler:
    """Answer ``status`` and send ``steps`` as the body (a status other than 200: the bytes, with a
    Content-Length). ``finish``: ``"end"`` ends the body (0-chunk, or the close of a close-delimited
    body); ``"cut"`` closes without the terminating chunk; ``"hold"`` keeps the connection open until
    the server closes."""
    steps = list(steps)

    def handle(conn: Conn, req: Request) -> None:
        hdrs = list(headers)
        if content_type is not None:
            hdrs.insert(0, ("Content-Type", content_type))
        if status != 200:
            hdrs.append(("Content-Length", str(sum(len(s) for s in steps if isinstance(s, bytes)))))
            conn.head(status, hdrs)
            for s in steps:
                if isinstance(s, bytes):
                    conn.send(s)
            return
        conn.head(status, hdrs, chunked=chunked)
        for s in steps:
            if not isinstance(s, bytes):
                s()
            elif chunked:
                conn.chunk(s)
            else:
                conn.send(s)
        if finish == "end" and chunked:
            conn.end_chunks()
        elif finish == "hold":
            conn.hold()

    return handle


def reply(status: int, body: bytes = b"", headers: Sequence[Tuple[str, str]] = ()) -> Handler:
    """A plain HTTP answer with a Content-Length body."""

    def handle(conn: Conn, req: Request) -> None:
        conn.head(status, [*headers, ("Content-Length", str(len(body)))])
        conn.send(body)

    return handle


def respond(data: bytes, *, hold: bool = False) -> Handler:
    """Send ``data`` as it is (a refused or a malformed upgrade answer); ``hold`` keeps the
    connection open until the server closes."""

    def handle(conn: Conn, req: Request) -> None:
        conn.send(data)
        if hold:
            conn.hold()

    return handle


def ws_script(script: Optional[Script] = None) -> Handler:
    """Accept the WebSocket upgrade, then run ``script(conn)`` (frames: :func:`ws_frame`,
    :meth:`Conn.read_frame`, :meth:`Conn.read_close_code`); ``conn.index`` tells the attempts apart."""

    def handle(conn: Conn, req: Request) -> object:
        conn.upgrade(req)
        return script(conn) if script is not None else None

    return handle


def echo(conn: Conn) -> None:
    """TCP: send back what arrives, until the client half-closes."""
    while data := conn.recv():
        conn.send(data)


def sink(conn: Conn) -> None:
    """TCP: read (and record) until the client half-closes."""
    while conn.recv():
        pass


def source(payload: bytes) -> Script:
    """TCP: send ``payload``, then read until the client half-closes."""

    def run(conn: Conn) -> None:
        conn.send(payload)
        sink(conn)

    return run


# ---------------------------------------------------------------------------------------- the server


class RawServer:
    """A threaded raw server on ``host`` (port 0); see the module docstring.

    ``handlers`` answer HTTP requests in order (the last one repeats; none: 404); ``tcp`` instead
    runs a script on each bare connection. ``ssl_context`` makes it TLS (the handshake runs on the
    connection's thread); ``timeout`` bounds every socket operation (None: unbounded, for
    benchmarks); ``rcvbuf`` sets SO_RCVBUF of the accepted sockets (a peer that stops reading).
    """

    def __init__(
        self,
        handlers: Union[Handler, Sequence[Handler]] = (),
        *,
        tcp: Optional[Script] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        host: str = "127.0.0.1",
        timeout: Optional[float] = 10.0,
        rcvbuf: Optional[int] = None,
    ) -> None:
        self.handlers: List[Handler] = [handlers] if callable(handlers) else list(handlers)
        self.tcp = tcp
        self.ssl_context = ssl_context
        self.host = host
        self.timeout = timeout
        self.requests: List[Request] = []
        self.conns: List[Conn] = []
        self.errors: List[BaseException] = []
        self.close_codes: List[Optional[int]] = []
        self.finished = 0
        self.stopped = threading.Event()
        self._cond = threading.Condition()
        self._live: List[Conn] = []
        self._threads: List[threading.Thread] = []
        self._joined: List[Conn] = []
        self._closed = False
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.listener.bind((host, 0))
        self.listener.listen(16)
        self.port: int = self.listener.getsockname()[1]
        self._accepter = threading.Thread(target=self._accept_loop, name="raw-server-accept", daemon=True)
        self._accepter.start()

    # -- for tests ------------------------------------------------------------------------

    def url(self, path: str = "/events/realtime") -> str:
        """An http(s) URL of this server (TLS: host ``localhost``, the name certificates carry)."""
        return f"{'https' if self.ssl_context else 'http'}://{self._url_host()}:{self.port}{path}"

    def ws_url(self, path: str = "/ws/realtime") -> str:
        """A ws(s) URL of this server."""
        return f"{'wss' if self.ssl_context else 'ws'}://{self._url_host()}:{self.port}{path}"

    @property
    def accepted(self) -> int:
        """Connections accepted so far."""
        with self._cond:
            return len(self.conns)

    @property
    def received(self) -> List[bytearray]:
        """What each connection read, in accept order (live buffers)."""
        with self._cond:
            return [c.received for c in self.conns]

    @property
    def recv_sizes(self) -> List[List[int]]:
        with self._cond:
            return [c.recv_sizes for c in self.conns]

    def total_received(self) -> int:
        with self._cond:
            return sum(len(c.received) for c in self.conns)

    def wait(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait until ``predicate()`` (checked at each accept, read, request, close code and end of
        a connection) holds; False on timeout."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_requests(self, n: int, timeout: float = 5.0) -> List[Request]:
        """The requests once there are ``n``; AssertionError on timeout."""
        if not self.wait(lambda: len(self.requests) >= n, timeout):
            raise AssertionError(f"expected {n} requests, got {len(self.requests)}")
        with self._cond:
            return list(self.requests)

    def join(self, index: int = 0, timeout: float = 5.0) -> object:
        """Wait for connection ``index`` to end; its handler's result, or its exception raised."""
        assert self.wait(lambda: len(self.conns) > index, timeout), f"connection {index} never came"
        conn = self.conns[index]
        assert conn.finished.wait(timeout), f"the handler of connection {index} did not finish"
        with self._cond:
            self._joined.append(conn)
        if conn.error is not None:
            raise conn.error
        return conn.result

    def close(self) -> None:
        """Stop accepting, end held streams, shut every socket down and join every thread (each
        handler closes its own socket). Raises if a thread is left, or if a handler failed with
        something other than a socket error that :meth:`join` did not report. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.stopped.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self._accepter.join(JOIN_TIMEOUT)  # no handler starts after this
        self.listener.close()
        with self._cond:
            for conn in self._live:
                try:
                    conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            threads = [self._accepter, *self._threads]
        for t in threads:
            t.join(JOIN_TIMEOUT)
        left = [t.name for t in threads if t.is_alive()]
        assert not left, f"raw server threads still running: {left}"
        with self._cond:
            failed = [
                c.error
                for c in self.conns
                if c.error is not None and not isinstance(c.error, (OSError, EOFError)) and c not in self._joined
            ]
        if failed:
            raise AssertionError(f"a raw server handler failed: {failed[0]!r}") from failed[0]

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------

    def _url_host(self) -> str:
        return "localhost" if self.ssl_context else self.host

    def _record_read(self, conn: Conn, data: bytes) -> None:
        with self._cond:
            conn.received += data
            if data:
                conn.recv_sizes.append(len(data))
            self._cond.notify_all()

    def _record_close_code(self, code: Optional[int]) -> None:
        with self._cond:
            self.close_codes.append(code)
            self._cond.notify_all()

    def _accept_loop(self) -> None:
        while not self.stopped.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self._cond:  # close() takes the lists under this lock: it joins every started handler
                if self.stopped.is_set():
                    sock.close()
                    return
                conn = Conn(self, sock, len(self.conns))
                self.conns.append(conn)
                self._live.append(conn)
                name = f"raw-server-conn-{conn.index}"
                t = threading.Thread(target=self._serve, args=(conn,), name=name, daemon=True)
                t.start()
                self._threads.append(t)
                self._cond.notify_all()

    def _serve(self, conn: Conn) -> None:
        """One connection, on its own thread: TLS, the request, the handler; then close the socket."""
        try:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.sock.settimeout(self.timeout)
            if self.ssl_context is not None and not self._wrap(conn):
                return
            if self.tcp is not None:
                conn.result = self.tcp(conn)
                return
            req = conn.read_request()
            if req is None:
                return
            with self._cond:
                index = len(self.requests)
                self.requests.append(req)
                self._cond.notify_all()
            handler = self.handlers[min(index, len(self.handlers) - 1)] if self.handlers else reply(404)
            conn.result = handler(conn, req)
        except Exception as exc:  # noqa: BLE001 - recorded: join() raises it, close() too unless a socket error
            conn.error = exc
        finally:
            with self._cond:  # close() shuts sockets down under this lock: never one closed here
                self._live.remove(conn)
                conn.sock.close()
                if conn.error is not None:
                    self.errors.append(conn.error)
                self.finished += 1
                conn.finished.set()
                self._cond.notify_all()

    def _wrap(self, conn: Conn) -> bool:
        """Put the TLS socket over the plain one in its place (close() then shuts that one down) and
        run the handshake; False when the server is closing."""
        assert self.ssl_context is not None
        tls = self.ssl_context.wrap_socket(conn.sock, server_side=True, do_handshake_on_connect=False)
        with self._cond:
            conn.sock = tls
            if self.stopped.is_set():  # close() may have shut the plain socket down, not this one
                return False
        tls.do_handshake()
        return True
