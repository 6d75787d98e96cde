"""Building a transport from the config, and the handshake the supervisor makes on its own.

:func:`make_transport` is the default ``RealtimeService.transport_factory``: a plain function
of the config (it must not hold the service: the supervisor calls it between steps).
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Callable, Optional
from urllib.parse import urlsplit, urlunsplit

from ..config import RealtimeConnectionConfig
from ..errors import ConfigError, MagkConnectionError
from ..models import ConnectionType
from ..security import auth_headers, build_ssl_context, check_plaintext_credentials, url_with_token
from ..transports.base import Transport, TransportOptions
from .state import Connection

if TYPE_CHECKING:
    from .supervisor import Supervisor

__all__ = ["Handshake", "TransportFactory", "bounded_wait", "make_transport"]

TransportFactory = Callable[[RealtimeConnectionConfig, ConnectionType], Transport]


def _messages_url(cfg: RealtimeConnectionConfig) -> Optional[str]:
    if cfg.messages_url:
        return cfg.messages_url
    if not cfg.event_source_url:
        return None
    parts = urlsplit(cfg.event_source_url)
    path = parts.path
    suffix = "/events/realtime"
    base = path[: -len(suffix)] if path.endswith(suffix) else ""
    return urlunsplit((parts.scheme, parts.netloc, base + "/messages", "", ""))


def make_transport(cfg: RealtimeConnectionConfig, ctype: ConnectionType) -> Transport:
    """A transport of type ``ctype`` for ``cfg`` (not opened yet); :class:`ConfigError` when
    ``ctype`` has no URL or the credentials would go out in plain text."""
    url = cfg.websocket_url if ctype is ConnectionType.WEBSOCKET else cfg.event_source_url
    if url is None:
        raise ConfigError(f"no URL configured for {ctype.value}")
    check_plaintext_credentials(url, cfg)
    secure = urlsplit(url).scheme in ("wss", "https")
    heartbeat = cfg.heartbeat_interval_ms + cfg.heartbeat_timeout_ms
    options = TransportOptions(
        url=url_with_token(url, cfg),
        headers=auth_headers(cfg),
        ssl_context=build_ssl_context(cfg) if secure else None,
        connect_timeout=cfg.connection_timeout_ms / 1000.0,
        send_timeout=cfg.message_timeout_ms / 1000.0,
        max_message_size=cfg.max_message_size,
        read_timeout=heartbeat / 1000.0 if cfg.enable_heartbeat else None,
        messages_url=_messages_url(cfg),
    )
    if ctype is ConnectionType.WEBSOCKET:
        from ..transports.websocket import WebSocketTransport

        return WebSocketTransport(options)
    from ..transports.sse import SSETransport

    return SSETransport(options)


class Handshake:
    """A handshake the supervisor thread makes holding no reference to the service (so a service
    dropped while its supervisor waits on the network can be collected), then hands to ``finish``."""

    __slots__ = ("conn", "ctype", "error", "finish", "last_event_id", "transport")

    def __init__(
        self,
        transport: Transport,
        ctype: ConnectionType,
        last_event_id: Optional[str],
        finish: Callable[[Supervisor, Handshake, threading.Event], Optional[float]],
        conn: Optional[Connection] = None,
    ) -> None:
        self.transport = transport
        self.ctype = ctype
        self.last_event_id = last_event_id
        self.finish = finish  # an unbound method: called as finish(supervisor, handshake, stop)
        self.conn = conn  # the live connection a switch-back probe replaces
        self.error: Optional[MagkConnectionError] = None

    def run(self) -> None:
        try:
            self.transport.open(last_event_id=self.last_event_id)
        except MagkConnectionError as err:
            self.error = err


def bounded_wait(seconds: float) -> float:
    """``seconds`` as a timeout ``Event.wait``/``Thread.join`` accept: above ``threading.TIMEOUT_MAX``
    they raise OverflowError (a huge backoff, breaker or server wait must never kill the supervisor).
    Negative: 0; NaN (a broken computation): 1 s, so that the supervisor cannot spin."""
    if math.isnan(seconds):
        return 1.0
    return min(max(0.0, seconds), threading.TIMEOUT_MAX)
