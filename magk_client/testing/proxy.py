"""A fault-injecting TCP proxy for tests on loopback.

``FaultProxy`` sits between a client under test and a real server (both on loopback) and forwards bytes
both ways, while a test injects the faults of ``FAULTS.md``: resets, a silent peer, a peer that stops
reading, latency and jitter, low bandwidth, tiny segments, a cut mid-stream, refused or hanging connects::

    with FaultProxy("127.0.0.1", backend_port) as proxy:
        client = connect(proxy.url("ws://127.0.0.1:%d/ws" % backend_port))
        proxy.wait_for_connections(1, timeout=5)
        proxy.reset_peer()                      # the client sees ECONNRESET

Threading model
    One daemon thread, ``magk-proxy-<port>``, runs a ``selectors`` loop over non-blocking sockets: the
    listener, every client and upstream socket, and a wake-up socket pair. It owns all sockets and all
    fault state. Control methods (``reset_peer``, ``blackhole``, ...) may be called from any thread: each
    one queues a small command, wakes the loop and waits (bounded) until the loop has applied it, so when
    the method returns the fault is in force for existing *and* new connections. ``close()`` stops the loop,
    aborts every connection, closes every socket and joins the thread with a bound. No other thread is
    ever started.

Semantics worth knowing
    - ``blackhole`` and ``stop_reading`` *hold* bytes rather than drop them: the proxy simply stops reading
      (and, for ``blackhole``, stops writing what it already holds). This is what a network partition that
      later heals looks like to TCP: nothing passes while it lasts, and the stream is intact afterwards.
      While a connection is blackholed the proxy does not notice that its client has gone away; it is
      cleaned up when the blackhole is lifted or the proxy is closed.
    - ``refuse(True)`` closes the listening socket, so new connects get a real ``ConnectionRefusedError``
      (connects still waiting in the listen backlog are reset). ``refuse(False)`` binds a new listener on
      the *same* port (``SO_REUSEADDR``). Established connections are not affected.
    - ``hang_accept(True)`` accepts TCP connections but never connects upstream and never answers (bytes
      from the client are read and discarded, so a client that gives up is noticed and cleaned up).
      ``hang_accept(False)`` resets the connections it held; established connections are not affected.
    - ``limit_data(n, direction)`` arms a one-shot, proxy-wide budget: after ``n`` more bytes have been
      forwarded in that direction, the connection that carried the last byte is cut with RST on both sides
      and the limit disarms itself (so the client's reconnect works). The proxy waits (at most 2 s) until
      the kernel has handed the last bytes to the receiver before it resets, so the receiver reads
      exactly ``n`` bytes and then ``ECONNRESET``.
    - An error or reset on one side of a connection resets the other side; a FIN is passed on as a FIN
      (half-close) once the bytes before it have been forwarded. If the upstream connect fails (server
      down) or takes over 10 s, the already-accepted client connection is reset.
    - Byte counters move just after each ``send()``: use :meth:`FaultProxy.wait_until` to wait for them.
    - Latency is applied per chunk read, in each direction (a round trip costs twice the latency); the
      order of bytes in a direction is always preserved, jitter included. Bandwidth is a per-connection,
      per-direction cap.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import random
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:  # typing.Self is Python 3.11+
    import typing_extensions

try:
    import fcntl
    import termios

    _TIOCOUTQ: int | None = getattr(termios, "TIOCOUTQ", None)
except ImportError:  # pragma: no cover - not on Windows
    _TIOCOUTQ = None

__all__ = ["FaultProxy"]

logger = logging.getLogger("magk_client.testing.proxy")

T = TypeVar("T")

_READ_SIZE = 65536
_HIGH_WATER = 1 << 20  # bytes held per direction before the proxy stops reading that side
_MAX_SENDS_PER_TURN = 2048  # keep one slow, sliced pipe from starving the others
_BANDWIDTH_QUANTUM = 0.02  # seconds of traffic sent per send() when throttled
_CUT_DRAIN_TIMEOUT = 2.0
_CUT_POLL = 0.002
_CONNECT_TIMEOUT = 10.0
_CONTROL_TIMEOUT = 10.0
_JOIN_TIMEOUT = 5.0
_LINGER_RST = struct.pack("ii", 1, 0)
_DIRECTIONS = ("up", "down")
_SCHEMES = ("http", "https", "ws", "wss")

_HUNG = "hung"
_CONNECTING = "connecting"
_OPEN = "open"
_CUTTING = "cutting"
_CLOSED = "closed"


def _loopback(host: str, what: str) -> str:
    """Return ``host`` as a literal loopback IP address, or raise ``ValueError``."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ValueError(f"{what} must be a loopback IP address or 'localhost', got {host!r}") from None
    if not ip.is_loopback:
        raise ValueError(f"{what} must be a loopback address, got {host!r}")
    return str(ip)


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _nodelay(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # pragma: no cover - e.g. the peer already reset
        pass


def _unsent(sock: socket.socket) -> int:
    """Bytes still in the kernel send queue (not yet acknowledged by the receiver); 0 when unknown."""
    if _TIOCOUTQ is None:  # pragma: no cover - not on Linux
        return 0
    try:
        raw = fcntl.ioctl(sock.fileno(), _TIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return int(struct.unpack("i", raw)[0])


class _Command(Generic[T]):
    """A control action run on the loop thread; the caller waits on ``done``."""

    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except Exception as exc:  # noqa: BLE001 - handed to the calling thread, which re-raises it
            self.error = exc
        finally:
            self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


class _Pipe:
    """One direction of one connection: bytes read from ``src``, held with their due time, sent to ``dst``."""

    __slots__ = (
        "direction",
        "dst",
        "eof",
        "last_due",
        "next_send",
        "offset",
        "queue",
        "queued",
        "shut",
        "src",
        "want_write",
    )

    def __init__(self, direction: str, src: socket.socket, dst: socket.socket) -> None:
        self.direction = direction
        self.src = src
        self.dst = dst
        self.queue: deque[tuple[float, bytes]] = deque()
        self.queued = 0  # bytes in ``queue`` not yet sent
        self.offset = 0  # bytes of ``queue[0]`` already sent
        self.last_due = 0.0  # due times never go backwards: order is kept under jitter
        self.next_send = 0.0  # bandwidth / slice pacing
        self.eof = False  # ``src`` sent FIN
        self.shut = False  # FIN passed on to ``dst``
        self.want_write = False  # ``dst`` was full: wait for it to become writable


class _Conn:
    __slots__ = ("cid", "client", "deadline", "down", "peer", "state", "up", "upstream")

    def __init__(self, cid: int, client: socket.socket, peer: Any) -> None:
        self.cid = cid
        self.client = client
        self.peer = peer
        self.upstream: socket.socket | None = None
        self.state = _CONNECTING
        self.up: _Pipe | None = None  # client -> upstream
        self.down: _Pipe | None = None  # upstream -> client
        self.deadline = 0.0  # connect timeout, or the end of a cut's drain

    def sockets(self) -> list[socket.socket]:
        return [s for s in (self.client, self.upstream) if s is not None]


class FaultProxy:
    """A TCP proxy on loopback with fault injection for tests; see the module docstring.

    ``FaultProxy(upstream_host, upstream_port)`` listens at once on ``listen_host`` (default 127.0.0.1),
    port ``listen_port`` (default 0: any free port), and forwards every accepted connection to
    ``upstream_host:upstream_port``. Only loopback addresses are accepted. Use it as a context manager, or
    call :meth:`close`.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        seed: int | None = None,
    ) -> None:
        upstream_ip = _loopback(upstream_host, "upstream_host")
        if not 0 < int(upstream_port) < 65536:
            raise ValueError(f"upstream_port out of range: {upstream_port!r}")
        self.host: str = _loopback(listen_host, "listen_host")
        self._upstream: tuple[str, int] = (upstream_ip, int(upstream_port))
        self._rng = random.Random(seed)

        # Counters and the command queue: shared with other threads, guarded by ``_cond``.
        self._cond = threading.Condition(threading.RLock())
        self._accepted = 0
        self._active = 0
        self._bytes = {"up": 0, "down": 0}
        self._resets = 0
        self._commands: deque[_Command[Any]] = deque()
        self._closing = False

        # Fault state and sockets: touched only by the loop thread (control methods run there).
        self._blackhole = False
        self._stop_reading = False
        self._latency = 0.0
        self._jitter = 0.0
        self._rate: float | None = None
        self._slice: int | None = None
        self._slice_interval = 0.0
        self._limits: dict[str, int | None] = {"up": None, "down": None}
        self._hang = False
        self._conns: dict[int, _Conn] = {}
        self._next_cid = 0
        self._interest: dict[socket.socket, int] = {}

        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._listener: socket.socket | None = None
        try:
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._listener = self._open_listener(listen_port)
            self.port: int = int(self._listener.getsockname()[1])
            self._sel.register(self._wake_r, selectors.EVENT_READ)
            self._sel.register(self._listener, selectors.EVENT_READ)
            self._thread = threading.Thread(target=self._run, name=f"magk-proxy-{self.port}", daemon=True)
            self._thread.start()
        except BaseException:
            if self._listener is not None:
                self._listener.close()
            self._sel.close()
            self._wake_r.close()
            self._wake_w.close()
            raise
        logger.debug("proxy %s:%d -> %s:%d started", self.host, self.port, *self._upstream)

    # ------------------------------------------------------------------ public API

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the proxy listens on."""
        return (self.host, self.port)

    def url(self, base_url: str) -> str:
        """``base_url`` (http, https, ws or wss) with its host and port replaced by the proxy's.

        Path, query, fragment and user info are kept. (Over https/wss the client then checks the
        certificate against the proxy's host, 127.0.0.1.)
        """
        parts = urlsplit(base_url)
        if parts.scheme.lower() not in _SCHEMES:
            raise ValueError(f"unsupported URL scheme in {base_url!r}; expected one of {_SCHEMES}")
        userinfo = parts.netloc.rpartition("@")[0]
        host = f"[{self.host}]" if ":" in self.host else self.host
        netloc = f"{userinfo + '@' if userinfo else ''}{host}:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def reset_peer(self) -> int:
        """Abort every current connection with RST on both sides; return how many were reset."""
        def apply() -> int:
            conns = list(self._conns.values())
            for conn in conns:
                self._drop(conn, rst=True, reason="reset_peer")
            return len(conns)

        count = self._submit(apply)
        logger.info("reset_peer: reset %d connection(s)", count)
        return count

    def blackhole(self, enabled: bool = True) -> None:
        """Stop (or resume) forwarding in both directions, keeping the sockets open (a silent peer).

        Bytes are held, not dropped: when the blackhole is lifted they are delivered in order.
        """
        self._set("_blackhole", bool(enabled))

    def stop_reading(self, enabled: bool = True) -> None:
        """Stop (or resume) reading from clients, so a client that sends a lot blocks in ``send``."""
        self._set("_stop_reading", bool(enabled))

    def set_latency(self, seconds: float, jitter: float = 0.0) -> None:
        """Delay every chunk by ``seconds`` +/- uniform ``jitter`` in each direction, keeping order."""
        if seconds < 0 or jitter < 0:
            raise ValueError("latency and jitter must be >= 0")

        def apply() -> None:
            self._latency = float(seconds)
            self._jitter = float(jitter)

        self._submit(apply)

    def set_bandwidth(self, bytes_per_second: float | None) -> None:
        """Cap each direction of each connection at ``bytes_per_second``; ``None`` removes the cap."""
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be > 0 or None")

        def apply() -> None:
            self._rate = None if bytes_per_second is None else float(bytes_per_second)
            self._reset_pacing()

        self._submit(apply)

    def set_slice(self, size: int | None, interval: float = 0.0) -> None:
        """Forward in separate ``send()`` calls of at most ``size`` bytes (``None``: no slicing).

        With ``interval`` > 0 the proxy also waits that long between slices, so the receiver reliably
        sees them as separate reads. Sockets use ``TCP_NODELAY``, so each slice is its own segment.
        """
        if size is not None and size < 1:
            raise ValueError("size must be >= 1 or None")
        if interval < 0:
            raise ValueError("interval must be >= 0")

        def apply() -> None:
            self._slice = None if size is None else int(size)
            self._slice_interval = float(interval) if size is not None else 0.0
            self._reset_pacing()

        self._submit(apply)

    def limit_data(self, n_bytes: int | None, direction: str = "down") -> None:
        """Cut (RST) the connection that carries the ``n_bytes``-th next byte in ``direction``.

        ``direction`` is ``"down"`` (server to client) or ``"up"``. One-shot and proxy-wide: the limit
        disarms after it fires. ``None`` disarms it. ``0`` cuts the next connection that forwards
        anything in that direction, before it forwards a byte.
        """
        if direction not in _DIRECTIONS:
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
        if n_bytes is not None and n_bytes < 0:
            raise ValueError("n_bytes must be >= 0 or None")

        def apply() -> None:
            self._limits[direction] = None if n_bytes is None else int(n_bytes)

        self._submit(apply)

    def refuse(self, enabled: bool = True) -> None:
        """Close the listener (new connects are refused), or reopen it on the same port.

        Raises ``OSError`` if the port was taken in the meantime.
        """
        def apply() -> None:
            if enabled and self._listener is not None:
                self._sel.unregister(self._listener)
                self._listener.close()
                self._listener = None
                logger.info("refuse: listener on port %d closed", self.port)
            elif not enabled and self._listener is None:
                listener = self._open_listener(self.port)
                self._sel.register(listener, selectors.EVENT_READ)
                self._listener = listener
                logger.info("refuse off: listening again on port %d", self.port)

        self._submit(apply)

    def hang_accept(self, enabled: bool = True) -> None:
        """Accept new connections but never forward or answer them (a handshake that hangs).

        Turning it off resets the connections held so far.
        """
        def apply() -> None:
            self._hang = bool(enabled)
            if not enabled:
                for conn in list(self._conns.values()):
                    if conn.state == _HUNG:
                        self._drop(conn, rst=True, reason="hang_accept released")

        self._submit(apply)

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted since the start (held ``hang_accept`` ones included)."""
        with self._cond:
            return self._accepted

    @property
    def active_connections(self) -> int:
        """Connections currently open through the proxy."""
        with self._cond:
            return self._active

    @property
    def connections_reset(self) -> int:
        """Connections the proxy aborted with RST (faults, upstream errors, close())."""
        with self._cond:
            return self._resets

    @property
    def bytes_up(self) -> int:
        """Bytes forwarded from clients to the upstream server.

        Byte counters move just after each ``send()``, so a receiver may see bytes a moment before they
        are counted: wait with :meth:`wait_until` rather than asserting at once.
        """
        with self._cond:
            return self._bytes["up"]

    @property
    def bytes_down(self) -> int:
        """Bytes forwarded from the upstream server to clients."""
        with self._cond:
            return self._bytes["down"]

    def wait_for_connections(self, n: int, timeout: float | None = None) -> bool:
        """Wait until at least ``n`` connections have been accepted in total; False on timeout."""
        return self.wait_until(lambda proxy: proxy.connections_accepted >= n, timeout)

    def wait_until(self, predicate: Callable[[FaultProxy], bool], timeout: float | None = None) -> bool:
        """Wait until ``predicate(proxy)`` holds; re-checked whenever a counter changes. False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def close(self) -> None:
        """Abort all connections, close all sockets and join the loop thread. Idempotent."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("FaultProxy.close() called from its own loop thread")
        with self._cond:
            self._closing = True
        self._wake()
        self._thread.join(_JOIN_TIMEOUT)
        if self._thread.is_alive():  # pragma: no cover - the loop never blocks
            logger.error("proxy loop thread %s did not stop within %.1f s", self._thread.name, _JOIN_TIMEOUT)
            return
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> typing_extensions.Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<FaultProxy {self.host}:{self.port} -> {self._upstream[0]}:{self._upstream[1]}"
                f" active={self.active_connections}>")

    # ------------------------------------------------------------------ control plumbing

    def _submit(self, fn: Callable[[], T]) -> T:
        if threading.current_thread() is self._thread:
            return fn()
        cmd = _Command(fn)
        with self._cond:
            if self._closing:
                raise RuntimeError("FaultProxy is closed")
            self._commands.append(cmd)
        self._wake()
        if not cmd.done.wait(_CONTROL_TIMEOUT):  # pragma: no cover - the loop never blocks
            raise RuntimeError("FaultProxy loop did not apply the command in time")
        if cmd.error is not None:
            raise cmd.error
        return cast(T, cmd.result)

    def _set(self, attr: str, value: bool) -> None:
        def apply() -> None:
            setattr(self, attr, value)

        self._submit(apply)
        logger.info("%s = %s", attr.lstrip("_"), value)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (a wake-up is pending anyway) or already closed
            pass

    def _count(self, direction: str, n: int) -> None:
        with self._cond:
            self._bytes[direction] += n
            self._cond.notify_all()

    def _open_listener(self, port: int) -> socket.socket:
        sock = socket.socket(_family(self.host), socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, port))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    # ------------------------------------------------------------------ the loop (loop thread only)

    def _run(self) -> None:
        try:
            while True:
                self._run_commands()
                with self._cond:
                    if self._closing:
                        break
                timeout = self._service(time.monotonic())
                self._sync_interest()
                for key, mask in self._sel.select(timeout):
                    self._dispatch(key, mask & key.events)
        except Exception:  # pragma: no cover - a bug; keep close() and the callers from hanging
            logger.exception("proxy loop crashed")
        finally:
            self._shutdown()

    def _run_commands(self) -> None:
        while True:
            with self._cond:
                if not self._commands:
                    return
                cmd = self._commands.popleft()
            cmd.run()

    def _shutdown(self) -> None:
        for conn in list(self._conns.values()):
            self._drop(conn, rst=True, reason="proxy closed")
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._sel.close()
        with self._cond:
            self._closing = True
            pending = list(self._commands)
            self._commands.clear()
        for cmd in pending:
            cmd.fail(RuntimeError("FaultProxy is closed"))
        logger.debug("proxy on port %d stopped", self.port)

    def _dispatch(self, key: selectors.SelectorKey, mask: int) -> None:
        if key.fileobj is self._wake_r:
            try:
                while self._wake_r.recv(4096):
                    pass
            except OSError:
                pass
            return
        if key.fileobj is self._listener:
            self._accept()
            return
        conn, role = cast(tuple[_Conn, str], key.data)
        if conn.state == _CLOSED:
            return
        if conn.state == _HUNG:
            self._discard(conn)
        elif conn.state == _CONNECTING:
            if role == "upstream" and mask & selectors.EVENT_WRITE:
                self._finish_connect(conn)
        elif conn.state == _OPEN:
            assert conn.up is not None and conn.down is not None
            inbound, outbound = (conn.up, conn.down) if role == "client" else (conn.down, conn.up)
            if mask & selectors.EVENT_WRITE:
                outbound.want_write = False  # flushed by the next _service()
            if mask & selectors.EVENT_READ:
                self._read(conn, inbound)

    def _accept(self) -> None:
        for _ in range(64):
            if self._listener is None:
                return
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.warning("accept failed: %s", exc)
                return
            sock.setblocking(False)
            _nodelay(sock)
            self._next_cid += 1
            conn = _Conn(self._next_cid, sock, peer)
            self._conns[conn.cid] = conn
            with self._cond:
                self._accepted += 1
                self._active += 1
                self._cond.notify_all()
            if self._hang:
                conn.state = _HUNG
                logger.debug("conn %d from %s accepted and held (hang_accept)", conn.cid, peer)
            else:
                self._connect_upstream(conn)

    def _connect_upstream(self, conn: _Conn) -> None:
        try:
            upstream = socket.socket(_family(self._upstream[0]), socket.SOCK_STREAM)
        except OSError as exc:
            self._drop(conn, rst=True, reason=f"cannot create upstream socket: {exc}")
            return
        conn.upstream = upstream
        upstream.setblocking(False)
        _nodelay(upstream)
        err = upstream.connect_ex(self._upstream)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            self._drop(conn, rst=True, reason=f"upstream connect failed: {errno.errorcode.get(err, err)}")
            return
        conn.up = _Pipe("up", conn.client, upstream)
        conn.down = _Pipe("down", upstream, conn.client)
        conn.state = _CONNECTING
        conn.deadline = time.monotonic() + _CONNECT_TIMEOUT
        logger.debug("conn %d from %s: connecting upstream", conn.cid, conn.peer)

    def _finish_connect(self, conn: _Conn) -> None:
        assert conn.upstream is not None
        err = conn.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._drop(conn, rst=True, reason=f"upstream connect failed: {errno.errorcode.get(err, err)}")
            return
        conn.state = _OPEN
        logger.debug("conn %d open", conn.cid)

    def _discard(self, conn: _Conn) -> None:
        """A held (hung) connection: read and drop what the client sends, notice when it goes away."""
        try:
            data = conn.client.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn, rst=False, reason="client left a held connection")

    def _read(self, conn: _Conn, pipe: _Pipe) -> None:
        try:
            data = pipe.src.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop(conn, rst=True, reason=f"recv {pipe.direction} failed: {exc}")
            return
        if not data:
            pipe.eof = True
            return
        now = time.monotonic()
        delay = self._latency
        if self._jitter:
            delay = max(0.0, delay + self._rng.uniform(-self._jitter, self._jitter))
        due = max(now + delay, pipe.last_due)
        pipe.last_due = due
        pipe.queue.append((due, data))
        pipe.queued += len(data)

    def _service(self, now: float) -> float | None:
        """Forward what is due on every connection; return the select() timeout."""
        deadline: float | None = None
        for conn in list(self._conns.values()):
            d = self._service_conn(conn, now)
            if d is not None and (deadline is None or d < deadline):
                deadline = d
        return None if deadline is None else max(0.0, deadline - now)

    def _service_conn(self, conn: _Conn, now: float) -> float | None:
        if conn.state == _CONNECTING:
            if now >= conn.deadline:
                self._drop(conn, rst=True, reason="upstream connect timed out")
                return None
            return conn.deadline
        if conn.state == _CUTTING:
            if now >= conn.deadline or all(_unsent(s) == 0 for s in conn.sockets()):
                self._drop(conn, rst=True, reason="limit_data reached")
                return None
            return now + _CUT_POLL
        if conn.state != _OPEN:
            return None
        assert conn.up is not None and conn.down is not None
        deadline: float | None = None
        for pipe in (conn.up, conn.down):
            d = self._flush(conn, pipe, now)
            if conn.state == _CUTTING:
                return now
            if conn.state != _OPEN:
                return None
            if d is not None and (deadline is None or d < deadline):
                deadline = d
        if self._blackhole:
            return deadline
        for pipe in (conn.up, conn.down):
            if pipe.eof and not pipe.shut and not pipe.queue:
                try:
                    pipe.dst.shutdown(socket.SHUT_WR)
                except OSError as exc:
                    self._drop(conn, rst=True, reason=f"shutdown {pipe.direction} failed: {exc}")
                    return None
                pipe.shut = True
        if conn.up.shut and conn.down.shut:
            self._drop(conn, rst=False, reason="closed by both ends")
            return None
        return deadline

    def _flush(self, conn: _Conn, pipe: _Pipe, now: float) -> float | None:
        """Send the due part of ``pipe``'s queue; return when to try again, if it is a timer."""
        if self._blackhole or pipe.want_write:
            return None
        sends = 0
        while pipe.queue:
            due, data = pipe.queue[0]
            if due > now:
                return due
            if pipe.next_send > now:
                return pipe.next_send
            size = len(data) - pipe.offset
            if self._slice is not None:
                size = min(size, self._slice)
            if self._rate is not None:
                size = min(size, max(1, int(self._rate * _BANDWIDTH_QUANTUM)))
            limit = self._limits[pipe.direction]
            if limit is not None:
                if limit <= 0:
                    self._begin_cut(conn, pipe, now)
                    return None
                size = min(size, limit)
            try:
                sent = pipe.dst.send(memoryview(data)[pipe.offset:pipe.offset + size])
            except (BlockingIOError, InterruptedError):
                pipe.want_write = True
                return None
            except OSError as exc:
                self._drop(conn, rst=True, reason=f"send {pipe.direction} failed: {exc}")
                return None
            pipe.offset += sent
            pipe.queued -= sent
            if pipe.offset >= len(data):
                pipe.queue.popleft()
                pipe.offset = 0
            self._count(pipe.direction, sent)
            now = time.monotonic()
            if self._rate is not None:
                pipe.next_send = max(pipe.next_send, now) + sent / self._rate
            if self._slice is not None and self._slice_interval > 0:
                pipe.next_send = max(pipe.next_send, now + self._slice_interval)
            if limit is not None:
                self._limits[pipe.direction] = limit - sent
                if limit - sent <= 0:
                    self._begin_cut(conn, pipe, now)
                    return None
            sends += 1
            if sends >= _MAX_SENDS_PER_TURN:
                return now  # come back after one select() round
        return None

    def _begin_cut(self, conn: _Conn, pipe: _Pipe, now: float) -> None:
        self._limits[pipe.direction] = None  # one-shot
        conn.state = _CUTTING
        conn.deadline = now + _CUT_DRAIN_TIMEOUT
        logger.info("limit_data: cutting conn %d (%s)", conn.cid, pipe.direction)

    def _reset_pacing(self) -> None:
        for conn in self._conns.values():
            for pipe in (conn.up, conn.down):
                if pipe is not None:
                    pipe.next_send = 0.0

    def _can_read(self, pipe: _Pipe) -> bool:
        return not (pipe.eof or self._blackhole or pipe.queued >= _HIGH_WATER
                    or (pipe.direction == "up" and self._stop_reading))

    def _sync_interest(self) -> None:
        read, write = selectors.EVENT_READ, selectors.EVENT_WRITE
        for conn in self._conns.values():
            client_mask = upstream_mask = 0
            if conn.state == _HUNG:
                client_mask = read
            elif conn.state == _CONNECTING:
                upstream_mask = write
            elif conn.state == _OPEN:
                assert conn.up is not None and conn.down is not None
                client_mask = read if self._can_read(conn.up) else 0
                if conn.down.want_write:
                    client_mask |= write
                upstream_mask = read if self._can_read(conn.down) else 0
                if conn.up.want_write:
                    upstream_mask |= write
            self._set_interest(conn.client, client_mask, (conn, "client"))
            if conn.upstream is not None:
                self._set_interest(conn.upstream, upstream_mask, (conn, "upstream"))

    def _set_interest(self, sock: socket.socket, mask: int, data: object) -> None:
        current = self._interest.get(sock, 0)
        if mask == current:
            return
        if current == 0:
            self._sel.register(sock, mask, data)
        elif mask == 0:
            self._sel.unregister(sock)
        else:
            self._sel.modify(sock, mask, data)
        if mask:
            self._interest[sock] = mask
        else:
            self._interest.pop(sock, None)

    def _drop(self, conn: _Conn, *, rst: bool, reason: str) -> None:
        """Close both sockets of ``conn`` (with RST when ``rst``) and forget it."""
        if conn.state == _CLOSED:
            return
        conn.state = _CLOSED
        for sock in conn.sockets():
            self._set_interest(sock, 0, None)
            if rst:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                except OSError:
                    pass
            sock.close()
        self._conns.pop(conn.cid, None)
        with self._cond:
            self._active -= 1
            if rst:
                self._resets += 1
            self._cond.notify_all()
        logger.debug("conn %d closed (%s%s)", conn.cid, reason, ", RST" if rst else "")
