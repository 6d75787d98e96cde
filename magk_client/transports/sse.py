"""Server-Sent Events transport: a streaming ``requests`` GET, parsed by sseclient-py.

What is raised when (every error is a :class:`~magk_client.errors.MagkConnectionError`):

``open()``
    - 200 with ``Content-Type: text/event-stream`` (parameters allowed): connected.
    - 204: :class:`TransportClosed` with ``status=204, terminal=True`` ("do not reconnect", S2).
    - 401/403: :class:`AuthError` (terminal).
    - 5xx, 429: :class:`ServerError` with ``retry_after`` from ``Retry-After`` (retried; the SDK
      deliberately differs from browsers here). 408: :class:`MagkTimeoutError` (retried).
    - 3xx: terminal :class:`ProtocolError` "redirect refused" -- redirects are never
      followed, so credentials never reach another host (FAULTS 34).
    - any other status (other 4xx, 2xx other than 200), or a wrong content type:
      terminal :class:`ProtocolError` (S1).
    - refused/reset/unreachable: :class:`NetworkError`; connect timeout (or no response
      headers within the read timeout): :class:`MagkTimeoutError`.
    - TLS certificate verification failure: terminal :class:`NetworkError` saying so;
      other TLS failures: :class:`NetworkError`.

``receive()``
    - the events completed by the bytes available now, as one list (never empty);
      comments and other bytes only refresh ``last_activity`` (S11) and it reads on.
    - clean end of the body: :class:`TransportClosed` (reconnectable, S3); events that
      were complete before the end are returned first.
    - chunked body cut off, reset: :class:`NetworkError` (reconnectable).
    - nothing for ``read_timeout`` seconds: :class:`MagkTimeoutError`.
    - an event or line over ``max_message_size``: :class:`MessageTooLargeError`, and
      the connection is dropped (FAULTS 18).
    - after ``close()``: :class:`TransportClosed` promptly.

``send(text)``: ``POST options.messages_url`` (JSON); 2xx is success; otherwise classified
as above (3xx refused). No ``messages_url``: terminal :class:`ProtocolError`.

TLS: every HTTPS connection uses ``options.ssl_context`` (a default context if None). The
requests sessions do not read the environment (``trust_env=False``), and the adapter
drops any CA file requests would add, so ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, netrc
and proxy variables cannot change what is trusted or where credentials go (FAULTS 33).

Reading: ``receive()`` hands over every byte as soon as it arrives (``read1`` on the
response), whether the body is chunked or close-delimited (FAULTS 22).
"""

from __future__ import annotations

import email.utils
import errno
import functools
import http.client
import logging
import socket
import ssl
import threading
import time
from typing import Any, Callable, Dict, List, NoReturn, Optional, Union

import requests
import requests.adapters
import urllib3
import urllib3.exceptions

from ..errors import (
    MagkConnectionError,
    MagkTimeoutError,
    MessageTooLargeError,
    NetworkError,
    ProtocolError,
    TransportClosed,
    classify_http_status,
    redact_url,
)
from ..models import ConnectionType
from .base import Inbound, Transport, TransportOptions
from .sse_stream import SSEDecoder

__all__ = ["SSETransport"]

log = logging.getLogger("magk_client.transports.sse")

#: Bytes asked of the socket per read; ``read1`` returns what is there, up to this.
READ_SIZE = 65536
#: Most of an error reply's body read (and dropped) so the connection can be reused.
_MAX_ERROR_BODY = 65536


class CredentialQueryFilter(logging.Filter):
    """Redacts credential query values (``token=``, ``api_key=``, ... as :func:`redact_url`
    does) in the records of urllib3's loggers, which log each request's URL at DEBUG
    (``token_in_query=True`` puts the token there). Runs on the thread that logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            scrubbed = tuple(redact_url(a) if isinstance(a, str) else a for a in args)
            if scrubbed != args:
                record.args = scrubbed
        elif not args and isinstance(record.msg, str):
            record.msg = redact_url(record.msg)
        return True


#: urllib3's loggers that may name a URL (requests itself logs none).
_URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.poolmanager", "urllib3.util.retry", "urllib3.connection")
_log_filter_lock = threading.Lock()


def install_log_filter() -> None:
    """Put one :class:`CredentialQueryFilter` on each of urllib3's loggers (idempotent, thread-safe)."""
    with _log_filter_lock:
        for name in _URLLIB3_LOGGERS:
            logger = logging.getLogger(name)
            if not any(type(f).__name__ == CredentialQueryFilter.__name__ for f in logger.filters):
                logger.addFilter(CredentialQueryFilter())


class _ContextAdapter(requests.adapters.HTTPAdapter):
    """An HTTPAdapter whose every TLS connection uses one ``ssl.SSLContext``.

    requests cannot take a context directly, and with ``verify=True`` it would add a
    CA file (certifi, or ``REQUESTS_CA_BUNDLE``) that urllib3 loads *into* the context.
    Here the context alone decides: no CA file, ``cert_reqs`` taken from the context.
    """

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self._ssl_context = ssl_context
        super().__init__(max_retries=0)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        pool_kwargs["ssl_context"] = self._ssl_context
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs["ssl_context"] = self._ssl_context
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def build_connection_pool_key_attributes(  # requests >= 2.32
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> Any:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        kwargs: Dict[str, Any] = dict(pool_kwargs)
        kwargs.pop("ca_certs", None)
        kwargs.pop("ca_cert_dir", None)
        kwargs["ssl_context"] = self._ssl_context
        kwargs["cert_reqs"] = self._ssl_context.verify_mode
        return host_params, kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # The context decides everything (a client certificate too, loaded into it).
        conn.cert_reqs = self._ssl_context.verify_mode
        conn.ca_certs = None
        conn.ca_cert_dir = None


_default_context: Optional[ssl.SSLContext] = None
_default_context_lock = threading.Lock()


def _verifying_context() -> ssl.SSLContext:
    """One default (verifying) context per process: building one costs ~25 ms (loading the CAs)."""
    global _default_context
    with _default_context_lock:
        if _default_context is None:
            _default_context = ssl.create_default_context()
        return _default_context


_URLLIB3_VERSION: str = getattr(urllib3, "__version__", "2")
_URLLIB3_MAJOR = int(_URLLIB3_VERSION.split(".", maxsplit=1)[0])


def _read1(raw: Any) -> bytes:
    """What is there now, up to READ_SIZE bytes: urllib3 >= 2.2 has ``read1``; before it, the
    underlying ``http.client.HTTPResponse.read1`` does the same (chunked-aware; we ask for an
    identity encoding, so there is nothing to decode)."""
    read1 = getattr(raw, "read1", None)
    if read1 is not None:
        return bytes(read1(READ_SIZE, decode_content=True))
    return bytes(raw._fp.read1(READ_SIZE))


def _reader_for(raw: Any, content_encoding: str) -> Callable[[], bytes]:
    """The cheapest way to read what is there now from ``raw`` (urllib3's response).

    With an identity body (what we ask for), ``http.client.HTTPResponse.read1`` under
    urllib3 returns the same bytes as urllib3's own ``read1`` (chunked decoding included)
    at a third of the cost per call (7 against 20 us): urllib3 adds nothing to decode and
    keeps byte counts nobody reads here. Its errors (``IncompleteRead``, ``socket.timeout``,
    ``OSError``) are translated like urllib3's. A compressed body goes through urllib3.
    """
    fp_read1 = getattr(getattr(raw, "_fp", None), "read1", None)
    if fp_read1 is not None and content_encoding.strip().lower() in ("", "identity"):
        return functools.partial(fp_read1, READ_SIZE)
    return functools.partial(_read1, raw)


def _new_session(ssl_context: Optional[object], url: str) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no env CA bundle, netrc or proxies (see module doc)
    if url.lower().startswith("https:"):  # a session talks to one URL only (no redirects)
        ctx = ssl_context if isinstance(ssl_context, ssl.SSLContext) else _verifying_context()
        session.mount("https://", _ContextAdapter(ctx))
    session.mount("http://", requests.adapters.HTTPAdapter(max_retries=0))
    return session


def _parse_retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value[:9]), 10**8))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _chain(exc: BaseException) -> List[BaseException]:
    """The exception and its causes (``__cause__``/``__context__``, urllib3 ``reason``, args)."""
    seen: List[BaseException] = []
    todo: List[BaseException] = [exc]
    while todo and len(seen) < 16:
        e = todo.pop(0)
        if any(e is s for s in seen):
            continue
        seen.append(e)
        for nxt in (getattr(e, "reason", None), e.__cause__, e.__context__, *e.args):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return seen


def _cert_verify_failed(exc: BaseException) -> bool:
    for e in _chain(exc):
        if isinstance(e, ssl.SSLCertVerificationError):
            return True
        if isinstance(e, ssl.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(e):
            return True
    return False


def _reason(exc: BaseException) -> str:
    """A short, secret-free description of the root cause (no URLs, no headers)."""
    for e in reversed(_chain(exc)):
        if isinstance(e, ssl.SSLError):
            return f"TLS error ({getattr(e, 'reason', None) or type(e).__name__})"
        if isinstance(e, OSError) and e.errno is not None:
            name = errno.errorcode.get(e.errno, str(e.errno))
            return f"{name}: {e.strerror or ''}".rstrip(": ")
        if isinstance(e, (socket.timeout, TimeoutError)):
            return "timed out"
    return type(exc).__name__


class SSETransport(Transport):
    """One Server-Sent Events connection (see the module docstring for the error rules).

    Attributes (besides :class:`Transport`'s):
        last_event_id: the last-event-id buffer (``None`` when empty): starts as the id
            passed to :meth:`open`, follows every ``id:`` field (S7), and is what the next
            connection should send as ``Last-Event-ID``.
        status: the HTTP status of the last ``open()`` answer, if any.
    """

    connection_type = ConnectionType.EVENTSOURCE

    def __init__(self, options: TransportOptions) -> None:
        super().__init__(options)
        self.status: Optional[int] = None
        self._decoder = SSEDecoder(max_event_size=options.max_message_size)
        self._session: Optional[requests.Session] = None
        self._send_session: Optional[requests.Session] = None
        self._response: Optional[requests.Response] = None
        self._raw: Any = None
        self._read_now: Callable[[], bytes] = bytes
        self._sock: Optional[socket.socket] = None
        self._lock = threading.Lock()  # guards _reading/_response hand-over with close()
        self._send_lock = threading.Lock()
        self._reading = False
        self._eof = False
        self._failed: Optional[MagkConnectionError] = None
        self._opened = False
        install_log_filter()

    # -- state ------------------------------------------------------------------------

    @property
    def last_event_id(self) -> Optional[str]:
        return self._decoder.last_event_id

    def _where(self, url: Optional[str] = None) -> str:
        return self.scrub(redact_url(url if url is not None else self.options.url))

    # -- open -------------------------------------------------------------------------

    def open(self, *, last_event_id: Optional[str] = None) -> None:
        if self._opened:
            raise ProtocolError("SSETransport.open() called twice; make a new transport", terminal=True)
        self._opened = True
        if self._closed.is_set():
            raise TransportClosed("SSE transport closed before open()")
        self._decoder.last_event_id = last_event_id or None
        if _URLLIB3_MAJOR < 2 and self.options.url.lower().startswith("https:"):
            # urllib3 1.x skips SNI for IP hosts and checks hostnames itself, which a caller's
            # context (check_hostname on) cannot go through; refuse clearly rather than weaken TLS.
            raise ProtocolError(
                f"SSE over https needs urllib3 >= 2 (found {_URLLIB3_VERSION}); "
                "pip install -U 'urllib3>=2'",
                terminal=True,
            )
        headers: Dict[str, Union[str, bytes]] = dict(self.options.headers)
        headers["Accept"] = "text/event-stream"
        headers["Cache-Control"] = "no-cache"
        headers["Accept-Encoding"] = "identity"  # compression buffers events in proxies
        if last_event_id:
            # Sent as UTF-8 (S8); HTTP strips surrounding whitespace anyway, and a line
            # break cannot be sent in a header.
            lei = last_event_id.strip()
            if lei and not any(c in lei for c in "\r\n\x00"):
                headers["Last-Event-ID"] = lei.encode("utf-8")
        url = self.options.url
        where = self._where()
        session = _new_session(self.options.ssl_context, self.options.url)
        with self._lock:
            self._session = session
        timeout = (self.options.connect_timeout, self.options.read_timeout)
        log.debug("SSE connecting to %s (Last-Event-ID %s)", where, "set" if last_event_id else "none")
        failure: Optional[MagkConnectionError] = None
        try:
            resp = session.get(url, headers=headers, stream=True, timeout=timeout, allow_redirects=False)
        except BaseException as exc:  # noqa: BLE001 - translated, never chained (its text may hold secrets)
            self._abandon()
            if self._closed.is_set():
                failure = TransportClosed(f"SSE transport closed while connecting to {where}")
            else:
                failure = self._translate_request_error(exc, f"SSE request to {where}")
        if failure is not None:
            raise failure
        self.status = resp.status_code
        error = self._check_response(resp, where)
        if error is not None:
            self._discard(resp)
            self._abandon()
            log.debug("SSE request to %s failed: %s", where, error)
            raise error
        raw = resp.raw
        read_now = _reader_for(raw, resp.headers.get("Content-Encoding", ""))
        with self._lock:
            self._response = resp
            self._raw = raw
            self._read_now = read_now
            self._sock = self._find_socket(raw)
            closed_meanwhile = self._closed.is_set()
        if closed_meanwhile:
            self._release()
            raise TransportClosed(f"SSE transport closed while connecting to {where}")
        self.last_activity = time.monotonic()
        log.debug("SSE connected to %s", where)

    def _check_response(self, resp: requests.Response, where: str) -> Optional[MagkConnectionError]:
        status = resp.status_code
        what = f"SSE request to {where}"
        if status == 200:
            ctype = resp.headers.get("Content-Type", "")
            if ctype.split(";", 1)[0].strip().lower() == "text/event-stream":
                return None
            shown = self.scrub(ctype)[:80] or "none"
            return ProtocolError(
                f"{what} answered with content type {shown!r}, not text/event-stream",
                status=status,
                terminal=True,
            )
        if status == 204:
            return TransportClosed(f"{what} answered 204 No Content: do not reconnect", status=204, terminal=True)
        if 300 <= status < 400:
            return ProtocolError(
                f"{what} answered with redirect {status}; redirect refused (credentials stay on this host)",
                status=status,
                terminal=True,
            )
        retry_after = _parse_retry_after(resp.headers.get("Retry-After"))
        err = classify_http_status(status, what, retry_after)
        if type(err) is ProtocolError:
            err.terminal = True  # S1: other 4xx and 2xx other than 200 fail the connection
        return err

    @staticmethod
    def _discard(resp: requests.Response, drain: bool = False) -> None:
        """Close a response. With ``drain``, first read a small body whose length is
        announced, so its connection can be reused; never wait on an open-ended body."""
        length = resp.headers.get("Content-Length", "")
        if drain and length.isdigit() and int(length) <= _MAX_ERROR_BODY:
            try:
                resp.raw.read(int(length), decode_content=False)
            except BaseException:  # noqa: BLE001 - best effort only
                pass
        try:
            resp.close()
        except BaseException:  # noqa: BLE001
            pass

    @staticmethod
    def _find_socket(raw: Any) -> Optional[socket.socket]:
        """The socket under a urllib3 response, for close() to shut down (fallback path)."""
        conn = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
        sock = getattr(conn, "sock", None)
        if isinstance(sock, socket.socket):
            return sock
        # A close-delimited response: http.client detached the socket from the connection
        # and only its file object holds it.
        fp = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
        return sock if isinstance(sock, socket.socket) else None

    def _translate_request_error(self, exc: BaseException, what: str) -> MagkConnectionError:
        reason = self.scrub(_reason(exc))
        if isinstance(exc, MagkConnectionError):
            return exc
        if _cert_verify_failed(exc):
            return NetworkError(
                f"{what} failed: TLS certificate verification failed ({reason}); "
                "check the CA bundle / server certificate",
                terminal=True,
            )
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return MagkTimeoutError(f"{what} timed out connecting ({reason})")
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return MagkTimeoutError(f"{what} timed out waiting for the response ({reason})")
        if isinstance(exc, requests.exceptions.SSLError):
            return NetworkError(f"{what} failed in TLS: {reason}")
        if isinstance(
            exc,
            (
                requests.exceptions.InvalidURL,
                requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema,
                requests.exceptions.InvalidHeader,
            ),
        ):
            return ProtocolError(f"{what} is invalid ({type(exc).__name__})", terminal=True)
        if isinstance(
            exc,
            (
                requests.exceptions.ConnectionError,
                OSError,
                http.client.HTTPException,
                urllib3.exceptions.HTTPError,
            ),
        ):
            return NetworkError(f"{what} failed: {reason}")
        if isinstance(exc, requests.exceptions.RequestException):
            return NetworkError(f"{what} failed: {reason}")
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise exc
        return NetworkError(f"{what} failed unexpectedly: {type(exc).__name__}")

    # -- receive ----------------------------------------------------------------------

    def receive(self) -> List[Inbound]:
        while True:
            if self._failed is not None:
                raise self._failed
            if self._closed.is_set():
                raise TransportClosed("SSE transport closed")
            if self._decoder.pending_error is not None:
                self._fail(self._decoder.pending_error)
            if self._eof:
                self._fail(TransportClosed("the server ended the event stream"))
            with self._lock:
                raw = self._raw
                if raw is None or self._closed.is_set():
                    raise TransportClosed("SSE transport is not open" if raw is None else "SSE transport closed")
                self._reading = True
            failure: Optional[MagkConnectionError] = None
            try:
                chunk = self._read_now()
            except BaseException as exc:  # noqa: BLE001 - translated, never chained (its text may hold secrets)
                chunk = b""
                failure = self._translate_read_error(exc)
            self._end_read()
            if self._closed.is_set():
                raise TransportClosed("SSE transport closed")
            if failure is not None:
                self._fail(failure)
            try:
                if chunk:
                    self.last_activity = time.monotonic()
                    events = self._decoder.feed(chunk)
                else:
                    self._eof = True
                    events = self._decoder.finish()
            except MessageTooLargeError as exc:
                failure = exc
            if failure is not None:
                self._fail(failure)
            if self._decoder.retry_ms is not None:
                self.retry_ms = self._decoder.retry_ms
            if events:
                return events  # type: ignore[return-value]

    def _end_read(self) -> None:
        with self._lock:
            self._reading = False
            release = self._closed.is_set()
        if release:
            self._release()

    def _fail(self, err: MagkConnectionError) -> NoReturn:
        """Remember ``err`` (raised again by later calls), drop the connection, raise."""
        if self._failed is None:
            self._failed = err
            log.debug("SSE connection to %s ended: %s", self._where(), err)
        self._shutdown_socket()
        self._release()
        raise self._failed

    def _translate_read_error(self, exc: BaseException) -> MagkConnectionError:
        where = self._where()
        if isinstance(exc, MagkConnectionError):
            return exc
        for e in _chain(exc):
            if isinstance(e, (urllib3.exceptions.ReadTimeoutError, socket.timeout)):
                return MagkTimeoutError(f"SSE stream from {where} was silent for {self.options.read_timeout} s")
        if _cert_verify_failed(exc):
            return NetworkError(f"SSE stream from {where}: TLS certificate verification failed", terminal=True)
        if isinstance(exc, (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, ValueError)):
            return NetworkError(f"SSE stream from {where} was cut off: {self.scrub(_reason(exc))}")
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise exc
        return NetworkError(f"SSE stream from {where} failed: {type(exc).__name__}")

    # -- send -------------------------------------------------------------------------

    def send(self, text: str) -> None:
        url = self.options.messages_url
        if not url:
            raise ProtocolError("cannot send over SSE: no messages_url configured (POST /messages)", terminal=True)
        if self._closed.is_set():
            raise TransportClosed("SSE transport closed; message not sent")
        where = self._where(url)
        headers: Dict[str, str] = dict(self.options.headers)
        headers["Content-Type"] = "application/json"
        body = text.encode("utf-8")
        with self._send_lock:
            if self._closed.is_set():
                raise TransportClosed("SSE transport closed; message not sent")
            if self._send_session is None:
                self._send_session = _new_session(self.options.ssl_context, url)
            session = self._send_session
            failure: Optional[MagkConnectionError] = None
            try:
                resp = session.post(
                    url,
                    data=body,
                    headers=headers,
                    timeout=(self.options.connect_timeout, self.options.send_timeout),
                    allow_redirects=False,
                    stream=True,
                )
            except BaseException as exc:  # noqa: BLE001 - translated, never chained (its text may hold secrets)
                failure = self._translate_request_error(exc, f"POST to {where}")
                if isinstance(failure, MagkTimeoutError):
                    failure = MagkTimeoutError(f"POST to {where} timed out ({self.options.send_timeout} s)")
            if failure is not None:
                raise failure
            status = resp.status_code
            self._discard(resp, drain=True)
        if 200 <= status < 300:
            return
        if 300 <= status < 400:
            raise ProtocolError(
                f"POST to {where} answered with redirect {status}; redirect refused",
                status=status,
                terminal=True,
            )
        raise classify_http_status(status, f"POST to {where}", _parse_retry_after(resp.headers.get("Retry-After")))

    # -- close ------------------------------------------------------------------------

    def close(self, code: int = 1000) -> None:
        try:
            with self._lock:
                already = self._closed.is_set()
                self._closed.set()
                reading = self._reading
            if already:
                return
            log.debug("SSE transport to %s closing", self._where())
            self._shutdown_socket()
            if not reading:
                self._release()
            # else: the reader wakes up (socket shut down) and releases on its way out
            with self._lock:
                sessions = [s for s in (self._send_session,) if s is not None]
            for s in sessions:
                s.close()
        except BaseException:
            log.debug("SSE close: ignored error", exc_info=True)

    def _shutdown_socket(self) -> None:
        """Wake a read blocked in another thread: shut the socket down for reading."""
        with self._lock:
            raw, sock = self._raw, self._sock
        if raw is None:
            return
        try:
            shutdown = getattr(raw, "shutdown", None)  # urllib3 >= 2.3
            if shutdown is not None:
                shutdown()
                return
        except (ValueError, RuntimeError, OSError):
            pass  # no shutdown function recorded, or connection released: use the socket
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _release(self) -> None:
        """Close the response and the stream session (never while a read is in progress)."""
        with self._lock:
            if self._reading:
                return
            resp, session = self._response, self._session
            self._response = None
            self._raw = None
            self._sock = None
            self._session = None
        for thing in (resp, session):
            if thing is not None:
                try:
                    thing.close()
                except BaseException:
                    log.debug("SSE release: ignored error", exc_info=True)

    def _abandon(self) -> None:
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed.is_set() else ("open" if self._raw is not None else "new")
        return f"<SSETransport {self._where()} {state}>"
