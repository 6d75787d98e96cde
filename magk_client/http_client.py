"""A small HTTP/1.1 client for the adapter's plain requests (``POST /commands``, ``GET /health``).

It uses the standard library's ``http.client`` on purpose: the adapter must be able to abort a
request that waits on a slow server, from another thread, at ``disconnect()`` (no thread outlives
it), and ``http.client`` exposes the socket to shut down. Everything else follows the transports'
rules (docs/protocol.rst, Authentication):

- the service's auth headers (``Authorization``, ``X-API-Key``, extra headers) on every request;
- one ``ssl.SSLContext`` (the service's: ``verify_tls``, ``ca_bundle``, client certificate) for
  https; no environment variable (``REQUESTS_CA_BUNDLE``, proxies, netrc) is read;
- redirects are never followed (a 3xx is an answer like any other, for the caller to refuse);
- every failure leaves as a classified :class:`~magk_client.errors.MagkConnectionError` whose text
  names the redacted URL only, never a credential.

Connections are kept alive in a small idle pool and used by one request at a time. Thread use:
:meth:`HttpClient.request` from any thread; :meth:`HttpClient.close` from any thread makes every
request in progress fail at once, and every later one.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Set, Tuple
from urllib.parse import urlsplit

from .errors import MagkConnectionError, MagkTimeoutError, NetworkError, ProtocolError, redact_url

__all__ = ["HttpClient", "HttpReply"]

_USER_AGENT = "magk-client"


@dataclass(frozen=True)
class HttpReply:
    """A complete answer: status, headers (lower-case names) and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class _Aborted(Exception):
    pass


class HttpClient:
    """Plain requests to one origin (scheme, host, port) with the given headers and TLS context."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        ssl_context: Optional[ssl.SSLContext] = None,
        connect_timeout: float = 10.0,
        max_body: int = 16 * 1024 * 1024,
        max_idle: int = 8,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be an http(s) URL with a host")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._origin = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
        self._headers = dict(headers)
        self._secrets = tuple(v for v in self._headers.values() if len(v) >= 4)
        self._ctx = ssl_context if ssl_context is not None else (ssl.create_default_context() if self._https else None)
        self._connect_timeout = connect_timeout
        self._max_body = max_body
        self._max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: List[http.client.HTTPConnection] = []
        self._active: Set[http.client.HTTPConnection] = set()
        self._generation = 0
        self._closed = False

    def url(self, path: str) -> str:
        """The full URL of ``path`` (redacted: for messages)."""
        return redact_url(self._origin + self._prefix + path)

    # -- requests ---------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Optional[bytes] = None,
        timeout: float = 10.0,
        headers: Optional[Mapping[str, str]] = None,
    ) -> HttpReply:
        """Send one request and read the whole answer within ``timeout`` seconds per socket operation.

        Raises :class:`NetworkError` (refused, reset, cut off, aborted), :class:`MagkTimeoutError`, or
        :class:`ProtocolError` (a malformed or oversized answer). A request that fails on a kept-alive
        connection before any answer arrived is tried once more on a new one (the server may have
        closed the idle connection); the adapter's requests are idempotent (``requestId``, GET).
        """
        all_headers = dict(self._headers)
        all_headers["User-Agent"] = _USER_AGENT
        all_headers["Accept"] = "application/json"
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        if headers:
            all_headers.update(headers)
        target = self._prefix + path
        where = self.url(path)
        for attempt in (1, 2):
            acquired = self._acquire()
            if acquired is None:
                raise NetworkError(f"{method} {where} not sent: the client is closed")
            conn, reused, generation = acquired
            try:
                reply = self._exchange(conn, method, target, body, all_headers, timeout)
            except (_Aborted, OSError, http.client.HTTPException, ValueError) as exc:
                self._discard(conn)
                if isinstance(exc, _Aborted) or self._aborted_since(generation):
                    raise NetworkError(f"{method} {where} aborted: the client is disconnecting") from None
                stale = isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                if stale and reused and attempt == 1:
                    continue
                raise self._translate(exc, method, where) from None
            keep = reply[1]
            self._release(conn, generation, keep)
            return reply[0]
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        target: str,
        body: Optional[bytes],
        headers: Dict[str, str],
        timeout: float,
    ) -> Tuple[HttpReply, bool]:
        if conn.sock is None:
            conn.timeout = self._connect_timeout
            conn.connect()
            with self._lock:
                if conn not in self._active:  # aborted while connecting
                    raise _Aborted()
        sock = conn.sock
        assert sock is not None
        sock.settimeout(max(0.001, timeout))
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read(self._max_body + 1)
        if len(data) > self._max_body:
            raise ValueError(f"answer larger than {self._max_body} bytes")
        reply = HttpReply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        return reply, not resp.will_close

    def _translate(self, exc: BaseException, method: str, where: str) -> MagkConnectionError:
        what = f"{method} {where}"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return NetworkError(f"{what}: TLS certificate verification failed", terminal=True)
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return MagkTimeoutError(f"{what} timed out")
        if isinstance(exc, ssl.SSLError):
            return NetworkError(f"{what}: TLS error ({exc.reason or type(exc).__name__})")
        if isinstance(exc, ValueError):
            return ProtocolError(f"{what}: {self._scrub(str(exc))[:200]}")
        if isinstance(exc, http.client.HTTPException) and not isinstance(exc, http.client.RemoteDisconnected):
            if isinstance(exc, http.client.IncompleteRead):
                return NetworkError(f"{what}: the answer was cut off")
            return ProtocolError(f"{what}: malformed answer ({type(exc).__name__})")
        if isinstance(exc, OSError) and exc.strerror:
            return NetworkError(f"{what} failed: {exc.strerror}")
        return NetworkError(f"{what} failed: {type(exc).__name__}")

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            for value in (secret, secret.split(" ", 1)[-1]):
                if len(value) >= 4:
                    text = text.replace(value, "***")
        return text

    # -- the connection pool ---------------------------------------------------------------------

    def _new_connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self._connect_timeout, context=self._ctx
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self._connect_timeout)

    def _acquire(self) -> Optional[Tuple[http.client.HTTPConnection, bool, int]]:
        with self._lock:
            if self._closed:
                return None
            conn = self._idle.pop() if self._idle else None
            reused = conn is not None
            if conn is None:
                conn = self._new_connection()
            self._active.add(conn)
            return conn, reused, self._generation

    def _aborted_since(self, generation: int) -> bool:
        with self._lock:
            return self._generation != generation

    def _release(self, conn: http.client.HTTPConnection, generation: int, keep: bool) -> None:
        with self._lock:
            self._active.discard(conn)
            if keep and generation == self._generation and len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def _discard(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._active.discard(conn)
        conn.close()

    def close(self) -> None:
        """Fail every request in progress at once (their sockets are shut down), close the idle
        connections, and refuse later requests. Safe from any thread; idempotent."""
        with self._lock:
            self._closed = True
            self._generation += 1
            active = list(self._active)
            self._active.clear()
            idle, self._idle = self._idle, []
        for conn in active:
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for conn in idle:
            conn.close()
