"""One connection through a :class:`~magk_client.testing.FaultProxy`: client socket, upstream socket, and
a pipe per direction that reads, holds (with due times) and forwards bytes under the :class:`FaultPlan`.

Loop thread only. A relay never closes itself: it asks its :class:`Hooks` (the loop) to drop it, so that
the selector forgets its sockets first.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import struct
import time
from collections import deque
from typing import Any, Protocol

from .plan import FaultPlan

try:
    import fcntl
    import termios

    _TIOCOUTQ: int | None = getattr(termios, "TIOCOUTQ", None)
except ImportError:  # pragma: no cover - not on Windows
    _TIOCOUTQ = None

__all__ = ["CLOSED", "CONNECTING", "HUNG", "OPEN", "Hooks", "Pipe", "Relay", "family", "nodelay"]

logger = logging.getLogger("magk_client.testing.proxy")

_READ_SIZE = 65536
_HIGH_WATER = 1 << 20  # bytes held per direction before the proxy stops reading that side
_MAX_SENDS_PER_TURN = 2048  # keep one slow, sliced pipe from starving the others
_CUT_DRAIN_TIMEOUT = 2.0
_CUT_POLL = 0.002
_CONNECT_TIMEOUT = 10.0
_LINGER_RST = struct.pack("ii", 1, 0)

HUNG = "hung"
CONNECTING = "connecting"
OPEN = "open"
CUTTING = "cutting"
CLOSED = "closed"


def family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def nodelay(sock: socket.socket) -> None:
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


class Hooks(Protocol):
    """What a relay asks of the loop that owns it."""

    def drop(self, conn: Relay, *, rst: bool, reason: str) -> None: ...

    def count(self, direction: str, n: int) -> None: ...


class Pipe:
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


class Relay:
    """One proxied connection, from accept (or hang) through connect, forwarding and cut, to closed."""

    __slots__ = ("cid", "client", "deadline", "down", "hooks", "peer", "plan", "state", "up", "upstream")

    def __init__(self, cid: int, client: socket.socket, peer: Any, plan: FaultPlan, hooks: Hooks) -> None:
        self.cid = cid
        self.client = client
        self.peer = peer
        self.plan = plan
        self.hooks = hooks
        self.upstream: socket.socket | None = None
        self.state = CONNECTING
        self.up: Pipe | None = None  # client -> upstream
        self.down: Pipe | None = None  # upstream -> client
        self.deadline = 0.0  # connect timeout, or the end of a cut's drain

    def sockets(self) -> list[socket.socket]:
        return [s for s in (self.client, self.upstream) if s is not None]

    def close(self, rst: bool) -> None:
        """Close both sockets (with RST when ``rst``); the loop has unregistered them."""
        self.state = CLOSED
        for sock in self.sockets():
            if rst:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                except OSError:
                    pass
            sock.close()

    # -- connecting ----------------------------------------------------------------------------------

    def connect_upstream(self, address: tuple[str, int]) -> None:
        try:
            upstream = socket.socket(family(address[0]), socket.SOCK_STREAM)
        except OSError as exc:
            self.hooks.drop(self, rst=True, reason=f"cannot create upstream socket: {exc}")
            return
        self.upstream = upstream
        upstream.setblocking(False)
        nodelay(upstream)
        err = upstream.connect_ex(address)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            self.hooks.drop(self, rst=True, reason=f"upstream connect failed: {errno.errorcode.get(err, err)}")
            return
        self.up = Pipe("up", self.client, upstream)
        self.down = Pipe("down", upstream, self.client)
        self.state = CONNECTING
        self.deadline = time.monotonic() + _CONNECT_TIMEOUT
        logger.debug("conn %d from %s: connecting upstream", self.cid, self.peer)

    def _finish_connect(self) -> None:
        assert self.upstream is not None
        err = self.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.hooks.drop(self, rst=True, reason=f"upstream connect failed: {errno.errorcode.get(err, err)}")
            return
        self.state = OPEN
        logger.debug("conn %d open", self.cid)

    # -- selector events -----------------------------------------------------------------------------

    def on_ready(self, role: str, mask: int) -> None:
        """``role`` (``"client"`` or ``"upstream"``) socket is ready for ``mask``."""
        if self.state == HUNG:
            self._discard()
        elif self.state == CONNECTING:
            if role == "upstream" and mask & selectors.EVENT_WRITE:
                self._finish_connect()
        elif self.state == OPEN:
            assert self.up is not None and self.down is not None
            inbound, outbound = (self.up, self.down) if role == "client" else (self.down, self.up)
            if mask & selectors.EVENT_WRITE:
                outbound.want_write = False  # flushed by the next service()
            if mask & selectors.EVENT_READ:
                self._read(inbound)

    def interest(self) -> tuple[int, int]:
        """The selector masks the client and the upstream socket need now."""
        read, write = selectors.EVENT_READ, selectors.EVENT_WRITE
        client_mask = upstream_mask = 0
        if self.state == HUNG:
            client_mask = read
        elif self.state == CONNECTING:
            upstream_mask = write
        elif self.state == OPEN:
            assert self.up is not None and self.down is not None
            client_mask = read if self._can_read(self.up) else 0
            if self.down.want_write:
                client_mask |= write
            upstream_mask = read if self._can_read(self.down) else 0
            if self.up.want_write:
                upstream_mask |= write
        return client_mask, upstream_mask

    def _can_read(self, pipe: Pipe) -> bool:
        return not (pipe.eof or pipe.queued >= _HIGH_WATER) and self.plan.may_read(pipe.direction)

    def _discard(self) -> None:
        """A held (hung) connection: read and drop what the client sends, notice when it goes away."""
        try:
            data = self.client.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.hooks.drop(self, rst=False, reason="client left a held connection")

    def _read(self, pipe: Pipe) -> None:
        try:
            data = pipe.src.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.hooks.drop(self, rst=True, reason=f"recv {pipe.direction} failed: {exc}")
            return
        if not data:
            pipe.eof = True
            return
        due = self.plan.due(time.monotonic(), pipe.last_due)
        pipe.last_due = due
        pipe.queue.append((due, data))
        pipe.queued += len(data)

    # -- timers and forwarding -----------------------------------------------------------------------

    def service(self, now: float) -> float | None:
        """Forward what is due, pass FINs on, time out connects and cuts; when to come back, if ever."""
        if self.state == CONNECTING:
            if now >= self.deadline:
                self.hooks.drop(self, rst=True, reason="upstream connect timed out")
                return None
            return self.deadline
        if self.state == CUTTING:
            if now >= self.deadline or all(_unsent(s) == 0 for s in self.sockets()):
                self.hooks.drop(self, rst=True, reason="limit_data reached")
                return None
            return now + _CUT_POLL
        if self.state != OPEN:
            return None
        assert self.up is not None and self.down is not None
        deadline: float | None = None
        for pipe in (self.up, self.down):
            d = self._flush(pipe, now)
            if self.state == CUTTING:
                return now
            if self.state != OPEN:
                return None
            if d is not None and (deadline is None or d < deadline):
                deadline = d
        if self.plan.blackhole:
            return deadline
        for pipe in (self.up, self.down):
            if pipe.eof and not pipe.shut and not pipe.queue:
                try:
                    pipe.dst.shutdown(socket.SHUT_WR)
                except OSError as exc:
                    self.hooks.drop(self, rst=True, reason=f"shutdown {pipe.direction} failed: {exc}")
                    return None
                pipe.shut = True
        if self.up.shut and self.down.shut:
            self.hooks.drop(self, rst=False, reason="closed by both ends")
            return None
        return deadline

    def _flush(self, pipe: Pipe, now: float) -> float | None:
        """Send the due part of ``pipe``'s queue; return when to try again, if it is a timer."""
        if self.plan.blackhole or pipe.want_write:
            return None
        sends = 0
        while pipe.queue:
            due, data = pipe.queue[0]
            if due > now:
                return due
            if pipe.next_send > now:
                return pipe.next_send
            size = self.plan.send_size(pipe.direction, len(data) - pipe.offset)
            if size is None:
                self._begin_cut(pipe, now)
                return None
            try:
                sent = pipe.dst.send(memoryview(data)[pipe.offset:pipe.offset + size])
            except (BlockingIOError, InterruptedError):
                pipe.want_write = True
                return None
            except OSError as exc:
                self.hooks.drop(self, rst=True, reason=f"send {pipe.direction} failed: {exc}")
                return None
            pipe.offset += sent
            pipe.queued -= sent
            if pipe.offset >= len(data):
                pipe.queue.popleft()
                pipe.offset = 0
            self.hooks.count(pipe.direction, sent)
            now = time.monotonic()
            pipe.next_send, spent = self.plan.after_send(pipe.direction, sent, now, pipe.next_send)
            if spent:
                self._begin_cut(pipe, now)
                return None
            sends += 1
            if sends >= _MAX_SENDS_PER_TURN:
                return now  # come back after one select() round
        return None

    def _begin_cut(self, pipe: Pipe, now: float) -> None:
        self.plan.disarm(pipe.direction)
        self.state = CUTTING
        self.deadline = now + _CUT_DRAIN_TIMEOUT
        logger.info("limit_data: cutting conn %d (%s)", self.cid, pipe.direction)

    def reset_pacing(self) -> None:
        for pipe in (self.up, self.down):
            if pipe is not None:
                pipe.next_send = 0.0
