"""A fault-injecting TCP proxy for tests on loopback.

``FaultProxy`` sits between a client under test and a real server (both on loopback) and forwards bytes
both ways, while a test injects the faults of ``docs/faults.rst``: resets, a silent peer, a peer that stops
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

    The parts behind :class:`FaultProxy` live in ``magk_client.testing._proxy``: the fault plan (pure),
    the relay of one connection, and the loop thread.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from ._proxy.loop import ProxyLoop
from ._proxy.plan import DIRECTIONS, FaultPlan

if TYPE_CHECKING:  # typing.Self is Python 3.11+
    import typing_extensions

__all__ = ["FaultProxy"]

logger = logging.getLogger("magk_client.testing.proxy")

_SCHEMES = ("http", "https", "ws", "wss")


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


class FaultProxy:
    """A TCP proxy on loopback with fault injection for tests; see the module docstring.

    ``FaultProxy(upstream_host, upstream_port)`` listens at once on ``listen_host`` (default 127.0.0.1),
    port ``listen_port`` (default 0: any free port), and forwards every accepted connection to
    ``upstream_host:upstream_port``. Only loopback addresses are accepted. Use it as a context manager, or
    call :meth:`close`.

    Threads: the constructor starts ``magk-proxy-<port>``, which owns every socket and the fault plan;
    every control method may be called from any other thread, and returns once the loop applied it.
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
        self._plan = FaultPlan(seed)  # loop thread only: control methods change it through submit
        self._loop = ProxyLoop(self.host, listen_port, self._upstream, self._plan)
        self.port: int = self._loop.port
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
        count = self._loop.submit(self._loop.reset_all)
        logger.info("reset_peer: reset %d connection(s)", count)
        return count

    def blackhole(self, enabled: bool = True) -> None:
        """Stop (or resume) forwarding in both directions, keeping the sockets open (a silent peer).

        Bytes are held, not dropped: when the blackhole is lifted they are delivered in order.
        """
        self._set("blackhole", bool(enabled))

    def stop_reading(self, enabled: bool = True) -> None:
        """Stop (or resume) reading from clients, so a client that sends a lot blocks in ``send``."""
        self._set("stop_reading", bool(enabled))

    def set_latency(self, seconds: float, jitter: float = 0.0) -> None:
        """Delay every chunk by ``seconds`` +/- uniform ``jitter`` in each direction, keeping order."""
        if seconds < 0 or jitter < 0:
            raise ValueError("latency and jitter must be >= 0")

        def apply() -> None:
            self._plan.latency = float(seconds)
            self._plan.jitter = float(jitter)

        self._loop.submit(apply)

    def set_bandwidth(self, bytes_per_second: float | None) -> None:
        """Cap each direction of each connection at ``bytes_per_second``; ``None`` removes the cap."""
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be > 0 or None")

        def apply() -> None:
            self._plan.rate = None if bytes_per_second is None else float(bytes_per_second)
            self._loop.reset_pacing()

        self._loop.submit(apply)

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
            self._plan.slice = None if size is None else int(size)
            self._plan.slice_interval = float(interval) if size is not None else 0.0
            self._loop.reset_pacing()

        self._loop.submit(apply)

    def limit_data(self, n_bytes: int | None, direction: str = "down") -> None:
        """Cut (RST) the connection that carries the ``n_bytes``-th next byte in ``direction``.

        ``direction`` is ``"down"`` (server to client) or ``"up"``. One-shot and proxy-wide: the limit
        disarms after it fires. ``None`` disarms it. ``0`` cuts the next connection that forwards
        anything in that direction, before it forwards a byte.
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
        if n_bytes is not None and n_bytes < 0:
            raise ValueError("n_bytes must be >= 0 or None")

        def apply() -> None:
            self._plan.limits[direction] = None if n_bytes is None else int(n_bytes)

        self._loop.submit(apply)

    def refuse(self, enabled: bool = True) -> None:
        """Close the listener (new connects are refused), or reopen it on the same port.

        Raises ``OSError`` if the port was taken in the meantime.
        """
        self._loop.submit(lambda: self._loop.listen(not enabled))

    def hang_accept(self, enabled: bool = True) -> None:
        """Accept new connections but never forward or answer them (a handshake that hangs).

        Turning it off resets the connections held so far.
        """
        def apply() -> None:
            self._plan.hang = bool(enabled)
            if not enabled:
                self._loop.reset_all(held_only=True)

        self._loop.submit(apply)

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted since the start (held ``hang_accept`` ones included)."""
        return self._loop.counts().accepted

    @property
    def active_connections(self) -> int:
        """Connections currently open through the proxy."""
        return self._loop.counts().active

    @property
    def connections_reset(self) -> int:
        """Connections the proxy aborted with RST (faults, upstream errors, close())."""
        return self._loop.counts().reset

    @property
    def bytes_up(self) -> int:
        """Bytes forwarded from clients to the upstream server.

        Byte counters move just after each ``send()``, so a receiver may see bytes a moment before they
        are counted: wait with :meth:`wait_until` rather than asserting at once.
        """
        return self._loop.counts().bytes_up

    @property
    def bytes_down(self) -> int:
        """Bytes forwarded from the upstream server to clients."""
        return self._loop.counts().bytes_down

    def wait_for_connections(self, n: int, timeout: float | None = None) -> bool:
        """Wait until at least ``n`` connections have been accepted in total; False on timeout."""
        return self.wait_until(lambda proxy: proxy.connections_accepted >= n, timeout)

    def wait_until(self, predicate: Callable[[FaultProxy], bool], timeout: float | None = None) -> bool:
        """Wait until ``predicate(proxy)`` holds; re-checked whenever a counter changes. False on timeout."""
        with self._loop.cond:
            return self._loop.cond.wait_for(lambda: predicate(self), timeout)

    def close(self) -> None:
        """Abort all connections, close all sockets and join the loop thread. Idempotent."""
        self._loop.close()

    def __enter__(self) -> typing_extensions.Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<FaultProxy {self.host}:{self.port} -> {self._upstream[0]}:{self._upstream[1]}"
                f" active={self.active_connections}>")

    # ------------------------------------------------------------------ control plumbing

    def _set(self, attr: str, value: bool) -> None:
        def apply() -> None:
            setattr(self._plan, attr, value)

        self._loop.submit(apply)
        logger.info("%s = %s", attr, value)
