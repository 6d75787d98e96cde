"""The HTTP side of the SSE transport: requests sessions, the socket under a request, errors.

- :func:`new_session`: a ``requests.Session`` that reads nothing from the environment and
  whose every TLS connection uses one ``ssl.SSLContext`` (no CA file added by requests:
  ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, netrc and proxy variables change nothing).
- :class:`SocketWatch`: the socket under a streaming request, kept from the moment it is
  connected, so ``close()`` on another thread can interrupt a TLS handshake, the wait for
  the response headers or a body read at once (read timeouts are 40 s by default).
- :func:`redirect_target`: which redirects are followed (same origin only, a few, no loops).
- :class:`CredentialQueryFilter`: urllib3 logs each request's URL at DEBUG; a token in the
  query string (``token_in_query=True``) is redacted from those records.
- :func:`translate_request_error`, :func:`translate_read_error`: our classified errors for
  those of requests, urllib3, ssl and socket, with a secret-free reason (never the
  dependency's text, which may hold a URL or what a hostile server sent).

Dependency surface: requests' ``HTTPAdapter`` hooks (``init_poolmanager``,
``build_connection_pool_key_attributes``, ``cert_verify``), urllib3's
``PoolManager.pool_classes_by_scheme`` and ``HTTPConnectionPool.ConnectionCls``, and the
``sock`` attribute of ``http.client.HTTPConnection`` (see :func:`_reporting_pools`, the one
place that relies on how urllib3 sets it).
"""

from __future__ import annotations

import errno
import http.client
import logging
import socket
import ssl
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urljoin, urlsplit

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions

from ..errors import MagkConnectionError, MagkTimeoutError, NetworkError, ProtocolError, redact_url

__all__ = [
    "CredentialQueryFilter",
    "SocketWatch",
    "cert_verify_failed",
    "MAX_REDIRECTS",
    "install_log_filter",
    "new_session",
    "reason",
    "redirect_target",
    "same_origin",
    "translate_read_error",
    "translate_request_error",
]

SocketReport = Callable[[socket.socket], None]
Scrub = Callable[[str], str]


# -- the socket under a request ---------------------------------------------------------------


class SocketWatch:
    """The socket of a streaming request, for :meth:`shutdown` from another thread.

    :meth:`seen` runs on the thread inside ``session.get`` each time urllib3 gives a
    connection a socket: first the TCP socket (before any TLS handshake), then, for https,
    the TLS socket wrapping it, which takes over the TCP socket's descriptor. A duplicate
    of the TCP socket's descriptor is kept, valid across that hand-over.
    :meth:`shutdown` (any thread) shuts it down, which makes a blocked handshake, header
    wait or body read return at once; a socket seen after :meth:`shutdown` is shut down on
    sight. :meth:`close` releases the duplicate (which holds the connection open until then).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dup: Optional[socket.socket] = None
        self._shut = False

    def seen(self, sock: socket.socket) -> None:
        if isinstance(sock, ssl.SSLSocket):
            return  # wraps the TCP socket seen just before; its duplicate is the handle
        try:
            dup = sock.dup()
        except OSError:
            return
        with self._lock:
            old, self._dup = self._dup, dup
            if self._shut:
                _shut_down(dup)
        if old is not None:
            old.close()

    @property
    def watching(self) -> bool:
        """True when a socket has been seen (and not released)."""
        return self._dup is not None

    def shutdown(self) -> bool:
        """Shut the socket down (now and any seen later); False if none was seen yet."""
        with self._lock:
            self._shut = True
            if self._dup is None:
                return False
            _shut_down(self._dup)
            return True

    def close(self) -> None:
        with self._lock:
            dup, self._dup = self._dup, None
        if dup is not None:
            dup.close()


def _shut_down(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected any more: nothing to wake


class _ReportingConnection:
    """Mixin for urllib3's connection classes: every socket assigned to ``sock`` goes to ``report``.

    ``sock`` is http.client's attribute for a connection's socket; urllib3's ``connect()``
    assigns the TCP socket as soon as it is connected, then (https) the TLS socket.
    """

    report: SocketReport  # a staticmethod on the subclasses made by _reporting_pools

    @property
    def sock(self) -> Any:
        return self.__dict__.get("sock")

    @sock.setter
    def sock(self, value: Any) -> None:
        self.__dict__["sock"] = value
        if isinstance(value, socket.socket):
            type(self).report(value)


def _reporting_pools(report: SocketReport) -> Dict[str, type]:
    """urllib3 pool classes (for ``PoolManager.pool_classes_by_scheme``) whose connections
    pass each socket they are given to ``report``. The one place that depends on urllib3
    setting ``HTTPConnection.sock`` on connect; tests/test_transport_sse.py checks it does."""
    hook = staticmethod(report)

    class HTTPConnection(_ReportingConnection, urllib3.connection.HTTPConnection):
        report = hook

    class HTTPSConnection(_ReportingConnection, urllib3.connection.HTTPSConnection):
        report = hook

    class HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
        ConnectionCls = HTTPConnection

    class HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
        ConnectionCls = HTTPSConnection

    return {"http": HTTPPool, "https": HTTPSPool}


# -- sessions ---------------------------------------------------------------------------------


class _Adapter(requests.adapters.HTTPAdapter):
    """An HTTPAdapter without retries; with ``ssl_context``, every TLS connection uses that
    context and nothing else (requests with ``verify=True`` would add a CA file, certifi or
    ``REQUESTS_CA_BUNDLE``, that urllib3 loads *into* the context; here ``cert_reqs`` comes from
    the context and no CA file is passed). With ``report``, each socket goes to it."""

    def __init__(self, ssl_context: Optional[ssl.SSLContext], report: Optional[SocketReport]) -> None:
        self._ssl_context = ssl_context
        self._report = report
        super().__init__(max_retries=0)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        if self._ssl_context is not None:
            pool_kwargs["ssl_context"] = self._ssl_context
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        if self._report is not None:
            self.poolmanager.pool_classes_by_scheme = _reporting_pools(self._report)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        if self._ssl_context is not None:
            proxy_kwargs["ssl_context"] = self._ssl_context
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def build_connection_pool_key_attributes(  # requests >= 2.32
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> Any:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if self._ssl_context is None:
            return host_params, pool_kwargs
        kwargs: Dict[str, Any] = dict(pool_kwargs)
        kwargs.pop("ca_certs", None)
        kwargs.pop("ca_cert_dir", None)
        kwargs["ssl_context"] = self._ssl_context
        kwargs["cert_reqs"] = self._ssl_context.verify_mode
        return host_params, kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        if self._ssl_context is None:
            super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
            return
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


def new_session(ssl_context: Optional[object], url: str, report: Optional[SocketReport] = None) -> requests.Session:
    """A session for requests to ``url``'s origin (redirects are only followed within it):
    https uses ``ssl_context`` (a default verifying context if it is not an ``ssl.SSLContext``);
    ``report`` is given each socket connected (see :class:`SocketWatch`)."""
    session = requests.Session()
    session.trust_env = False  # no env CA bundle, netrc or proxies
    if url.lower().startswith("https:"):
        ctx = ssl_context if isinstance(ssl_context, ssl.SSLContext) else _verifying_context()
        session.mount("https://", _Adapter(ctx, report))
    session.mount("http://", _Adapter(None, report))
    return session


# -- redirects --------------------------------------------------------------------------------

#: Redirects followed per open(), at most (browsers' EventSource follows them too).
MAX_REDIRECTS = 5
_FOLLOWED = frozenset((301, 302, 303, 307, 308))
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> Tuple[str, str, int, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme, 0)  # ValueError for a bad port
    return scheme, parts.hostname or "", port, parts.netloc.rpartition("@")[0]


def same_origin(a: str, b: str) -> bool:
    """Same scheme, host and port (and the same user info, usually none): credentials sent to
    ``a`` may go to ``b``."""
    try:
        return _origin(a) == _origin(b)
    except ValueError:
        return False


def redirect_target(
    url: str, status: int, location: Optional[str], visited: Sequence[str]
) -> Tuple[Optional[str], str]:
    """Where a 3xx answer to ``url`` leads (pure): ``(target, "")`` to follow it, or
    ``(None, why)`` to refuse it. ``visited``: the URLs requested so far, ``url`` included.

    Followed: 301, 302, 303, 307 and 308 with a ``Location`` (relative or absolute) on the same
    origin, to a URL not requested yet, while fewer than :data:`MAX_REDIRECTS` were followed.
    The request stays a GET with the same headers (it is the same origin)."""
    if status not in _FOLLOWED or not location:
        return None, "redirect refused (credentials stay on this host)"
    target = urljoin(url, location.strip())
    if not same_origin(url, target):
        return None, "to another origin; redirect refused (credentials stay on this host)"
    if target in visited:
        return None, "back to a URL already requested; redirect loop refused"
    if len(visited) > MAX_REDIRECTS:
        return None, f"after {MAX_REDIRECTS} redirects; too many redirects, refused"
    return target, ""


# -- logs -------------------------------------------------------------------------------------


class CredentialQueryFilter(logging.Filter):
    """Redacts credential query values (``token=``, ``api_key=``, ... as :func:`redact_url`
    does) in the records of urllib3's loggers, which log each request's URL at DEBUG.
    Runs on the thread that logs; changes only the string arguments that held one."""

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
    """One :class:`CredentialQueryFilter` on each of urllib3's loggers (idempotent, thread-safe)."""
    with _log_filter_lock:
        for name in _URLLIB3_LOGGERS:
            logger = logging.getLogger(name)
            if not any(type(f).__name__ == CredentialQueryFilter.__name__ for f in logger.filters):
                logger.addFilter(CredentialQueryFilter())


# -- errors -----------------------------------------------------------------------------------


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


def cert_verify_failed(exc: BaseException) -> bool:
    for e in _chain(exc):
        if isinstance(e, ssl.SSLCertVerificationError):
            return True
        if isinstance(e, ssl.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(e):
            return True
    return False


def _timed_out(exc: BaseException) -> bool:
    return any(isinstance(e, (urllib3.exceptions.ReadTimeoutError, socket.timeout)) for e in _chain(exc))


def reason(exc: BaseException) -> str:
    """A short, secret-free description of the root cause (no URLs, no headers, no server text)."""
    for e in reversed(_chain(exc)):
        if isinstance(e, ssl.SSLError):
            return f"TLS error ({getattr(e, 'reason', None) or type(e).__name__})"
        if isinstance(e, OSError) and e.errno is not None:
            name = errno.errorcode.get(e.errno, str(e.errno))
            return f"{name}: {e.strerror or ''}".rstrip(": ")
        if isinstance(e, (socket.timeout, TimeoutError)):
            return "timed out"
    return type(exc).__name__


def translate_request_error(exc: BaseException, what: str, scrub: Scrub) -> MagkConnectionError:
    """Our error for a failed request (``what``: "SSE request to <redacted url>"); the reason
    named is secret-free and ``scrub``-bed; ``exc`` is not chained (raise the result outside the
    ``except`` block). KeyboardInterrupt and SystemExit are raised again as they are."""
    cause = scrub(reason(exc))
    if isinstance(exc, MagkConnectionError):
        return exc
    if cert_verify_failed(exc):
        return NetworkError(
            f"{what} failed: TLS certificate verification failed ({cause}); "
            "check the CA bundle / server certificate",
            terminal=True,
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return MagkTimeoutError(f"{what} timed out connecting ({cause})")
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return MagkTimeoutError(f"{what} timed out waiting for the response ({cause})")
    if isinstance(exc, requests.exceptions.SSLError):
        return NetworkError(f"{what} failed in TLS: {cause}")
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
        return NetworkError(f"{what} failed: {cause}")
    if isinstance(exc, requests.exceptions.RequestException):
        return NetworkError(f"{what} failed: {cause}")
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        raise exc
    return NetworkError(f"{what} failed unexpectedly: {type(exc).__name__}")


def translate_read_error(
    exc: BaseException, where: str, read_timeout: Optional[float], scrub: Scrub
) -> MagkConnectionError:
    """Our error for a failed body read of the stream from ``where`` (same rules as above)."""
    if isinstance(exc, MagkConnectionError):
        return exc
    if _timed_out(exc):
        return MagkTimeoutError(f"SSE stream from {where} was silent for {read_timeout} s")
    if cert_verify_failed(exc):
        return NetworkError(f"SSE stream from {where}: TLS certificate verification failed", terminal=True)
    if isinstance(exc, (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, ValueError)):
        return NetworkError(f"SSE stream from {where} was cut off: {scrub(reason(exc))}")
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        raise exc
    return NetworkError(f"SSE stream from {where} failed: {type(exc).__name__}")
