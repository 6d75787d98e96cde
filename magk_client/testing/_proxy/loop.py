"""The one thread of a :class:`~magk_client.testing.FaultProxy`: a ``selectors`` loop over the listener,
every relay's sockets and a wake-up socket pair.

:class:`ProxyLoop` owns every socket, every :class:`Relay` and the :class:`FaultPlan`; only its thread,
``magk-proxy-<port>``, touches them. Other threads queue control functions with :meth:`ProxyLoop.submit`
and read the counters, which are guarded by :attr:`ProxyLoop.cond`.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar, cast

from .plan import FaultPlan
from .relay import CLOSED, HUNG, Relay, family, nodelay

__all__ = ["Counts", "ProxyLoop"]

logger = logging.getLogger("magk_client.testing.proxy")

T = TypeVar("T")

_CONTROL_TIMEOUT = 10.0
_JOIN_TIMEOUT = 5.0


class Counts(NamedTuple):
    """A snapshot of the proxy's counters."""

    accepted: int
    active: int
    reset: int
    bytes_up: int
    bytes_down: int


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


class ProxyLoop:
    """Listens on ``host:port`` and relays every accepted connection to ``upstream`` under ``plan``.

    The thread starts in the constructor (the port is bound by then) and ends with :meth:`close`.
    """

    def __init__(self, host: str, port: int, upstream: tuple[str, int], plan: FaultPlan) -> None:
        self.host = host
        self.upstream = upstream
        self.plan = plan

        # Counters and the command queue: shared with other threads, guarded by ``cond``.
        self.cond = threading.Condition(threading.RLock())
        self._accepted = 0
        self._active = 0
        self._bytes = {"up": 0, "down": 0}
        self._resets = 0
        self._commands: deque[_Command[Any]] = deque()
        self._closing = False

        # Sockets and relays: loop thread only.
        self._conns: dict[int, Relay] = {}
        self._next_cid = 0
        self._interest: dict[socket.socket, int] = {}
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._listener: socket.socket | None = None
        try:
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._listener = self._open_listener(port)
            self.port: int = int(self._listener.getsockname()[1])
            self._sel.register(self._wake_r, selectors.EVENT_READ)
            self._sel.register(self._listener, selectors.EVENT_READ)
            self.thread = threading.Thread(target=self._run, name=f"magk-proxy-{self.port}", daemon=True)
            self.thread.start()
        except BaseException:
            if self._listener is not None:
                self._listener.close()
            self._sel.close()
            self._wake_r.close()
            self._wake_w.close()
            raise

    # -- any thread ----------------------------------------------------------------------------------

    def counts(self) -> Counts:
        with self.cond:
            return Counts(self._accepted, self._active, self._resets, self._bytes["up"], self._bytes["down"])

    def submit(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the loop thread and return its result (or raise its error); bounded wait."""
        if threading.current_thread() is self.thread:
            return fn()
        cmd = _Command(fn)
        with self.cond:
            if self._closing:
                raise RuntimeError("FaultProxy is closed")
            self._commands.append(cmd)
        self._wake()
        if not cmd.done.wait(_CONTROL_TIMEOUT):  # pragma: no cover - the loop never blocks
            raise RuntimeError("FaultProxy loop did not apply the command in time")
        if cmd.error is not None:
            raise cmd.error
        return cast(T, cmd.result)

    def close(self) -> None:
        """Stop the loop (it aborts every relay and closes every socket) and join the thread."""
        if threading.current_thread() is self.thread:
            raise RuntimeError("FaultProxy.close() called from its own loop thread")
        with self.cond:
            self._closing = True
        self._wake()
        self.thread.join(_JOIN_TIMEOUT)
        if self.thread.is_alive():  # pragma: no cover - the loop never blocks
            logger.error("proxy loop thread %s did not stop within %.1f s", self.thread.name, _JOIN_TIMEOUT)
            return
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (a wake-up is pending anyway) or already closed
            pass

    # -- control actions (loop thread, through submit) -----------------------------------------------

    def reset_all(self, held_only: bool = False) -> int:
        """Drop every relay (only the held ``hang_accept`` ones with ``held_only``) with RST; how many."""
        conns = [c for c in self._conns.values() if not held_only or c.state == HUNG]
        for conn in conns:
            self.drop(conn, rst=True, reason="hang_accept released" if held_only else "reset_peer")
        return len(conns)

    def reset_pacing(self) -> None:
        for conn in self._conns.values():
            conn.reset_pacing()

    def listen(self, enabled: bool) -> None:
        """Close the listener, or open a new one on the same port."""
        if not enabled and self._listener is not None:
            self._sel.unregister(self._listener)
            self._listener.close()
            self._listener = None
            logger.info("refuse: listener on port %d closed", self.port)
        elif enabled and self._listener is None:
            listener = self._open_listener(self.port)
            self._sel.register(listener, selectors.EVENT_READ)
            self._listener = listener
            logger.info("refuse off: listening again on port %d", self.port)

    # -- Hooks of the relays (loop thread) -----------------------------------------------------------

    def count(self, direction: str, n: int) -> None:
        with self.cond:
            self._bytes[direction] += n
            self.cond.notify_all()

    def drop(self, conn: Relay, *, rst: bool, reason: str) -> None:
        """Close both sockets of ``conn`` (with RST when ``rst``) and forget it."""
        if conn.state == CLOSED:
            return
        for sock in conn.sockets():
            self._set_interest(sock, 0, None)
        conn.close(rst)
        self._conns.pop(conn.cid, None)
        with self.cond:
            self._active -= 1
            if rst:
                self._resets += 1
            self.cond.notify_all()
        logger.debug("conn %d closed (%s%s)", conn.cid, reason, ", RST" if rst else "")

    # -- the loop ------------------------------------------------------------------------------------

    def _open_listener(self, port: int) -> socket.socket:
        sock = socket.socket(family(self.host), socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, port))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _run(self) -> None:
        try:
            while True:
                self._run_commands()
                with self.cond:
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
            with self.cond:
                if not self._commands:
                    return
                cmd = self._commands.popleft()
            cmd.run()

    def _shutdown(self) -> None:
        for conn in list(self._conns.values()):
            self.drop(conn, rst=True, reason="proxy closed")
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._sel.close()
        with self.cond:
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
        conn, role = cast(tuple[Relay, str], key.data)
        conn.on_ready(role, mask)

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
            nodelay(sock)
            self._next_cid += 1
            conn = Relay(self._next_cid, sock, peer, self.plan, self)
            self._conns[conn.cid] = conn
            with self.cond:
                self._accepted += 1
                self._active += 1
                self.cond.notify_all()
            if self.plan.hang:
                conn.state = HUNG
                logger.debug("conn %d from %s accepted and held (hang_accept)", conn.cid, peer)
            else:
                conn.connect_upstream(self.upstream)

    def _service(self, now: float) -> float | None:
        """Forward what is due on every connection; return the select() timeout."""
        deadline: float | None = None
        for conn in list(self._conns.values()):
            d = conn.service(now)
            if d is not None and (deadline is None or d < deadline):
                deadline = d
        return None if deadline is None else max(0.0, deadline - now)

    def _sync_interest(self) -> None:
        for conn in self._conns.values():
            client_mask, upstream_mask = conn.interest()
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
