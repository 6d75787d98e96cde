"""The transport contract shared by the WebSocket and Server-Sent Events transports.

A transport is one connection: ``open()`` once, then ``receive()`` in a loop on
the reader thread, ``send()`` from any thread, ``close()`` from any thread.
It is not reused after it closes; the service makes a new one per attempt.

Every failure leaves a transport as a :class:`~magk_client.errors.MagkConnectionError`
subclass, already classified (network, timeout, auth, server, protocol); errors
of websocket-client, requests, ssl and socket never escape it. Messages of
those errors are redacted: no token, API key or credential-bearing URL.
"""

from __future__ import annotations

import abc
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Tuple, Union
from urllib.parse import unquote, unquote_plus

from ..errors import _CRED_RE
from ..models import ConnectionType

__all__ = ["SSEEvent", "Transport", "TransportOptions", "Inbound"]


class SSEEvent(NamedTuple):
    """One Server-Sent Event (after the WHATWG parsing rules). Immutable; a NamedTuple
    because one is built per event on the reader's hot path (~0.4 us against ~0.8 us
    for a frozen dataclass).

    ``id`` is the last-event-id buffer at dispatch time: per the standard it may be
    inherited from an earlier event when this one has no ``id:`` line (``None`` when
    the buffer is empty).

    ``dispatch`` is False for a block that changed the last event id without
    carrying data (``id: 7`` then a blank line, or ``id:`` which resets it): such an
    item delivers nothing to users, but the service records ``id`` (``None`` = reset)
    as the ``Last-Event-ID`` to send on the next reconnect (docs/sse.rst S7).
    """

    data: str
    event: str = "message"
    id: Optional[str] = None
    dispatch: bool = True


#: What ``receive()`` yields: the text of a WebSocket message, or a parsed SSE event.
Inbound = Union[str, SSEEvent]


@dataclass(frozen=True)
class TransportOptions:
    """What a transport needs to open a connection (built by the service from its config).

    ``headers`` already hold the auth headers (``Authorization``, ``X-API-Key``, extra
    headers); ``Last-Event-ID`` is passed to ``open()`` separately. ``ssl_context`` is
    used for every TLS connection the transport makes (``None`` for plain ws/http).
    """

    url: str
    headers: Dict[str, str] = field(default_factory=dict)
    ssl_context: Optional[object] = None  # ssl.SSLContext; object keeps this importable cheaply
    connect_timeout: float = 10.0
    send_timeout: float = 10.0
    max_message_size: int = 16 * 1024 * 1024
    #: seconds without any byte after which receive() raises a timeout (SSE only; WS uses pings)
    read_timeout: Optional[float] = None
    #: SSE only: where POST /messages goes (sending while on SSE)
    messages_url: Optional[str] = None


class Transport(abc.ABC):
    """One live connection. Thread use: ``open``/``receive`` on the reader thread;
    ``send`` and ``close`` from any thread (sends are serialised inside)."""

    connection_type: ConnectionType

    def __init__(self, options: TransportOptions) -> None:
        self.options = options
        #: ``time.monotonic()`` of the last bytes received (any frame, event or comment).
        self.last_activity: float = time.monotonic()
        #: SSE ``retry:`` value in ms, the floor of the next reconnect delay (None if never set).
        self.retry_ms: Optional[int] = None
        self._closed = threading.Event()
        self._secrets: Optional[Tuple[str, ...]] = None  # secrets_of(options), on first scrub()

    @abc.abstractmethod
    def open(self, *, last_event_id: Optional[str] = None) -> None:
        """Connect and handshake within ``options.connect_timeout``, sending
        ``Last-Event-ID`` when ``last_event_id`` is not None/empty. Raises a classified error."""

    @abc.abstractmethod
    def receive(self) -> List[Inbound]:
        """Block until one or more inbound items arrive and return them in order (never empty).

        Raises :class:`~magk_client.errors.TransportClosed` on an orderly end (close 1000/1001,
        end of the SSE body), another classified error on failure, and
        :class:`~magk_client.errors.MessageTooLargeError` for a message over the limit (the
        connection is then closed with 1009). After ``close()`` it raises promptly.
        """

    @abc.abstractmethod
    def send(self, text: str) -> None:
        """Send one JSON text message within ``options.send_timeout``; raise a classified error."""

    @abc.abstractmethod
    def close(self, code: int = 1000) -> None:
        """Close the connection. Idempotent, thread-safe, never raises, and makes a
        ``receive()`` blocked in another thread return (raise) promptly."""

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def scrub(self, text: str) -> str:
        """Replace every credential this transport sends with ``***``: for text that goes into
        an error or a log line (server-provided text above all). See :func:`secrets_of`."""
        secrets = self._secrets
        if secrets is None:
            secrets = self._secrets = secrets_of(self.options)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


def secrets_of(options: TransportOptions) -> Tuple[str, ...]:
    """The credentials a transport sends, longest first: every header value, the bare token
    of ``Bearer <token>``, and the credential query values of its URLs (``token=`` and the
    other names :func:`~magk_client.errors.redact_url` redacts), as written and decoded.
    Values under 4 characters are left alone (scrubbing them would mangle ordinary text)."""
    found = set()
    for value in options.headers.values():
        found.add(value)
        found.add(value.split(" ", 1)[-1])
    for url in (options.url, options.messages_url or ""):
        for match in _CRED_RE.finditer(url):
            value = url[match.end(1) : match.end()]
            found.update((value, unquote(value), unquote_plus(value)))
    return tuple(sorted((s for s in found if len(s) >= 4), key=len, reverse=True))
