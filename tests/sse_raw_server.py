"""A tiny raw HTTP/1.1 server on 127.0.0.1 for the SSE transport tests.

Plain sockets and one thread per connection, so a test controls the exact bytes,
the framing (chunked or close-delimited), the timing (a step can wait on a
``threading.Event``) and sees the exact request headers.
"""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

#: A body step: bytes to send, or a callable run in the server thread (e.g. ``event.wait``).
Step = Union[bytes, Callable[[], object]]


@dataclass
class Request:
    method: str
    path: str
    headers: Dict[str, str]  # lower-case names; values decoded as UTF-8 (Last-Event-ID is UTF-8)
    raw_head: bytes
    body: bytes = b""


class Conn:
    """The server side of one connection, handed to a handler."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def head(self, status: int, headers: Sequence[Tuple[str, str]] = (), *, chunked: bool = False) -> None:
        lines = [f"HTTP/1.1 {status} Status{status}"]
        for k, v in headers:
            lines.append(f"{k}: {v}")
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        else:
            lines.append("Connection: close")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def chunk(self, data: bytes) -> None:
        if data:
            self.send(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunks(self) -> None:
        self.send(b"0\r\n\r\n")


Handler = Callable[[Conn, Request], None]


def sse(
    steps: Iterable[Step] = (),
    *,
    status: int = 200,
    content_type: Optional[str] = "text/event-stream",
    headers: Sequence[Tuple[str, str]] = (),
    chunked: bool = False,
    finish: str = "end",
) -> Handler:
    """A handler answering with ``status`` and sending ``steps`` as the body.

    ``finish``: ``"end"`` ends the body cleanly (0-chunk, or FIN when close-delimited);
    ``"cut"`` closes without the terminating chunk; ``"hold"`` keeps the connection
    open until the server stops.
    """
    steps = list(steps)

    def handle(conn: Conn, req: Request) -> None:
        hdrs = list(headers)
        if content_type is not None:
            hdrs.insert(0, ("Content-Type", content_type))
        if status != 200:
            hdrs.append(("Content-Length", str(sum(len(s) for s in steps if isinstance(s, bytes)))))
            conn.head(status, hdrs, chunked=False)
            for s in steps:
                if isinstance(s, bytes):
                    conn.send(s)
            return
        conn.head(status, hdrs, chunked=chunked)
        for s in steps:
            if isinstance(s, bytes):
                if chunked:
                    conn.chunk(s)
                else:
                    conn.send(s)
            else:
                s()
        if finish == "end" and chunked:
            conn.end_chunks()
        elif finish == "hold":
            conn.hold = True  # type: ignore[attr-defined]

    return handle


def reply(status: int, body: bytes = b"", headers: Sequence[Tuple[str, str]] = ()) -> Handler:
    """A plain HTTP answer with a Content-Length body."""

    def handle(conn: Conn, req: Request) -> None:
        hdrs = [*headers, ("Content-Length", str(len(body)))]
        conn.head(status, hdrs)
        conn.send(body)

    return handle


@dataclass
class RawServer:
    """``handlers`` answer requests in order (the last one repeats)."""

    handlers: List[Handler] = field(default_factory=list)
    ssl_context: Optional[ssl.SSLContext] = None
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        self.requests: List[Request] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._socks: List[socket.socket] = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((self.host, 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self._accepter = threading.Thread(target=self._accept_loop, name="raw-sse-accept", daemon=True)
        self._accepter.start()

    # -- helpers for tests ---------------------------------------------------------------

    def url(self, path: str = "/events/realtime") -> str:
        scheme = "https" if self.ssl_context else "http"
        host = "localhost" if self.ssl_context else self.host
        return f"{scheme}://{host}:{self.port}{path}"

    def wait_requests(self, n: int, timeout: float = 5.0) -> List[Request]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= n, timeout):
                raise AssertionError(f"expected {n} requests, got {len(self.requests)}")
            return list(self.requests)

    def close(self) -> None:
        """Stop accepting, wake every handler (its socket is shut down, a held stream ends) and join
        every thread. Each handler closes its own socket: none is closed under a running handler."""
        self._stop.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self._accepter.join(5)  # no handler starts after this
        self.listener.close()
        with self._cond:
            for s in self._socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            threads = list(self._threads)
        for t in threads:
            t.join(5)

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self._cond:  # close() takes the lists under this lock: it joins every started handler
                if self._stop.is_set():
                    sock.close()
                    return
                self._socks.append(sock)
                t = threading.Thread(target=self._serve, args=(sock,), name="raw-sse-conn", daemon=True)
                t.start()
                self._threads.append(t)

    def _serve(self, sock: socket.socket) -> None:
        """One connection (its own thread): read the request, run its handler, close the socket."""
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                tls = self._wrap(sock)
                sock = tls
                if self._stop.is_set():  # close() may have shut the plain socket down, not this one
                    return
                try:
                    tls.do_handshake()
                except (ssl.SSLError, OSError):
                    return
            req = self._read_request(sock)
            if req is None:
                return
            with self._cond:
                index = len(self.requests)
                self.requests.append(req)
                self._cond.notify_all()
            handler = self.handlers[min(index, len(self.handlers) - 1)]
            conn = Conn(sock)
            handler(conn, req)
            if getattr(conn, "hold", False):
                self._stop.wait()
        except OSError:
            pass
        finally:
            with self._cond:  # close() shuts sockets down under this lock: never one closed here
                if sock in self._socks:
                    self._socks.remove(sock)
                sock.close()

    def _wrap(self, sock: socket.socket) -> ssl.SSLSocket:
        """The TLS socket over ``sock``, in its place in the list close() shuts down (no handshake yet)."""
        assert self.ssl_context is not None
        wrapped = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._cond:
            self._socks.remove(sock)
            self._socks.append(wrapped)
        return wrapped

    @staticmethod
    def _read_request(sock: socket.socket) -> Optional[Request]:
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            if not data:
                return None
            buf += data
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        method, path, _ = lines[0].decode("latin-1").split(" ", 2)
        headers: Dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.decode("latin-1").strip().lower()] = v.strip().decode("utf-8", "replace")
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            data = sock.recv(65536)
            if not data:
                break
            rest += data
        return Request(method, path, headers, head, rest[:length])
