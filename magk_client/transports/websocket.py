"""The WebSocket transport: websocket-client's low-level ``WebSocket`` driven by our threads.

What websocket-client does here: the HTTP upgrade handshake (``WebSocket.connect`` on a
socket we connected and, for ``wss``, wrapped with *our* :class:`ssl.SSLContext`) and the
masking of the frames we send (``ABNF``). What this module does itself, and why:

* **Reading frames.** websocket-client's frame reader reads a frame's payload before
  anything can look at its length (FAULTS row 17: a header claiming 2**62 bytes must fail
  at once), cannot say whether a complete frame is already buffered without blocking, and
  costs about 10 us per frame. ``receive()`` reads the socket in 64 KiB chunks into its own
  buffer and decodes every complete frame in it with a small RFC 6455 client-side decoder,
  returning all complete messages as one batch. Lengths are checked against
  ``max_message_size`` (and fragmented messages cumulatively) before a payload is awaited;
  a frame larger than 256 KiB is read with ``recv_into`` into one buffer of its exact size.
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
invalid UTF-8 in a message                  :class:`ProtocolError` (we close with 1007)
message over max_message_size               :class:`MessageTooLargeError` (we close with 1009)
``receive()`` after/while ``close()``       :class:`TransportClosed` "closed locally"
``send()`` after close or failure           :class:`NetworkError`
``send()`` past send_timeout                :class:`MagkTimeoutError` (connection dropped)
==========================================  =================================================

Messages that were complete before a failure in the same read are returned first; the
failure is raised by the next ``receive()``. Binary messages are decoded as UTF-8 like text
(some servers send JSON in binary frames). An unsolicited pong is ignored. Redirects are
never followed, so credentials never go to another host. Environment proxies and
``WEBSOCKET_CLIENT_CA_BUNDLE`` are not used: the socket is connected here and wrapped with
``options.ssl_context`` (a default verifying context for ``wss`` when it is ``None``).

Limits: DNS resolution (``getaddrinfo``) has no timeout of its own; the handshake deadline is
applied per phase (TCP, TLS, upgrade) with the time left, so a server trickling its answer
one byte at a time could stretch the upgrade phase. websocket-client keeps a process-wide
cookie jar: a ``Set-Cookie`` from a server is sent back to the same host on later handshakes.
"""

from __future__ import annotations

import codecs
import email.utils
import logging
import math
import re
import socket
import ssl
import struct
import sys
import threading
import time
from typing import List, Optional, Union
from urllib.parse import urlsplit

import websocket
from websocket import ABNF

from ..errors import (
    MagkConnectionError,
    MagkTimeoutError,
    MessageTooLargeError,
    NetworkError,
    ProtocolError,
    TransportClosed,
    classify_close_code,
    classify_http_status,
    redact_url,
)
from ..models import ConnectionType
from .base import Inbound, Transport, TransportOptions

__all__ = ["WebSocketTransport"]

logger = logging.getLogger("magk_client.transports.websocket")

_READ_SIZE = 65536
#: frames needing more than this many further bytes are read into one exact-size buffer
_BIG_READ = 256 * 1024
_CLOSE_FRAME_TIMEOUT = 0.2
_REDIRECTS = frozenset({300, 301, 302, 303, 305, 307, 308})
_RECEIVABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})

_Buffer = Union[bytes, bytearray]
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


class _RedactingFilter(logging.Filter):
    """Hide credentials in websocket-client's trace output (``websocket.enableTrace``),
    which dumps the handshake request headers verbatim."""

    _HEADER = re.compile(
        r"(?im)^((?:authorization|proxy-authorization|cookie|set-cookie|"
        r"[\w-]*(?:token|secret|api-?key|auth)[\w-]*)\s*:)[^\r\n]*"
    )

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not ours to fix
            return True
        redacted = "\n".join(redact_url(line) for line in self._HEADER.sub(r"\1 ***", message).split("\n"))
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


def _install_trace_filter() -> None:
    lib_logger = logging.getLogger("websocket")
    if not any(isinstance(f, _RedactingFilter) for f in lib_logger.filters):
        lib_logger.addFilter(_RedactingFilter())


_install_trace_filter()


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


def _retry_after(headers: Optional[dict]) -> Optional[float]:  # type: ignore[type-arg]
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), if any."""
    if not headers:
        return None
    value = headers.get("retry-after")
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


class _Violation(Exception):
    """Internal: the server broke RFC 6455; carries our close code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


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
        self._limit = int(options.max_message_size)
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

        # receive state (reader thread only)
        self._buf: _Buffer = b""
        self._pos = 0
        self._frag: Optional[List[str]] = None  # decoded parts of a fragmented message
        self._frag_size = 0
        self._decoder: Optional[codecs.IncrementalDecoder] = None
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
        try:
            self._open(last_event_id, deadline)
        except MagkConnectionError as exc:
            self._terminate(exc, None)
            raise (self._failure or exc) from None
        except Exception as exc:  # noqa: BLE001 - every library error is translated here
            error = self._translate_open_error(exc)
            logger.debug("connecting to %s failed: %s", self._where, error)
            self._terminate(error, None)
            raise (self._failure or error) from None
        except BaseException:
            self._terminate(TransportClosed("open() interrupted"), None)
            raise
        finally:
            self._unhold()
        logger.debug("connected to %s", self._where)

    def _check_open_alive(self) -> None:
        if self._closed.is_set():
            raise self._failure or TransportClosed("closed locally")

    def _remaining(self, deadline: float, phase: str) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise MagkTimeoutError(
                f"WebSocket {phase} to {self._where} timed out after {self.options.connect_timeout:g}s"
            )
        return remaining

    def _open(self, last_event_id: Optional[str], deadline: float) -> None:
        parts = urlsplit(self._url)
        scheme = parts.scheme.lower()
        if scheme not in ("ws", "wss") or not parts.hostname:
            raise ProtocolError(f"not a WebSocket URL: {self._where}", terminal=True)
        host = parts.hostname
        try:
            port = parts.port or (443 if scheme == "wss" else 80)
        except ValueError:
            raise ProtocolError(f"bad port in WebSocket URL: {self._where}", terminal=True) from None
        headers = [f"{k}: {v}" for k, v in self.options.headers.items()]
        if last_event_id:
            if any(c in last_event_id for c in "\r\n\0"):
                logger.warning("not sending a Last-Event-ID containing a line break or NUL")
            else:
                headers.append(f"Last-Event-ID: {last_event_id}")
        if any(c in h for h in headers for c in "\r\n\0"):
            raise ProtocolError("a handshake header contains a line break or NUL", terminal=True)

        # TCP
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        last_error: Optional[BaseException] = None
        sock: Optional[socket.socket] = None
        for family, socktype, proto, _name, address in infos:
            self._check_open_alive()
            candidate = socket.socket(family, socktype, proto)
            with self._state_lock:
                self._sock = candidate
            try:
                candidate.settimeout(self._remaining(deadline, "connect"))
                candidate.connect(address)
            except socket.timeout:
                candidate.close()
                raise
            except OSError as exc:
                candidate.close()
                last_error = exc
                continue
            sock = candidate
            break
        if sock is None:
            raise last_error or OSError(f"no address for {host}")
        self._check_open_alive()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

        # TLS, always with our context (never websocket-client's env/default CA handling)
        if scheme == "wss":
            context = self.options.ssl_context
            if context is None:
                context = ssl.create_default_context()
            if not isinstance(context, ssl.SSLContext):
                raise ProtocolError("ssl_context must be an ssl.SSLContext", terminal=True)
            sock.settimeout(self._remaining(deadline, "TLS handshake"))
            tls_sock = context.wrap_socket(sock, server_hostname=host)
            with self._state_lock:
                self._sock = tls_sock
                closed = self._closed.is_set()
            sock = tls_sock
            if closed:
                raise self._failure or TransportClosed("closed locally")

        # HTTP upgrade, by websocket-client on our socket; redirects are never followed
        sock.settimeout(self._remaining(deadline, "handshake"))
        ws = websocket.WebSocket(skip_utf8_validation=True, enable_multithread=False)
        try:
            ws.connect(  # type: ignore[no-untyped-call]
                self._url, socket=sock, header=headers, redirect_limit=0
            )
        except websocket.WebSocketException:
            response = ws.handshake_response
            if response is not None and response.status in _REDIRECTS:
                raise self._redirect_refused(response.status) from None
            raise
        response = ws.handshake_response
        status = getattr(response, "status", 101)
        if status in _REDIRECTS:  # some websocket-client versions return a 3xx instead of raising
            raise self._redirect_refused(status)
        if status != 101:
            raise ProtocolError(f"WebSocket handshake to {self._where} answered HTTP {status}", status=status)
        self.response_headers = dict(response.headers) if response is not None else {}
        self._check_open_alive()

        # after the handshake: blocking reads, bounded sends
        sock.settimeout(None)
        _set_send_timeout(sock, self._send_timeout)
        self.last_activity = time.monotonic()
        self._ready = True

    def _redirect_refused(self, status: int) -> ProtocolError:
        return ProtocolError(
            f"WebSocket handshake to {self._where} answered HTTP {status}: redirect refused "
            "(redirects are never followed, so credentials never go to another host)",
            status=status,
            terminal=True,
        )

    def _translate_open_error(self, exc: Exception) -> MagkConnectionError:
        if self._closed.is_set():
            return self._failure or TransportClosed("closed locally")
        where = self._where
        if isinstance(exc, websocket.WebSocketBadStatusException):
            status = int(exc.status_code)
            if status in _REDIRECTS:
                return self._redirect_refused(status)
            return classify_http_status(
                status, f"WebSocket handshake to {where}", retry_after=_retry_after(exc.resp_headers)
            )
        if isinstance(exc, ssl.SSLCertVerificationError):
            reason = getattr(exc, "verify_message", None) or "verification error"
            return NetworkError(
                f"TLS certificate verification failed for {where}: {reason}",
                close_code=1015,
                terminal=True,
            )
        if isinstance(exc, (socket.timeout, websocket.WebSocketTimeoutException)) or (
            isinstance(exc, ssl.SSLError) and "timed out" in str(exc)
        ):
            return MagkTimeoutError(f"WebSocket connect to {where} timed out after {self.options.connect_timeout:g}s")
        if isinstance(exc, socket.gaierror):
            return NetworkError(f"cannot resolve the host of {where}: {exc.strerror or exc}")
        if isinstance(exc, ssl.SSLError):
            return NetworkError(f"TLS handshake with {where} failed: {exc.reason or exc.__class__.__name__}")
        if isinstance(exc, ConnectionRefusedError):
            return NetworkError(f"connection to {where} refused")
        if isinstance(exc, websocket.WebSocketConnectionClosedException):
            return NetworkError(f"{where} closed the connection during the WebSocket handshake")
        if isinstance(exc, OSError):
            return NetworkError(f"cannot connect to {where}: {exc.strerror or exc.__class__.__name__}")
        if isinstance(exc, websocket.WebSocketException):
            return ProtocolError(f"WebSocket handshake with {where} failed: not a valid WebSocket answer")
        return ProtocolError(f"WebSocket handshake with {where} failed ({exc.__class__.__name__})")

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
        """Read at least once from the socket (more for a big frame) into the buffer."""
        sock = self._hold()
        if sock is None:
            raise self._failure or NetworkError("WebSocket is not open")
        try:
            if self._closed.is_set():
                raise self._failure or TransportClosed("closed locally")
            buf = self._buf
            pos = self._pos
            have = len(buf) - pos
            if need - have > _BIG_READ:
                big = bytearray(need)
                big[:have] = buf[pos:]
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
                self._buf = big
            else:
                data = sock.recv(_READ_SIZE)
                if not data:
                    self._eof()
                self.last_activity = time.monotonic()
                self._buf = buf[pos:] + data if have else data
            self._pos = 0
        except MagkConnectionError:
            raise
        except OSError as exc:
            if self._closed.is_set():
                raise self._failure or TransportClosed("closed locally") from None
            if isinstance(exc, ConnectionResetError):
                text = "connection reset by the server"
            else:
                text = f"connection lost: {getattr(exc, 'strerror', None) or exc.__class__.__name__}"
            error = NetworkError(text, close_code=1006)
            self._terminate(error, None)
            raise (self._failure or error) from None
        finally:
            self._unhold()

    def _eof(self) -> None:
        if self._closed.is_set():
            raise self._failure or TransportClosed("closed locally")
        error = NetworkError("connection lost without a close frame", close_code=1006)
        self._terminate(error, None)
        raise self._failure or error

    def _parse(self, out: List[Inbound]) -> int:
        """Decode every complete frame in the buffer into ``out``; return how many bytes
        (from the current position) are needed to make progress. A protocol failure closes
        the connection; it is raised now if ``out`` is empty, else by the next receive()."""
        try:
            return self._parse_frames(out)
        except _Violation as violation:
            cls = MessageTooLargeError if violation.code == 1009 else ProtocolError
            error = cls(str(violation), close_code=violation.code, terminal=violation.code != 1009)
            logger.debug("closing %s with %d: %s", self._where, violation.code, violation)
            self._terminate(error, violation.code)
            if out:
                return 0
            raise (self._failure or error) from None
        except _ServerClosed as closing:
            self._terminate(closing.error, closing.reply)
            if out:
                return 0
            raise self._failure or closing.error from None

    def _parse_frames(self, out: List[Inbound]) -> int:
        buf = self._buf
        pos = self._pos
        end = len(buf)
        append = out.append
        frag = self._frag
        try:
            while True:
                avail = end - pos
                if avail < 2:
                    return 2
                b1 = buf[pos]
                length = buf[pos + 1]
                # hot path: a whole text message of up to 65535 bytes
                if b1 == 0x81 and length <= 126 and frag is None:
                    if length == 126:
                        if avail < 4:
                            return 4
                        length = (buf[pos + 2] << 8) | buf[pos + 3]
                        if length > self._limit:
                            raise _Violation(1009, self._too_large(length))
                        start = pos + 4
                    else:
                        start = pos + 2
                    stop = start + length
                    if stop > end:
                        return stop - pos
                    try:
                        append(buf[start:stop].decode("utf-8"))
                    except UnicodeDecodeError:
                        pos = stop
                        raise _Violation(1007, "invalid UTF-8 in a text message") from None
                    pos = stop
                    continue

                # general path
                if length & 0x80:
                    raise _Violation(1002, "the server sent a masked frame")
                if b1 & 0x70:
                    raise _Violation(1002, "the server set reserved bits (RSV) in a frame")
                opcode = b1 & 0x0F
                header = 2
                if length == 126:
                    if avail < 4:
                        return 4
                    length = (buf[pos + 2] << 8) | buf[pos + 3]
                    header = 4
                elif length == 127:
                    if avail < 10:
                        return 10
                    length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                    header = 10
                    if length >> 63:
                        raise _Violation(1002, "frame length has its most significant bit set")
                if opcode >= 8:
                    if opcode > 10:
                        raise _Violation(1002, f"unknown control opcode {opcode}")
                    if not b1 & 0x80:
                        raise _Violation(1002, "fragmented control frame")
                    if length > 125:
                        raise _Violation(1002, "control frame longer than 125 bytes")
                else:
                    if opcode > 2:
                        raise _Violation(1002, f"unknown data opcode {opcode}")
                    if opcode == 0:
                        if frag is None:
                            raise _Violation(1002, "continuation frame without a message to continue")
                    elif frag is not None:
                        raise _Violation(1002, "new message before the fragmented one ended")
                    total = self._frag_size + length if opcode == 0 else length
                    if total > self._limit:
                        raise _Violation(1009, self._too_large(total))
                start = pos + header
                stop = start + length
                if stop > end:
                    return stop - pos
                pos = stop
                if opcode in (1, 2):
                    if b1 & 0x80:
                        append(_decode(buf, start, stop, None))
                    else:
                        self._decoder = _Utf8Decoder(errors="strict")
                        frag = self._frag = [_decode(buf, start, stop, self._decoder)]
                        self._frag_size = length
                elif opcode == 0:
                    assert frag is not None
                    self._frag_size += length
                    frag.append(_decode(buf, start, stop, self._decoder, bool(b1 & 0x80)))
                    if b1 & 0x80:
                        parts = frag
                        frag = self._frag = None
                        self._frag_size = 0
                        self._decoder = None
                        append("".join(parts))
                elif opcode == 9:
                    self._pong(bytes(buf[start:stop]))
                elif opcode == 8:
                    self._server_close(bytes(buf[start:stop]))
                # opcode 10 (a pong, solicited or not): liveness only, already counted
        finally:
            self._pos = pos
            if pos >= end and pos:
                self._buf = b""
                self._pos = 0

    def _too_large(self, size: int) -> str:
        return f"message of {size} bytes is over max_message_size ({self._limit} bytes)"

    def _server_close(self, payload: bytes) -> None:
        if not payload:
            raise _ServerClosed(
                TransportClosed("server closed the WebSocket without a status code", close_code=1005),
                1000,
            )
        if len(payload) == 1:
            raise _Violation(1002, "close frame with a 1-byte payload")
        code = (payload[0] << 8) | payload[1]
        if code not in _RECEIVABLE_CLOSE_CODES and not 3000 <= code <= 4999:
            raise _Violation(1002, f"invalid close code {code} from the server")
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise _Violation(1007, "invalid UTF-8 in the close reason") from None
        logger.debug("%s closed by the server with %d", self._where, code)
        raise _ServerClosed(classify_close_code(code, self.scrub(reason)), code)

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
        if code in (1004, 1005, 1006, 1015) or not 1000 <= code <= 4999:
            code = 1000
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


class _ServerClosed(Exception):
    """Internal: the server sent a close frame."""

    def __init__(self, error: MagkConnectionError, reply: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.reply = reply


def _decode(
    buf: _Buffer, start: int, stop: int, decoder: Optional[codecs.IncrementalDecoder], final: bool = False
) -> str:
    """Strictly decode ``buf[start:stop]`` (whole or through an incremental decoder)."""
    try:
        if stop - start <= 4096 and decoder is None:
            return buf[start:stop].decode("utf-8")
        with memoryview(buf) as view:
            part = view[start:stop]
            try:
                if decoder is None:
                    return str(part, "utf-8")
                return decoder.decode(part, final)
            finally:
                part.release()
    except UnicodeDecodeError:
        raise _Violation(1007, "invalid UTF-8 in a text message") from None
