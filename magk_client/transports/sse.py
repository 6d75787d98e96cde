"""Server-Sent Events transport: a streaming ``requests`` GET, parsed by sseclient-py.

What is raised when (every error is a :class:`~magk_client.errors.MagkConnectionError`):

``open()``
    - 200 with ``Content-Type: text/event-stream`` (parameters allowed): connected.
    - 204: :class:`TransportClosed` with ``status=204, terminal=True`` ("do not reconnect", S2).
    - 401/403: :class:`AuthError` (terminal).
    - 5xx, 429: :class:`ServerError` with ``retry_after`` from ``Retry-After`` (retried; the SDK
      deliberately differs from browsers here). 408: :class:`MagkTimeoutError` (retried).
    - 301, 302, 303, 307, 308 to the same origin (scheme, host and port): followed, up to
      five, as browsers' EventSource does; the request is sent again with the same headers.
      A redirect to another origin (credentials never reach another host, docs/faults.rst row 34), back
      to a URL already requested (a loop), past the fifth, or any other 3xx: terminal
      :class:`ProtocolError` "redirect refused" / "redirect loop refused".
    - any other status (other 4xx, 2xx other than 200), or a wrong content type:
      terminal :class:`ProtocolError` (S1).
    - refused/reset/unreachable: :class:`NetworkError`; connect timeout (or no response
      headers within the read timeout): :class:`MagkTimeoutError`.
    - TLS certificate verification failure: terminal :class:`NetworkError` saying so;
      other TLS failures: :class:`NetworkError`.
    - ``close()`` from another thread: :class:`TransportClosed` "closed while connecting",
      promptly once the TCP connection is made (TLS handshake, wait for the headers); a TCP
      connect itself still runs to its end or ``connect_timeout``.
    - urllib3 older than 2.2: terminal :class:`ProtocolError` saying so.

``receive()``
    - the events completed by the bytes available now, as one list (never empty);
      comments and other bytes only refresh ``last_activity`` (S11) and it reads on.
    - clean end of the body: :class:`TransportClosed` (reconnectable, S3); events that
      were complete before the end are returned first.
    - chunked body cut off, reset: :class:`NetworkError` (reconnectable).
    - nothing for ``read_timeout`` seconds: :class:`MagkTimeoutError`.
    - an event or line over ``max_message_size``: :class:`MessageTooLargeError`, and
      the connection is dropped (docs/faults.rst row 18).
    - after ``close()``: :class:`TransportClosed` promptly.

``send(text)``: ``POST options.messages_url`` (JSON); 2xx is success; otherwise classified
as above (every 3xx refused: a POST is not re-sent anywhere). No ``messages_url``: terminal :class:`ProtocolError`.

TLS: every HTTPS connection uses ``options.ssl_context`` (a default context if None). The
requests sessions do not read the environment (``trust_env=False``), and the adapter
drops any CA file requests would add, so ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, netrc
and proxy variables cannot change what is trusted or where credentials go (docs/faults.rst row 33).

Reading: ``receive()`` hands over every byte as soon as it arrives (urllib3's
``HTTPResponse.read1``), whether the body is chunked or close-delimited (docs/faults.rst row 22).

Errors of requests, urllib3, ssl and socket are translated into ours with a secret-free
reason and never chained (``__cause__``/``__context__``): their text may hold a URL or
whatever a hostile server sent back, credentials included.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any, Callable, Dict, List, NoReturn, Optional, Union

import requests
import urllib3

from ..errors import (
    MagkConnectionError,
    MagkTimeoutError,
    MessageTooLargeError,
    ProtocolError,
    TransportClosed,
    classify_http_status,
    redact_url,
)
from ..models import ConnectionType
from ..retry_after import parse_retry_after
from .base import Inbound, Transport, TransportOptions
from .sse_http import (
    SocketWatch,
    install_log_filter,
    new_session,
    redirect_target,
    translate_read_error,
    translate_request_error,
)
from .sse_stream import SSEDecoder

__all__ = ["SSETransport"]

log = logging.getLogger("magk_client.transports.sse")

#: Bytes asked of the socket per read; ``read1`` returns what is there, up to this.
READ_SIZE = 65536
#: Most of an error reply's body read (and dropped) so the connection can be reused.
_MAX_ERROR_BODY = 65536

_URLLIB3_VERSION: str = getattr(urllib3, "__version__", "2")
#: ``HTTPResponse.read1`` (urllib3 >= 2.2): what is there now, chunked or not, without waiting
#: for more. Older urllib3 can only wait for a fixed amount, which would hold events back.
_HAS_READ1 = callable(getattr(urllib3.HTTPResponse, "read1", None))


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
        #: the socket under the stream, from the moment it is connected (for close())
        self._watch = SocketWatch()
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
        if not _HAS_READ1:
            raise ProtocolError(
                f"SSE needs urllib3 >= 2.2 (found {_URLLIB3_VERSION}); pip install -U 'urllib3>=2.2'",
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
        session = new_session(self.options.ssl_context, url, self._watch.seen)
        with self._lock:
            self._session = session
        log.debug("SSE connecting to %s (Last-Event-ID %s)", where, "set" if last_event_id else "none")
        visited = [url]
        while True:
            resp = self._get(session, url, headers, where)
            self.status = status = resp.status_code
            if not 300 <= status < 400:
                break
            target, why = redirect_target(url, status, resp.headers.get("Location"), visited)
            self._discard(resp, drain=True)
            if target is None:
                self._abandon()
                what = f"SSE request to {where} answered with redirect {status}"
                refused = ProtocolError(f"{what} {why}", status=status, terminal=True)
                log.debug("SSE request to %s failed: %s", where, refused)
                raise refused
            log.debug("SSE request to %s redirected (%d) to %s", where, status, self._where(target))
            url = target
            visited.append(url)
        error = self._check_response(resp, where)
        if error is not None:
            self._discard(resp)
            self._abandon()
            log.debug("SSE request to %s failed: %s", where, error)
            raise error
        raw = resp.raw
        with self._lock:
            self._response = resp
            self._raw = raw
            # decode_content: a body compressed although identity was asked is decoded
            self._read_now = functools.partial(raw.read1, READ_SIZE, decode_content=True)
            closed_meanwhile = self._closed.is_set()
        if closed_meanwhile:
            self._release()
            raise TransportClosed(f"SSE transport closed while connecting to {where}")
        self.last_activity = time.monotonic()
        log.debug("SSE connected to %s", where)

    def _get(
        self, session: requests.Session, url: str, headers: Dict[str, Union[str, bytes]], where: str
    ) -> requests.Response:
        """One GET of the stream (no redirect followed by requests); errors translated, never chained."""
        timeout = (self.options.connect_timeout, self.options.read_timeout)
        failure: MagkConnectionError
        try:
            return session.get(url, headers=headers, stream=True, timeout=timeout, allow_redirects=False)
        except BaseException as exc:  # noqa: BLE001 - translated, never chained (its text may hold secrets)
            self._abandon()
            if self._closed.is_set():
                failure = TransportClosed(f"SSE transport closed while connecting to {where}")
            else:
                failure = translate_request_error(exc, f"SSE request to {where}", self.scrub)
        raise failure  # outside the except block: no __context__

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
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), time.time())
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
                failure = translate_read_error(exc, self._where(), self.options.read_timeout, self.scrub)
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
                self._send_session = new_session(self.options.ssl_context, url)
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
                failure = translate_request_error(exc, f"POST to {where}", self.scrub)
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
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), time.time())
        raise classify_http_status(status, f"POST to {where}", retry_after)

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
        """Wake a connect, handshake or read blocked in another thread: shut the socket down.

        The socket is known from the moment it is connected (:class:`SocketWatch`). Should a
        future urllib3 stop reporting it, a response that exists is shut down through urllib3's
        own ``HTTPResponse.shutdown`` (>= 2.3) instead; only the wait for headers is then
        left to the timeouts."""
        if self._watch.shutdown():
            return
        with self._lock:
            raw = self._raw
        shutdown = getattr(raw, "shutdown", None)
        if shutdown is not None:
            try:
                shutdown()
            except (ValueError, RuntimeError, OSError):
                pass  # already released: nothing left to wake

    def _release(self) -> None:
        """Close the response and the stream session (never while a read is in progress)."""
        with self._lock:
            if self._reading:
                return
            resp, session = self._response, self._session
            self._response = None
            self._raw = None
            self._session = None
        for thing in (resp, session, self._watch):
            if thing is not None:
                try:
                    thing.close()
                except BaseException:
                    log.debug("SSE release: ignored error", exc_info=True)

    def _abandon(self) -> None:
        """open() failed: drop the session and the socket handle."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.close()
        self._watch.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed.is_set() else ("open" if self._raw is not None else "new")
        return f"<SSETransport {self._where()} {state}>"
