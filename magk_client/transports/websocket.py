"""The WebSocket transport: websocket-client's low-level ``WebSocket`` driven by our threads.

What websocket-client does here: the HTTP upgrade handshake (``WebSocket.connect`` on a
socket we connected and, for ``wss``, wrapped with *our* :class:`ssl.SSLContext`) and the
masking of the frames we send (``ABNF``). What this module does itself, and why:

* **Reading frames.** websocket-client's frame reader reads a frame's payload before
  anything can look at its length (docs/faults.rst row 17: a header claiming 2**62 bytes must fail
  at once), cannot say whether a complete frame is already buffered without blocking, and
  costs about 10 us per frame. ``receive()`` reads the socket in 64 KiB chunks into the
  buffer of a sans-I/O :class:`~magk_client.transports.ws_frames.FrameReader` (every RFC
  6455 rule, size limit and UTF-8 rule is decided there) and returns all complete messages
  as one batch. A frame larger than 256 KiB is read with ``recv_into`` into one buffer of
  its exact size, after its length was checked against ``max_message_size``.
* **The handshake** (:mod:`~magk_client.transports.ws_handshake`): TCP, TLS with our
  context, then websocket-client's upgrade on that socket. Its errors are translated and
  raised *bare*: no ``__cause__`` or ``__context__``, since a library error can hold the
  server's whole answer (a hostile server echoes the ``Authorization`` header in its 401).
  websocket-client's trace (``websocket.enableTrace``) is redacted by a filter on its logger
  (:mod:`~magk_client.transports.ws_trace`) that scrubs this transport's credentials while it
  handshakes.
* **Liveness.** The socket is blocking after the handshake, with no read timeout (a
  timeout per read costs about 12 %); liveness is the service's heartbeat job, fed by
  :attr:`last_activity`, updated once per socket read.
* **Sending** is serialised by one lock that also covers the automatic pong and the close
  frame. The send deadline is enforced with ``SO_SNDTIMEO`` (send side only, so the
  reader's ``recv`` stays blocking): a peer that stops reading makes ``send`` raise
  :class:`MagkTimeoutError` within ``options.send_timeout``. A send that timed out may have
  left half a frame on the wire, so the connection is then dropped (the reader raises the
  same kind of error).

Behaviour decisions (what is raised when):

==========================================  =================================================
condition                                   error (all :class:`MagkConnectionError`)
==========================================  =================================================
refused / reset / unreachable / DNS         :class:`NetworkError`
TCP, TLS or handshake past connect_timeout  :class:`MagkTimeoutError`
TLS certificate verification failed         :class:`NetworkError`, ``terminal=True``, close 1015
handshake 3xx                               :class:`ProtocolError` "redirect refused", terminal
handshake 401/403, 5xx/429, 404/426, ...    :func:`classify_http_status` (``Retry-After`` kept)
not a WebSocket answer (bad accept key)     :class:`ProtocolError`
server close frame                          :func:`classify_close_code` (1000/1001
                                            :class:`TransportClosed`); an empty close frame is
                                            :class:`TransportClosed` with code 1005
EOF / reset without a close frame           :class:`NetworkError`, close_code 1006
masked frame, RSV bits, unknown opcode,     :class:`ProtocolError` (we close with 1002)
fragmented or >125-byte control frame, bad
continuation, bad close payload
invalid UTF-8 in a text message or reason  :class:`ProtocolError` (we close with 1007)
binary message that is not UTF-8            not an error: an invalid *message* (see below)
message over max_message_size (any length   :class:`MessageTooLargeError` (we close with 1009)
form, fragmented messages cumulatively)
``receive()`` after/while ``close()``       :class:`TransportClosed` "closed locally"
``send()`` after close or failure           :class:`NetworkError`
``send()`` past send_timeout                :class:`MagkTimeoutError` (connection dropped)
==========================================  =================================================

Messages that were complete before a failure in the same read are returned first; the
failure is raised by the next ``receive()``. Binary messages (whole or fragmented) that are
valid UTF-8 are decoded and returned like text: some servers send JSON in binary frames.
RFC 6455 requires UTF-8 of text messages only, so a binary message that is not UTF-8 leaves
the connection up: it is returned as an
:class:`~magk_client.transports.ws_frames.UndecodableMessage`, a ``str`` that is never valid
JSON, which the service drops, counts and reports like malformed JSON. An unsolicited pong is
ignored. Redirects are
never followed, so credentials never go to another host. Environment proxies and
``WEBSOCKET_CLIENT_CA_BUNDLE`` are not used: the socket is connected here and wrapped with
``options.ssl_context`` (a default verifying context for ``wss`` when it is ``None``).

Limits: DNS resolution (``getaddrinfo``) has no timeout of its own; the handshake deadline is
applied per phase (TCP, TLS, upgrade) with the time left, so a server trickling its answer
one byte at a time could stretch the upgrade phase. websocket-client keeps a process-wide
cookie jar: a ``Set-Cookie`` from a server is sent back to the same host on later handshakes.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import sys
import threading
import time
from typing import Callable, List, Optional, Tuple, TypeVar

from websocket import ABNF

from ..errors import (
    MagkConnectionError,
    MagkTimeoutError,
    MessageTooLargeError,
    NetworkError,
    ProtocolError,
    TransportClosed,
    classify_close_code,
    redact_url,
)
from ..models import ConnectionType
from ..retry_after import retry_after_from_headers
from .base import Inbound, Transport, TransportOptions
from .ws_frames import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_NO_STATUS,
    CLOSE_NORMAL,
    UNSENDABLE_CLOSE_CODES,
    CloseReceived,
    FrameReader,
    FrameViolation,
)
from .ws_handshake import connect_tcp, header_lines, parse_url, translate_open_error, upgrade
from .ws_trace import handshake_secrets, install_trace_filter

__all__ = ["WebSocketTransport"]

logger = logging.getLogger("magk_client.transports.websocket")

_READ_SIZE = 65536
#: frames needing more than this many further bytes are read into one exact-size buffer
_BIG_READ = 256 * 1024
_CLOSE_FRAME_TIMEOUT = 0.2


install_trace_filter()


def _set_send_timeout(sock: socket.socket, seconds: float) -> None:
    """Bound each blocking send() with SO_SNDTIMEO; the receive side stays untimed."""
    if sys.platform == "win32":  # pragma: no cover - a DWORD of milliseconds on Windows
        value = struct.pack("L", max(1, int(seconds * 1000)))
    else:
        whole = int(seconds)
        micro = int((seconds - whole) * 1_000_000)
        if whole == 0 and micro < 1000:
            micro = 1000  # zero would mean "block forever"
        value = struct.pack("ll", whole, micro)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


class WebSocketTransport(Transport):
    """One WebSocket connection (see the module docstring for every behaviour decision).

    Thread use: ``open()`` then ``receive()`` on the reader thread; ``send()`` and
    ``close()`` from any thread.
    """

    connection_type = ConnectionType.WEBSOCKET

    def __init__(self, options: TransportOptions) -> None:
        super().__init__(options)
        url = options.url
        if url.startswith("http://") or url.startswith("https://"):
            url = "ws" + url[4:]
        self._url = url
        self._where = redact_url(url)
        #: HTTP response headers of the handshake (lower-case names), after ``open()``.
        self.response_headers: dict = {}  # type: ignore[type-arg]
        self._send_timeout = float(options.send_timeout)

        self._state_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._sock: Optional[socket.socket] = None
        self._users = 0  # operations in flight on the socket (the fd is closed by the last)
        self._released = False
        self._opened = False
        self._failure: Optional[MagkConnectionError] = None
        self._send_broken = False  # half a frame may be on the wire: no more frames
        self._pending_pong: Optional[bytes] = None

        self._reader = FrameReader(int(options.max_message_size))  # receive state (reader thread only)
        self._ready = False  # handshake done: frames may be sent

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("open" if self._opened else "new")
        return f"<WebSocketTransport {self._where} {state}>"

    # ------------------------------------------------------------------ socket ownership

    def _hold(self) -> Optional[socket.socket]:
        with self._state_lock:
            if self._released or self._sock is None:
                return None
            self._users += 1
            return self._sock

    def _unhold(self) -> None:
        with self._state_lock:
            self._users -= 1
            release = self._closed.is_set() and self._users <= 0 and not self._released
            if release:
                self._released = True
            sock = self._sock
        if release and sock is not None:
            try:
                sock.close()
            except OSError:  # pragma: no cover - closing a socket does not fail on POSIX
                pass

    def _terminate(self, failure: MagkConnectionError, code: Optional[int]) -> bool:
        """Mark the transport closed with ``failure`` (first one wins), try a close frame
        with ``code`` (briefly), and shut the socket down so every blocked call returns."""
        with self._state_lock:
            if self._closed.is_set():
                return False
            self._failure = failure
            self._closed.set()
            sock = self._sock
            if sock is None or self._released:
                return True
            self._users += 1
        try:
            if code is not None and not self._send_broken:
                self._send_close_frame(sock, code)
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass
        finally:
            self._unhold()
        return True

    # ------------------------------------------------------------------ open

    def open(self, *, last_event_id: Optional[str] = None) -> None:
        with self._state_lock:
            if self._closed.is_set():
                raise self._failure or TransportClosed("closed locally")
            if self._opened:
                raise TransportClosed("a WebSocketTransport can be opened only once")
            self._opened = True
        deadline = time.monotonic() + float(self.options.connect_timeout)
        logger.debug("connecting to %s", self._where)
        with self._state_lock:
            self._users += 1  # open() itself uses the socket until it returns
        error: Optional[MagkConnectionError] = None
        try:
            with handshake_secrets(self.scrub):  # websocket-client's trace is redacted meanwhile
                self._open(last_event_id, deadline)
        except MagkConnectionError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - every library error is translated here
            error = self._translate_open_error(exc)
            logger.debug("connecting to %s failed: %s", self._where, error)
        except BaseException:
            self._terminate(TransportClosed("open() interrupted"), None)
            raise
        finally:
            self._unhold()
        if error is not None:
            # Raised here, outside the handlers, and bare: a library error (whose text may echo
            # the server's answer, credentials included) is never chained to ours.
            self._terminate(error, None)
            raise _bare(self._failure or error)
        logger.debug("connected to %s", self._where)

    def _check_open_alive(self) -> None:
        if self._closed.is_set():
            raise self._failure or TransportClosed("closed locally")

    def _adopt(self, sock: socket.socket) -> None:
        self._check_open_alive()
        with self._state_lock:
            self._sock = sock

    def _remaining(self, deadline: float, phase: str) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise MagkTimeoutError(
                f"WebSocket {phase} to {self._where} timed out after {self.options.connect_timeout:g}s"
            )
        return remaining

    def _open(self, last_event_id: Optional[str], deadline: float) -> None:
        scheme, host, port = parse_url(self._url, self._where)
        headers, dropped = header_lines(self.options.headers, last_event_id)
        if dropped:
            logger.warning("not sending a Last-Event-ID containing a line break or NUL")

        # TCP: each candidate socket is adopted first, so close() can shut it down
        sock = connect_tcp(host, port, lambda: self._remaining(deadline, "connect"), self._adopt)
        self._check_open_alive()

        # TLS, always with our context (never websocket-client's env/default CA handling)
        if scheme == "wss":
            context = self.options.ssl_context
            if context is None:
                context = ssl.create_default_context()
            if not isinstance(context, ssl.SSLContext):
                raise ProtocolError("ssl_context must be an ssl.SSLContext", terminal=True)
            sock.settimeout(self._remaining(deadline, "TLS handshake"))
            tls_sock = context.wrap_socket(sock, server_hostname=host)
            self._adopt(tls_sock)
            sock = tls_sock

        # HTTP upgrade, by websocket-client on our socket; redirects are never followed
        sock.settimeout(self._remaining(deadline, "handshake"))
        self.response_headers = upgrade(sock, self._url, self._where, headers)
        self._check_open_alive()

        # after the handshake: blocking reads, bounded sends
        sock.settimeout(None)
        _set_send_timeout(sock, self._send_timeout)
        self.last_activity = time.monotonic()
        self._ready = True

    def _translate_open_error(self, exc: Exception) -> MagkConnectionError:
        if self._closed.is_set():
            return self._failure or TransportClosed("closed locally")
        timeout = float(self.options.connect_timeout)
        return translate_open_error(
            exc, self._where, timeout, self.scrub, lambda headers: retry_after_from_headers(headers, time.time())
        )

    # ------------------------------------------------------------------ receive

    def receive(self) -> List[Inbound]:
        if self._closed.is_set():
            raise self._failure or TransportClosed("closed locally")
        out: List[Inbound] = []
        need = self._parse(out)
        while not out:
            self._fill(need)
            need = self._parse(out)
        return out

    def _fill(self, need: int) -> None:
        """Read at least once from the socket (more for a big frame) into the reader's buffer."""
        sock = self._hold()
        if sock is None:
            raise self._failure or NetworkError("WebSocket is not open")
        lost: Optional[OSError] = None
        try:
            if self._closed.is_set():
                raise self._failure or TransportClosed("closed locally")
            reader = self._reader
            have = reader.unread
            if need - have > _BIG_READ:
                big = reader.exact_buffer(need)
                view = memoryview(big)
                try:
                    while have < need:
                        n = sock.recv_into(view[have:], min(need - have, 1 << 20))
                        if not n:
                            self._eof()
                        have += n
                        self.last_activity = time.monotonic()
                finally:
                    view.release()
                reader.load(big)
            else:
                data = sock.recv(_READ_SIZE)
                if not data:
                    self._eof()
                self.last_activity = time.monotonic()
                reader.feed(data)
        except MagkConnectionError:  # ours (MagkTimeoutError is an OSError too)
            raise
        except OSError as exc:
            lost = exc
        finally:
            self._unhold()
        if lost is not None:  # raised here, outside the handler: nothing chained
            if self._closed.is_set():
                raise _bare(self._failure or TransportClosed("closed locally"))
            if isinstance(lost, ConnectionResetError):
                text = "connection reset by the server"
            else:
                text = f"connection lost: {getattr(lost, 'strerror', None) or lost.__class__.__name__}"
            error = NetworkError(text, close_code=1006)
            self._terminate(error, None)
            raise _bare(self._failure or error)

    def _eof(self) -> None:
        if self._closed.is_set():
            raise self._failure or TransportClosed("closed locally")
        error = NetworkError("connection lost without a close frame", close_code=1006)
        self._terminate(error, None)
        raise self._failure or error

    def _parse(self, out: List[Inbound]) -> int:
        """Decode every complete frame buffered into ``out`` and answer the latest ping; return
        how many bytes (from the current position) are needed to make progress. A violation or
        a close frame closes the connection; that is raised now if ``out`` is empty, else by
        the next receive()."""
        reader = self._reader
        failure: MagkConnectionError
        try:
            need = reader.parse(out)
        except FrameViolation as violation:
            logger.debug("closing %s with %d: %s", self._where, violation.code, violation)
            failure, reply = _violation_error(violation), violation.code
        except CloseReceived as closing:
            logger.debug("%s closed by the server with %s", self._where, closing.code)
            failure, reply = _close_error(closing, self.scrub)
        else:
            if reader.ping is not None:
                self._pong(reader.take_ping() or b"")
            return need
        self._terminate(failure, reply)
        if out:
            return 0
        raise _bare(self._failure or failure)  # outside the handler: nothing chained

    # ------------------------------------------------------------------ send

    def send(self, text: str) -> None:
        deadline = time.monotonic() + self._send_timeout
        if not self._ready or self._closed.is_set():
            raise NetworkError(
                "cannot send: the WebSocket is closed"
                if self._closed.is_set()
                else "cannot send: the WebSocket is not open"
            )
        data = ABNF.create_frame(text, ABNF.OPCODE_TEXT).format()
        if not self._send_lock.acquire(timeout=self._send_timeout):
            raise MagkTimeoutError(f"send timed out after {self._send_timeout:g}s waiting for another send to finish")
        try:
            self._write_locked(data, deadline)
        finally:
            self._release_send_lock()

    def _write_locked(self, data: bytes, deadline: float) -> None:
        """Write ``data`` before ``deadline`` (send lock held). On failure the connection is
        terminated (a partial frame may be on the wire) and a classified error raised."""
        if self._closed.is_set():
            raise NetworkError("cannot send: the WebSocket is closed")
        sock = self._hold()
        if sock is None:
            raise NetworkError("cannot send: the WebSocket is closed")
        view = memoryview(data)
        total = len(data)
        sent = 0
        adjusted = False
        try:
            remaining = deadline - time.monotonic()
            if remaining < self._send_timeout - 0.01:
                if remaining <= 0:
                    raise _SendTimeout
                _set_send_timeout(sock, remaining)
                adjusted = True
            while True:
                try:
                    sent += sock.send(view[sent:])
                except (BlockingIOError, ssl.SSLWantWriteError, socket.timeout):
                    pass  # SO_SNDTIMEO expired
                if sent >= total:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _SendTimeout
                _set_send_timeout(sock, remaining)
                adjusted = True
        except _SendTimeout:
            self._send_broken = True
            text = f"send of {total} bytes timed out after {self._send_timeout:g}s (peer not reading)"
            self._terminate(MagkTimeoutError(f"connection dropped: {text}"), None)
            raise MagkTimeoutError(text) from None
        except OSError as exc:
            self._send_broken = True
            if self._closed.is_set():
                raise NetworkError("cannot send: the WebSocket was closed") from None
            reason = exc.strerror or exc.__class__.__name__
            self._terminate(NetworkError(f"connection lost while sending: {reason}", close_code=1006), None)
            raise NetworkError(f"send failed: {reason}", close_code=1006) from None
        finally:
            view.release()
            if adjusted and not self._send_broken:
                try:
                    _set_send_timeout(sock, self._send_timeout)
                except OSError:
                    pass
            self._unhold()

    def _pong(self, payload: bytes) -> None:
        """Answer a ping. Never waits for the send lock: if a send is in progress, the
        sender answers (only the latest ping needs an answer, RFC 6455 5.5.3)."""
        self._pending_pong = payload
        if self._send_lock.acquire(blocking=False):
            self._flush_pong_locked()
            self._release_send_lock()

    def _release_send_lock(self) -> None:
        self._send_lock.release()
        while self._pending_pong is not None and self._send_lock.acquire(blocking=False):
            self._flush_pong_locked()
            self._send_lock.release()

    def _flush_pong_locked(self) -> None:
        payload = self._pending_pong
        self._pending_pong = None
        if payload is None or self._send_broken or self._closed.is_set():
            return
        try:
            frame = ABNF.create_frame(payload, ABNF.OPCODE_PONG).format()
            self._write_locked(frame, time.monotonic() + self._send_timeout)
        except MagkConnectionError:
            pass  # the connection is terminated; the reader reports it

    def _send_close_frame(self, sock: socket.socket, code: int) -> None:
        if not self._ready:
            return
        if code in UNSENDABLE_CLOSE_CODES or not 1000 <= code <= 4999:
            code = CLOSE_NORMAL
        if not self._send_lock.acquire(timeout=_CLOSE_FRAME_TIMEOUT / 2):
            return
        try:
            if self._send_broken:
                return
            self._send_broken = True  # nothing goes after a close frame
            frame = ABNF.create_frame(struct.pack("!H", code), ABNF.OPCODE_CLOSE).format()
            _set_send_timeout(sock, _CLOSE_FRAME_TIMEOUT / 2)
            sock.send(frame)
        except (OSError, ValueError):
            pass
        finally:
            self._send_lock.release()

    # ------------------------------------------------------------------ close

    def close(self, code: int = 1000) -> None:
        try:
            if self._terminate(TransportClosed("closed locally", close_code=code), code):
                logger.debug("closed %s locally (code %d)", self._where, code)
        except Exception:  # close() never raises
            logger.debug("error while closing %s", self._where, exc_info=True)


class _SendTimeout(Exception):
    """Internal: the send deadline passed."""


def _violation_error(violation: FrameViolation) -> MagkConnectionError:
    """Our error for the server's violation (1009: message too large, not terminal)."""
    code = violation.code
    if code == CLOSE_MESSAGE_TOO_BIG:
        return MessageTooLargeError(str(violation), close_code=code, terminal=False)
    return ProtocolError(str(violation), close_code=code, terminal=True)


def _close_error(closing: CloseReceived, scrub: Callable[[str], str]) -> Tuple[MagkConnectionError, int]:
    """Our error for the server's close frame, and the code to answer it with."""
    if closing.code is None:
        text = "server closed the WebSocket without a status code"
        return TransportClosed(text, close_code=CLOSE_NO_STATUS), CLOSE_NORMAL
    return classify_close_code(closing.code, scrub(closing.reason)), closing.code


_E = TypeVar("_E", bound=BaseException)


def _bare(error: _E) -> _E:
    """``error`` with no cause or context: what we raise never chains an exception whose text
    may hold a credential (``raise ... from None`` only hides the context, it stays reachable)."""
    error.__cause__ = None
    error.__context__ = None
    error.__suppress_context__ = True
    return error
