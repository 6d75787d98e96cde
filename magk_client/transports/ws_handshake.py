"""The WebSocket opening handshake's pure parts: URL and header checks, the HTTP upgrade by
websocket-client on a socket we connected, and the translation of every error it can raise.

Runs on the thread in :meth:`WebSocketTransport.open` (the reader thread). No state.

Credentials: websocket-client's own errors may hold the server's whole answer (a
``WebSocketBadStatusException`` carries the status line, every response header and the body, and a
hostile server can echo the ``Authorization`` header into any of them). They are translated here
into our errors with a short reason scrubbed of the transport's credentials; the caller raises
the translation bare (no ``__cause__``/``__context__``), so the library error is never reachable.
"""

from __future__ import annotations

import re
import socket
import ssl
from typing import Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

import websocket

from ..errors import (
    MagkConnectionError,
    MagkTimeoutError,
    NetworkError,
    ProtocolError,
    classify_http_status,
    redact_url,
)

__all__ = ["connect_tcp", "header_lines", "parse_url", "translate_open_error", "upgrade"]

REDIRECTS = frozenset({300, 301, 302, 303, 305, 307, 308})
_FORBIDDEN = "\r\n\0"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_REASON_MAX = 120

Scrub = Callable[[str], str]
RetryAfter = Callable[[Optional[dict]], Optional[float]]  # type: ignore[type-arg]


def parse_url(url: str, where: str) -> Tuple[str, str, int]:
    """``(scheme, host, port)`` of a ``ws``/``wss`` URL; a terminal error for anything else."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ProtocolError(f"not a WebSocket URL: {where}", terminal=True)
    try:
        port = parts.port or (443 if scheme == "wss" else 80)
    except ValueError:
        raise ProtocolError(f"bad port in WebSocket URL: {where}", terminal=True) from None
    return scheme, parts.hostname, port


def header_lines(headers: Mapping[str, str], last_event_id: Optional[str]) -> Tuple[List[str], bool]:
    """The handshake's extra header lines, and whether an unsafe ``last_event_id`` was left out.
    A configured header holding a line break or NUL is a terminal error (header injection)."""
    lines = [f"{k}: {v}" for k, v in headers.items()]
    dropped = False
    if last_event_id:
        if any(c in last_event_id for c in _FORBIDDEN):
            dropped = True
        else:
            lines.append(f"Last-Event-ID: {last_event_id}")
    if any(c in line for line in lines for c in _FORBIDDEN):
        raise ProtocolError("a handshake header contains a line break or NUL", terminal=True)
    return lines, dropped


def connect_tcp(
    host: str, port: int, remaining: Callable[[], float], adopt: Callable[[socket.socket], None]
) -> socket.socket:
    """A TCP connection to the first address of ``host`` that accepts, with ``TCP_NODELAY`` and
    keep-alive. ``adopt(sock)`` runs before each attempt (the caller records the socket so that
    a close() from another thread can shut it down; it raises to abort); each attempt is bounded
    by ``remaining()`` seconds (which raises when none are left). Errors are the socket module's."""
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    last_error: Optional[OSError] = None
    for family, socktype, proto, _name, address in infos:
        sock = socket.socket(family, socktype, proto)
        try:
            adopt(sock)
        except BaseException:
            sock.close()
            raise
        try:
            sock.settimeout(remaining())
            sock.connect(address)
        except socket.timeout:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return sock
    raise last_error or OSError(f"no address for {host}")


def redirect_refused(where: str, status: int) -> ProtocolError:
    return ProtocolError(
        f"WebSocket handshake to {where} answered HTTP {status}: redirect refused "
        "(redirects are never followed, so credentials never go to another host)",
        status=status,
        terminal=True,
    )


def upgrade(sock: socket.socket, url: str, where: str, headers: List[str]) -> Dict[str, str]:
    """The HTTP upgrade, by websocket-client on ``sock`` (never following a redirect); returns the
    response headers (lower-case names). Library errors are left for :func:`translate_open_error`."""
    ws = websocket.WebSocket(skip_utf8_validation=True, enable_multithread=False)
    refused: Optional[int] = None
    try:
        ws.connect(url, socket=sock, header=headers, redirect_limit=0)  # type: ignore[no-untyped-call]
    except websocket.WebSocketException:
        response = ws.handshake_response
        if response is None or response.status not in REDIRECTS:
            raise
        refused = response.status
    if refused is not None:  # raised outside the handler: the library error is not chained
        raise redirect_refused(where, refused)
    response = ws.handshake_response
    status = getattr(response, "status", 101)
    if status in REDIRECTS:  # some websocket-client versions return a 3xx instead of raising
        raise redirect_refused(where, status)
    if status != 101:
        raise ProtocolError(f"WebSocket handshake to {where} answered HTTP {status}", status=status)
    return dict(response.headers) if response is not None else {}


def _reason(exc: BaseException, scrub: Scrub) -> str:
    """A short, single-line, scrubbed text of a library error (never of a bad-status one)."""
    text = _CONTROL.sub(" ", scrub(redact_url(str(exc)))).strip()
    if len(text) > _REASON_MAX:
        text = text[: _REASON_MAX - 3] + "..."
    return text or exc.__class__.__name__


def translate_open_error(
    exc: Exception, where: str, connect_timeout: float, scrub: Scrub, retry_after: RetryAfter
) -> MagkConnectionError:
    """Our error for a library error raised while connecting (see the table in the
    :mod:`~magk_client.transports.websocket` docstring). Never holds a credential."""
    if isinstance(exc, websocket.WebSocketBadStatusException):
        status = int(exc.status_code)
        if status in REDIRECTS:
            return redirect_refused(where, status)
        return classify_http_status(
            status, f"WebSocket handshake to {where}", retry_after=retry_after(exc.resp_headers)
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = getattr(exc, "verify_message", None) or "verification error"
        return NetworkError(
            f"TLS certificate verification failed for {where}: {reason}", close_code=1015, terminal=True
        )
    if isinstance(exc, (socket.timeout, websocket.WebSocketTimeoutException)) or (
        isinstance(exc, ssl.SSLError) and "timed out" in str(exc)
    ):
        return MagkTimeoutError(f"WebSocket connect to {where} timed out after {connect_timeout:g}s")
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
        return ProtocolError(
            f"WebSocket handshake with {where} failed: not a valid WebSocket answer ({_reason(exc, scrub)})"
        )
    return ProtocolError(f"WebSocket handshake with {where} failed ({exc.__class__.__name__})")
