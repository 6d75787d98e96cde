"""RealtimeService: the threads that keep one live connection to a MAGK backend.

Decisions are made by the pure objects of :mod:`policies`, :mod:`outbox`,
:mod:`router` and :mod:`delivery`; this module only moves data between them,
the transports and the user's callbacks. Three kinds of thread, all named and
all joined by :meth:`RealtimeService.disconnect`:

``magk-supervisor-N``
    The retry loop and the heartbeat timer. Opens connections (the handshake
    runs here, holding no reference to the service), applies backoff, the
    circuit breaker and the recovery plan, switches transports, sends pings,
    flushes the offline queue. It only ever waits on an Event with a deadline
    (clamped to ``threading.TIMEOUT_MAX``; a server's ``Retry-After`` is capped
    at ``max_retry_after_ms``), so ``disconnect()`` interrupts any wait. It
    never dies of an exception: anything unexpected ends the session in
    ``error``, reported to error listeners.
``magk-reader-N-M``
    One per live connection: blocks on ``transport.receive()``, decodes,
    answers server pings, drops duplicates, and hands batches to the
    dispatcher. It never runs user code.
``magk-dispatcher-N``
    Takes batches from a ``SimpleQueue`` in order and calls subscriptions and
    listeners with no lock held. A callback that raises is logged, counted and
    reported to error listeners; delivery goes on. A callback may call any
    public method, ``disconnect()`` included. Once ``disconnect()`` ends
    delivery (``_DispatchControl.discard``) it calls nothing more and counts
    what is left (``discarded_on_close``).

Public methods are safe from any thread. ``self._lock`` guards mutable state
and is never held while user code, a transport call or a join runs.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import math
import queue
import random
import threading
import time
import weakref
from dataclasses import dataclass, replace
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    Union,
)
from urllib.parse import urlsplit, urlunsplit

from . import codec
from .config import ErrorRecoveryConfig, RealtimeConnectionConfig, RecoveryStrategy
from .delivery import DeliveryTracker
from .errors import (
    CallbackError,
    CircuitOpenError,
    ClientClosedError,
    ConfigError,
    ConnectCancelledError,
    MagkConnectionError,
    MagkError,
    MagkTimeoutError,
    MessageTooLargeError,
    NetworkError,
    NotConnectedError,
    ResumeGapError,
    redact_url,
)
from .models import (
    ConnectionHealth,
    ConnectionState,
    ConnectionType,
    MessageType,
    RealtimeMessage,
)
from .outbox import OfflineQueue
from .policies import (
    Backoff,
    CircuitBreaker,
    HeartbeatMonitor,
    ReconnectTracker,
    cap_server_wait,
    recovery_plan,
)
from .reclaim import StepGate
from .router import Subscription, SubscriptionRouter
from .security import (
    auth_headers,
    build_ssl_context,
    check_plaintext_credentials,
    url_with_token,
)
from .transports.base import Inbound, Transport, TransportOptions

__all__ = ["MessageStream", "RealtimeService"]

logger = logging.getLogger("magk_client.service")

StateListener = Callable[[ConnectionState, Optional[BaseException]], Any]
ErrorListener = Callable[[MagkError], Any]
GapListener = Callable[[ResumeGapError], Any]
MessageCallback = Callable[[RealtimeMessage], Any]
Remover = Callable[[], None]

_CONTROL = frozenset({MessageType.PING, MessageType.PONG, MessageType.HEARTBEAT})
#: RealtimeConnectionConfig.log_level -> the level of the service's logger
_LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
#: states in which no outage is going on: send_message may queue (see _enqueue_locked)
_NO_OUTAGE = frozenset({ConnectionState.CONNECTING, ConnectionState.CONNECTED, ConnectionState.DISCONNECTED})
#: ``data.type`` of a command answer (a ``workflow_event`` that is no event: see set_command_answer_handler)
_ANSWER = "command_response"
#: Messages waiting for the dispatcher above which the reader hands it the GIL (see _process).
_HANDOFF_BACKLOG = 512
#: The longest the reader waits for the dispatcher to catch up, per batch (seconds).
_HANDOFF_WAIT = 0.005
#: The end of disconnect()'s timeout kept for the dispatcher to discard what is left (seconds).
_DISCARD_GRACE = 0.1
_service_numbers = itertools.count(1)


class _AppLevel(logging.Filter):
    """On each service's logger: a record must also pass the effective level of
    ``magk_client.service``, so the application's logging configuration (``basicConfig``,
    a level on ``magk_client``) still applies to a service whose own level is ``log_level``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logger.getEffectiveLevel()


_APP_LEVEL = _AppLevel()
_STOP = object()


@dataclass(frozen=True)
class _Notice:
    """Something for listeners, queued in order with the events around it."""

    kind: str  # "state" | "gap" | "error"
    state: Optional[ConnectionState] = None
    error: Optional[BaseException] = None


class _DispatchControl:
    """Shared by one dispatcher thread and ``disconnect()``: set ``discard`` and the dispatcher
    calls nothing more; what is still queued is counted in ``discarded_on_close`` and dropped."""

    __slots__ = ("discard",)

    def __init__(self) -> None:
        self.discard = False


class _Connection:
    """One live transport and its reader thread (owned by the supervisor)."""

    __slots__ = ("ctype", "error", "number", "opened_at", "reader", "transport")

    def __init__(self, number: int, transport: Transport, ctype: ConnectionType, now: float) -> None:
        self.number = number
        self.transport = transport
        self.ctype = ctype
        self.opened_at = now
        self.reader: Optional[threading.Thread] = None
        self.error: Optional[MagkConnectionError] = None


class _Handshake:
    """A handshake the supervisor makes holding no reference to the service (so a service dropped
    while its supervisor waits on the network can be collected), then hands to ``finish``."""

    __slots__ = ("conn", "ctype", "error", "finish", "last_event_id", "transport")

    def __init__(
        self,
        transport: Transport,
        ctype: ConnectionType,
        last_event_id: Optional[str],
        finish: Callable[[RealtimeService, _Handshake, threading.Event], Optional[float]],
        conn: Optional[_Connection] = None,
    ) -> None:
        self.transport = transport
        self.ctype = ctype
        self.last_event_id = last_event_id
        self.finish = finish  # an unbound method: called as finish(service, handshake, stop)
        self.conn = conn  # the live connection a switch-back probe replaces
        self.error: Optional[MagkConnectionError] = None

    def run(self) -> None:
        try:
            self.transport.open(last_event_id=self.last_event_id)
        except MagkConnectionError as err:
            self.error = err


def _coerce_config(
    config: Union[RealtimeConnectionConfig, Mapping[str, Any], None], overrides: Dict[str, Any]
) -> RealtimeConnectionConfig:
    if config is None:
        cfg = RealtimeConnectionConfig()
    elif isinstance(config, RealtimeConnectionConfig):
        cfg = config
    elif isinstance(config, Mapping):
        cfg = RealtimeConnectionConfig.from_dict(config)
    else:
        raise ConfigError(f"config must be a RealtimeConnectionConfig or a dict, got {type(config).__name__}")
    return cfg.replace(**overrides) if overrides else cfg


_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _new_message_id(rng: random.Random) -> str:
    """``msg_<epoch ms>_<9 random base36 characters>``, the original services' message ids."""
    return f"msg_{int(time.time() * 1000)}_{''.join(rng.choices(_BASE36, k=9))}"


def _with_id(
    message: Union[RealtimeMessage, Mapping[str, Any]], rng: random.Random
) -> Union[RealtimeMessage, Mapping[str, Any]]:
    """``message`` with an id when it has none (a copy; the caller's object is not changed).

    The timestamp is filled in by :func:`codec.encode`."""
    if isinstance(message, RealtimeMessage):
        return message if message.id else replace(message, id=_new_message_id(rng))
    if isinstance(message, Mapping) and not message.get("id"):
        return {**message, "id": _new_message_id(rng)}
    return message


def _resized_outbox(
    old: OfflineQueue, cfg: RealtimeConnectionConfig, now: float, log: logging.Logger
) -> OfflineQueue:
    """A queue with ``cfg``'s bounds holding ``old``'s messages (queue times kept) and counters."""
    new = OfflineQueue(cfg.max_queue_size, cfg.queue_retention_ms / 1000.0, cfg.max_queue_bytes)
    dropped = new.requeue_front(old.drain_items(now), now)  # over the new bounds: oldest dropped
    if dropped:
        log.warning("offline queue resized: dropped %d oldest message(s)", dropped)
    new.dropped += old.dropped
    new.expired += old.expired
    new.refused += old.refused
    new.total_put += old.total_put
    return new


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


class MessageStream(Iterator[RealtimeMessage]):
    """An iterator over incoming messages (the pull API for scripts and notebooks).

    It subscribes when created, so nothing that arrives after the call is missed.
    Iteration stops when no message arrives for ``timeout`` seconds (``None``: wait
    forever) or when the stream is closed. Use it as a context manager, or call
    :meth:`close`, to unsubscribe.
    """

    def __init__(self, service: RealtimeService, timeout: Optional[float], **subscribe_args: Any) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._timeout = timeout
        self._service = service
        self._closed = False
        self._sub_id = service.subscribe(callback=self._queue.put, **subscribe_args)

    def __next__(self) -> RealtimeMessage:
        if self._closed:
            raise StopIteration
        try:
            item = self._queue.get(timeout=self._timeout)
        except queue.Empty:
            self.close()
            raise StopIteration from None
        if item is _STOP:
            raise StopIteration
        assert isinstance(item, RealtimeMessage)
        return item

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._service.unsubscribe(self._sub_id)
            self._queue.put(_STOP)

    def __enter__(self) -> MessageStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RealtimeService:
    """A live, self-healing connection to a MAGK backend (WebSocket or SSE).

    ``RealtimeService(config=None, error_recovery=None, **overrides)`` takes a
    :class:`RealtimeConnectionConfig` (or a dict, camelCase keys welcome) and any
    config field as a keyword. Config durations are milliseconds; every
    ``timeout=`` argument is seconds. Use it as a context manager::

        with RealtimeService(websocket_url=url) as service:
            service.subscribe(["node_status_update"], print)
            service.wait_for("workflow_event", timeout=10)
    """

    def __init__(
        self,
        config: Union[RealtimeConnectionConfig, Mapping[str, Any], None] = None,
        error_recovery: Union[ErrorRecoveryConfig, Mapping[str, Any], None] = None,
        **overrides: Any,
    ) -> None:
        self._config = _coerce_config(config, overrides)
        if error_recovery is None:
            self._recovery = ErrorRecoveryConfig()
        else:
            self._recovery = ErrorRecoveryConfig.from_dict(error_recovery)
        cfg = self._config
        self._number = next(_service_numbers)
        #: this service's logger (no handlers): level from log_level, see _apply_logging
        self._logger = logging.getLogger(f"{logger.name}.{self._number}")
        self._logger.addFilter(_APP_LEVEL)
        self._trace = False  # enable_debug_logging: one DEBUG line per message (checked once per batch)
        self._apply_logging(cfg)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._router = SubscriptionRouter(private_types=_CONTROL | {MessageType.ACK})
        self._transformers = codec.TransformerRegistry()
        self._rng = random.Random()
        self._dispatch_q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._dispatch_control = _DispatchControl()
        self._gate = StepGate()  # shared by this service's threads (see _supervisor_main)
        self._state = ConnectionState.DISCONNECTED
        self._ctype = cfg.preferred_type
        self._conn: Optional[_Connection] = None
        self._opening: Optional[Transport] = None
        self._supervisor: Optional[threading.Thread] = None
        self._dispatcher: Optional[threading.Thread] = None
        self._closed = False
        self._direct_send = False
        self._session_error: Optional[MagkError] = None
        self._retry_now = False
        self._conn_numbers = itertools.count(1)
        self._state_listeners: Tuple[StateListener, ...] = ()
        self._error_listeners: Tuple[ErrorListener, ...] = ()
        self._gap_listeners: Tuple[GapListener, ...] = ()
        self._outbox = OfflineQueue(cfg.max_queue_size, cfg.queue_retention_ms / 1000.0, cfg.max_queue_bytes)
        self._delivery = DeliveryTracker(cfg.dedup_window)
        self._build_policies()
        # Counters. Each has one writing thread (noted) unless guarded by the lock.
        self._received = 0  # reader
        self._enqueued = 0  # reader
        self._invalid = 0  # reader
        self._oversized = 0  # supervisor (lock)
        self._resume_gaps = 0  # reader
        self._dispatch_dropped = 0  # reader
        self._dispatched = 0  # dispatcher
        #: set by the dispatcher when it has delivered every batch handed to it
        self._caught_up = threading.Event()
        self._delivered = 0  # dispatcher
        self._discarded_on_close = 0  # dispatcher
        self._callback_errors = 0  # dispatcher
        self._sent = 0  # lock
        self._total_reconnects = 0  # lock
        self._session_connects = 0  # lock
        self._switches = 0  # lock
        self._connected_since: Optional[float] = None
        self._last_message_at: Optional[float] = None
        self._errors: List[str] = []
        self._next_preferred_try = 0.0
        #: while offline after a failure whose category lacks QUEUE_OFFLINE: why send_message refuses (lock)
        self._refuse_offline: Optional[str] = None
        self._handles = _Handles()
        #: set by set_command_answer_handler: command answers go there instead of to subscriptions
        self._answer_handler: Optional[MessageCallback] = None
        weakref.finalize(self, _release, self._handles)
        _live_services.add(self)

    def _build_policies(self) -> None:
        cfg = self._config
        self._tracker = ReconnectTracker(
            Backoff.from_config(cfg), cfg.max_reconnect_attempts, cfg.min_stable_connection_ms / 1000.0
        )
        self._breaker = CircuitBreaker(cfg.circuit_breaker_threshold, cfg.circuit_breaker_reset_ms / 1000.0)
        self._heartbeat = HeartbeatMonitor(cfg.heartbeat_interval_ms / 1000.0, cfg.heartbeat_timeout_ms / 1000.0)

    def _apply_logging(self, cfg: RealtimeConnectionConfig) -> None:
        """The logger's level is ``log_level``, DEBUG with ``enable_debug_logging`` (which also
        turns on the per-message lines). What is shown is still up to the application's
        logging configuration (see :class:`_AppLevel`)."""
        self._logger.setLevel(logging.DEBUG if cfg.enable_debug_logging else _LOG_LEVELS[cfg.log_level])
        self._trace = cfg.enable_debug_logging

    # ------------------------------------------------------------------ properties

    @property
    def config(self) -> RealtimeConnectionConfig:
        """The current configuration (an immutable value; see :meth:`update_config`)."""
        return self._config

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def connection_type(self) -> Optional[ConnectionType]:
        """The transport of the live connection, else the one the next attempt will use."""
        conn = self._conn
        return conn.ctype if conn is not None else self._ctype

    @property
    def is_connected(self) -> bool:
        return self._state is ConnectionState.CONNECTED

    @property
    def last_event_id(self) -> Optional[str]:
        """The id of the last event accepted; sent as ``Last-Event-ID`` on reconnect."""
        return self._delivery.last_event_id

    def __repr__(self) -> str:
        cfg = self._config
        url = cfg.websocket_url if self._ctype is ConnectionType.WEBSOCKET else cfg.event_source_url
        return f"<RealtimeService #{self._number} {self._state.value} {self._ctype.value} {redact_url(url or '')}>"

    # ------------------------------------------------------------------ lifecycle

    def connect(self, timeout: Optional[float] = None, *, wait: bool = True) -> None:
        """Connect, blocking until connected (or, with ``wait=False``, return at once and
        keep trying in the background).

        Raises the classified error (:class:`AuthError`, :class:`NetworkError`, ...)
        when the service gives up (a terminal error, attempts exhausted, an internal
        error), and :class:`MagkTimeoutError` if ``timeout`` seconds pass first; in both
        cases the background attempts stop. :meth:`disconnect` or :meth:`close` from
        another thread (or a callback) makes it raise :class:`ConnectCancelledError` at
        once. It returns once a connection was made, even one lost again before the
        waiting thread woke (the state listeners tell the rest). Calling it while
        connected does nothing.
        """
        with self._lock:
            if self._closed:
                raise ClientClosedError("this RealtimeService was closed; create a new one")
            running = self._supervisor is not None and self._supervisor.is_alive()
            if not running:
                self._start_session_locked()
            elif self._state is ConnectionState.CONNECTED:
                return
            session, connects = self._stop, self._session_connects  # the session this call waits for
        if not wait:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        err: Optional[MagkError] = None
        with self._lock:
            while True:
                if self._state is ConnectionState.CONNECTED:
                    return
                if self._stop is session and self._session_connects > connects:
                    return  # it connected, and lost that connection before this thread woke up
                if session.is_set() or self._session_error is not None:
                    # the session ended: gave up, or ended by disconnect()/close()/another connect()
                    if self._stop is session and self._session_error is not None:
                        err = self._session_error
                    else:  # ...and another session has started since
                        err = ConnectCancelledError("connect() was cancelled by disconnect()")
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    err = None
                    break
                self._changed.wait(remaining if remaining is None else min(remaining, 1.0))
        if err is None:
            last = self._errors[-1] if self._errors else "no attempt finished"
            err = MagkTimeoutError(f"could not connect within {timeout} s (last error: {last})")
        self._shutdown(5.0, ConnectionState.ERROR, err, session=session)
        raise err

    def _start_session_locked(self) -> None:
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._session_error = None
        self._session_connects = 0
        self._tracker.reset()
        # A half-open probe of an earlier session that ended without an outcome is given back.
        self._breaker.release_probe(time.monotonic())
        self._ctype = self._config.preferred_type
        if self._dispatcher is None or not self._dispatcher.is_alive():
            self._dispatch_q = queue.SimpleQueue()
            self._dispatch_control = _DispatchControl()
            self._dispatcher = threading.Thread(
                target=_dispatcher_main,
                args=(weakref.ref(self), self._gate, self._dispatch_q, self._dispatch_control),
                name=f"magk-dispatcher-{self._number}",
                daemon=True,
            )
            self._dispatcher.start()
        self._handles.stop, self._handles.wake, self._handles.queue = self._stop, self._wake, self._dispatch_q
        self._set_state_locked(ConnectionState.CONNECTING, None)  # into this session's queue
        self._supervisor = threading.Thread(
            target=_supervisor_main,
            args=(weakref.ref(self), self._gate, self._stop, self._wake),
            name=f"magk-supervisor-{self._number}",
            daemon=True,
        )
        self._supervisor.start()

    def disconnect(self, timeout: float = 5.0) -> None:
        """Close the connection and end every thread this service started, within
        ``timeout`` seconds.

        Events already received are delivered first, for what is left of ``timeout``;
        then delivery stops: what is still queued is discarded and counted
        (``discarded_on_close`` in :meth:`get_connection_health`), and after this
        returns no callback or listener is called (one already running when the
        timeout expires cannot be interrupted; it is left to finish, and logged).
        From inside a callback nothing more is delivered once that callback returns.
        A :meth:`connect` waiting in another thread raises
        :class:`ConnectCancelledError` at once. Safe from any thread. The state
        becomes ``disconnected``; :meth:`connect` may be called again.
        """
        self._shutdown(timeout, ConnectionState.DISCONNECTED, None)

    def _shutdown(
        self,
        timeout: float,
        final: ConnectionState,
        error: Optional[MagkError],
        *,
        cause: str = "disconnect()",
        session: Optional[threading.Event] = None,
    ) -> None:
        """End the session (``session``: only if it is still that one) within ``timeout`` s (any thread)."""
        current = threading.current_thread()
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            if session is not None and self._stop is not session:
                return  # that session was ended, and another started, meanwhile
            supervisor, dispatcher, control = self._supervisor, self._dispatcher, self._dispatch_control
            stop = self._stop
            stop.set()
            self._wake.set()
            if self._session_error is None:  # what a connect() waiting for this session raises, now
                self._session_error = error or ConnectCancelledError(f"connect() was cancelled by {cause}")
            self._changed.notify_all()
            conn, opening = self._conn, self._opening
            self._direct_send = False
        if opening is not None:
            opening.close()
        if conn is not None:
            conn.transport.close()
        if supervisor is not None and supervisor is not current:
            supervisor.join(_bounded_wait(deadline - time.monotonic()))
            if supervisor.is_alive():
                self._logger.warning("supervisor thread did not end within the disconnect timeout")
        with self._lock:
            if self._supervisor is supervisor:
                self._supervisor = None
            if self._stop is not stop:
                return  # a connect() in another thread started a new session meanwhile: it owns the dispatcher
            if self._state is not final and self._state is not ConnectionState.CLOSED:
                self._set_state_locked(final, error)
            self._dispatcher = None
            self._dispatch_q.put(_STOP)
        if dispatcher is None:
            return
        if dispatcher is current:
            control.discard = True  # called from a callback: nothing more once it returns
            return
        dispatcher.join(_bounded_wait(deadline - _DISCARD_GRACE - time.monotonic()))
        if dispatcher.is_alive():
            control.discard = True
            dispatcher.join(_bounded_wait(deadline - time.monotonic()))
            if dispatcher.is_alive():
                self._logger.warning(
                    "a callback is still running after the disconnect timeout; nothing more is delivered"
                )

    def close(self) -> None:
        """Disconnect for good (state ``closed``): later calls raise :class:`ClientClosedError`.
        Idempotent; like :meth:`disconnect` otherwise (default timeout)."""
        with self._lock:
            self._closed = True
        self._shutdown(5.0, ConnectionState.CLOSED, None, cause="close()")

    def reconnect(self, timeout: Optional[float] = None) -> None:
        """Drop the current connection (if any) and connect again at once, resuming
        from the last event. Blocks like :meth:`connect`."""
        with self._lock:
            if self._closed:
                raise ClientClosedError("this RealtimeService was closed; create a new one")
            running = self._supervisor is not None and self._supervisor.is_alive() and not self._stop.is_set()
            conn = self._conn
            if running:
                self._retry_now = True
                self._tracker.reset()
                self._wake.set()
        if running and conn is not None:
            conn.transport.close()
            with self._lock:
                # wait until the supervisor noticed the old connection is gone
                while self._conn is conn and not self._stop.is_set():
                    self._changed.wait(0.5)
        self.connect(timeout)

    def __enter__(self) -> RealtimeService:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sending

    def send_message(self, message: Union[RealtimeMessage, Mapping[str, Any]]) -> bool:
        """Send a message now if connected (True); queue it while offline (False).

        Raises :class:`NotConnectedError` when offline with the queue off,
        :class:`QueueFullError` for one message larger than ``max_queue_bytes``,
        :class:`MessageTooLargeError` over ``max_message_size``, and a
        :class:`ConfigError`/``TypeError`` for a message that cannot be encoded.
        A message without ``id`` gets one (``msg_<epoch ms>_<9 base36 chars>``) and one
        without ``timestamp`` the current UTC time (ISO-8601, milliseconds, ``Z``);
        the caller's values are kept. A queued message keeps the id it got here.
        """
        message = _with_id(message, self._rng)
        text = codec.encode(message)
        if len(text) > self._config.max_message_size:
            raise MessageTooLargeError(
                f"message of {len(text)} characters is over max_message_size={self._config.max_message_size}"
            )
        with self._lock:
            if self._closed:
                raise ClientClosedError("this RealtimeService was closed")
            conn = self._conn if self._direct_send else None
            if conn is None:
                self._enqueue_locked(text)
        if conn is None:
            if self._trace:
                self._trace_out(message, len(text), "queued")
            return False
        try:
            conn.transport.send(text)
        except MagkConnectionError as err:
            with self._lock:
                self._direct_send = False
                self._fail_connection_locked(conn, err)
                self._note_outage_locked(err, self._queues_offline(err))
                self._enqueue_locked(text)
            if self._trace:
                self._trace_out(message, len(text), "queued")
            return False
        with self._lock:
            self._sent += 1
        if self._trace:
            self._trace_out(message, len(text), f"sent over connection {conn.number}")
        return True

    def _trace_out(self, message: Union[RealtimeMessage, Mapping[str, Any]], size: int, how: str) -> None:
        """enable_debug_logging: one line per message sent (type and id only, never the data)."""
        if isinstance(message, RealtimeMessage):
            mtype, mid = str(message.type), message.id
        else:
            mtype, mid = str(message.get("type")), str(message.get("id"))
        self._logger.debug("-> %s id=%s (%d chars) %s", mtype, mid, size, how)

    def _queues_offline(self, error: MagkConnectionError) -> bool:
        """Does ``error``'s category have the QUEUE_OFFLINE strategy?"""
        return RecoveryStrategy.QUEUE_OFFLINE in self._recovery.strategies_for(error.category)

    def _note_outage_locked(self, error: MagkConnectionError, queue_offline: bool) -> None:
        """The connection is down because of ``error``. Until the next connect (or a
        disconnect), send_message queues only if its category has QUEUE_OFFLINE."""
        if queue_offline:
            self._refuse_offline = None
        else:
            category = error.category.value
            self._refuse_offline = (
                f"not connected after a {category} error ({type(error).__name__}), and queue_offline "
                f"is not among the {category}_errors recovery strategies"
            )

    def _enqueue_locked(self, text: str) -> None:
        if not self._config.enable_offline_queue:
            raise NotConnectedError("not connected and the offline queue is off (enable_offline_queue)")
        refusal = self._refuse_offline
        if refusal is not None:
            raise NotConnectedError(refusal)
        dropped = self._outbox.put(text, time.monotonic())
        if dropped:
            self._logger.warning("offline queue full: dropped %d oldest message(s)", dropped)

    def clear_queue(self) -> int:
        """Drop every message waiting in the offline queue; return how many."""
        with self._lock:
            return self._outbox.clear()

    # ------------------------------------------------------------------ subscriptions

    def subscribe(
        self,
        event_types: Union[str, MessageType, Iterable[Union[str, MessageType]], None] = None,
        callback: Optional[MessageCallback] = None,
        *,
        workflow_id: Optional[str] = None,
        node_id: Optional[str] = None,
        filter: Optional[Callable[[RealtimeMessage], bool]] = None,
    ) -> str:
        """Call ``callback(message)`` on the dispatcher thread for each matching message.

        ``event_types``: one type, several, or None for all (ping/pong/heartbeat only
        reach subscriptions that name them). Returns a subscription id.
        """
        if callback is None or not callable(callback):
            raise ConfigError("subscribe() needs a callable callback")
        return self._router.add(event_types, callback, workflow_id=workflow_id, node_id=node_id, filter=filter)

    def unsubscribe(self, subscription_id: str) -> bool:
        """Remove a subscription; True if it existed. Takes effect for the next message."""
        return self._router.remove(subscription_id)

    def on_connection_state_change(self, listener: StateListener) -> Remover:
        """Call ``listener(state, error)`` on the dispatcher thread at every state change."""
        return self._add_listener("_state_listeners", listener)

    def on_error(self, listener: ErrorListener) -> Remover:
        """Call ``listener(error)`` on the dispatcher thread for bad input, callbacks that
        raised, a full dispatch queue, and connection errors whose category has
        ``notify_only`` or ``escalate`` (terminal ones always)."""
        return self._add_listener("_error_listeners", listener)

    def on_resume_gap(self, listener: GapListener) -> Remover:
        """Call ``listener(ResumeGapError)`` when the server could not replay missed events."""
        return self._add_listener("_gap_listeners", listener)

    def _add_listener(self, attr: str, listener: Callable[..., Any]) -> Remover:
        if not callable(listener):
            raise ConfigError("a listener must be callable")
        with self._lock:
            setattr(self, attr, (*getattr(self, attr), listener))

        def remove() -> None:
            with self._lock:
                current = getattr(self, attr)
                setattr(self, attr, tuple(x for x in current if x is not listener))

        return remove

    def register_message_transformer(
        self, event_name: str, fn: codec.MessageTransformer
    ) -> Remover:
        """Turn named SSE events ``event_name`` into envelopes with ``fn(backend_message)``."""
        return self._transformers.register(event_name, fn)

    def set_command_answer_handler(self, handler: Optional[MessageCallback]) -> None:
        """Hand command answers (``workflow_event`` messages whose ``data.type`` is
        ``command_response``) to ``handler`` instead of to subscriptions: answers are not events
        (docs/protocol.rst, Commands). ``None`` restores plain delivery. The handler runs on the
        dispatcher thread, in stream order, with no lock held; the adapter's command pipeline uses it.
        """
        if handler is not None and not callable(handler):
            raise ConfigError("the command answer handler must be callable")
        self._answer_handler = handler

    def messages(
        self,
        event_types: Union[str, MessageType, Iterable[Union[str, MessageType]], None] = None,
        *,
        timeout: Optional[float] = None,
        workflow_id: Optional[str] = None,
        node_id: Optional[str] = None,
    ) -> MessageStream:
        """Iterate over incoming messages; stops after ``timeout`` seconds of quiet."""
        self._refuse_on_dispatcher("messages()")
        return MessageStream(self, timeout, event_types=event_types, workflow_id=workflow_id, node_id=node_id)

    def wait_for(
        self,
        type_or_predicate: Union[str, MessageType, Callable[[RealtimeMessage], bool]],
        timeout: Optional[float] = None,
        *,
        workflow_id: Optional[str] = None,
        node_id: Optional[str] = None,
    ) -> RealtimeMessage:
        """Block until a matching message arrives and return it; raise
        :class:`MagkTimeoutError` after ``timeout`` seconds."""
        self._refuse_on_dispatcher("wait_for()")
        if callable(type_or_predicate) and not isinstance(type_or_predicate, str):
            types, predicate = None, type_or_predicate
        else:
            types, predicate = type_or_predicate, None
        with self.messages(types, timeout=timeout, workflow_id=workflow_id, node_id=node_id) as stream:
            deadline = None if timeout is None else time.monotonic() + timeout
            for message in stream:
                if predicate is None or predicate(message):
                    return message
                if deadline is not None:
                    stream._timeout = max(0.0, deadline - time.monotonic())
        raise MagkTimeoutError(f"no matching message within {timeout} s")

    def _refuse_on_dispatcher(self, what: str) -> None:
        if threading.current_thread() is self._dispatcher:
            raise MagkError(f"{what} cannot be called from a callback: it would wait for itself")

    # ------------------------------------------------------------------ health and config

    def get_connection_health(self) -> ConnectionHealth:
        """An immutable snapshot of the connection's health."""
        now = time.monotonic()
        with self._lock:
            hb = self._heartbeat
            conn = self._conn
            dead = conn is not None and hb.is_dead(now)
            circuit = self._breaker.state(now)
            pong = hb.last_pong_at  # monotonic: shown as wall-clock time like the other times
            return ConnectionHealth(
                is_healthy=self._state is ConnectionState.CONNECTED and not dead and circuit.value == "closed",
                state=self._state,
                connection_type=conn.ctype if conn is not None else None,
                connected_since=self._connected_since,
                last_message_at=self._last_message_at,
                last_heartbeat_at=None if pong is None else time.time() - (now - pong),
                latency_ms=hb.latency_avg_ms(),
                latency_p50_ms=hb.latency_p50_ms(),
                latency_p99_ms=hb.latency_p99_ms(),
                reconnect_attempts=self._tracker.attempts,
                total_reconnects=self._total_reconnects,
                transport_switches=self._switches,
                circuit_state=circuit,
                messages_received=self._received,
                messages_delivered=self._delivered,
                messages_sent=self._sent,
                duplicates_dropped=self._delivery.duplicates,
                invalid_messages=self._invalid,
                oversized_messages=self._oversized,
                callback_errors=self._callback_errors,
                resume_gaps=self._resume_gaps,
                queue_size=len(self._outbox),
                queue_dropped=self._outbox.dropped,
                queue_expired=self._outbox.expired,
                dispatch_queue_size=max(0, self._enqueued - self._dispatched),
                dispatch_dropped=self._dispatch_dropped,
                discarded_on_close=self._discarded_on_close,
                last_event_id=self._delivery.last_event_id,
                errors=list(self._errors[-10:]),
            )

    def update_config(self, **changes: Any) -> RealtimeConnectionConfig:
        """Change settings (validated as a whole; a bad value changes nothing).

        URLs, auth, TLS and timeouts apply from the next connection, ``preferred_type``
        from the next :meth:`connect`, ``dedup_window`` never (it sizes the window at
        construction). Backoff, attempts, heartbeat, breaker, queue and dispatch bounds,
        JSON depth and logging apply at once, and the state they govern is kept: the
        failures of this outage and when the current connection opened, an open
        breaker and its timer, outstanding pings and the RTT history, queued messages
        (with their queue times) and the queue's counters.
        """
        with self._lock:
            cfg = self._config.replace(**changes)
            self._config = cfg
            self._tracker.reconfigure(
                Backoff.from_config(cfg), cfg.max_reconnect_attempts, cfg.min_stable_connection_ms / 1000.0
            )
            self._breaker.reconfigure(cfg.circuit_breaker_threshold, cfg.circuit_breaker_reset_ms / 1000.0)
            self._heartbeat.reconfigure(cfg.heartbeat_interval_ms / 1000.0, cfg.heartbeat_timeout_ms / 1000.0)
            old = self._outbox
            if (old.max_size, old.retention, old.max_bytes) != (
                cfg.max_queue_size,
                cfg.queue_retention_ms / 1000.0,
                cfg.max_queue_bytes,
            ):
                self._outbox = _resized_outbox(old, cfg, time.monotonic(), self._logger)
            self._wake.set()  # the supervisor recomputes its deadlines
        self._apply_logging(cfg)  # takes the logging module's lock: not under ours
        return cfg

    # ------------------------------------------------------------------ state (lock held)

    def _set_state_locked(
        self, state: ConnectionState, error: Optional[BaseException], *, force: bool = False
    ) -> None:
        if state in _NO_OUTAGE:
            self._refuse_offline = None
        if state is self._state and error is None and not force:
            return
        self._state = state
        self._changed.notify_all()
        self._dispatch_q.put(_Notice("state", state, error))

    def _record_error_locked(self, error: MagkError) -> None:
        self._errors.append(f"{type(error).__name__}: {error}")
        if len(self._errors) > 50:
            del self._errors[:-20]

    def _fail_connection_locked(self, conn: _Connection, error: MagkConnectionError) -> None:
        if conn.error is None:
            conn.error = error
        self._direct_send = False
        self._wake.set()

    # ------------------------------------------------------------------ supervisor

    def _supervise_step(self, stop: threading.Event) -> Union[float, _Handshake, None]:
        """One turn of the supervisor: attempt or watch. Returns how long to wait before
        the next turn (woken early by ``wake``), None to end the session, or a handshake
        to make (with no reference to the service) and finish."""
        conn = self._conn
        if conn is None:
            return self._attempt(stop)
        return self._watch(conn, stop)

    def _supervisor_failed(self, exc: Exception, stop: threading.Event) -> None:
        """Anything unexpected in the supervisor ends the session in ``error``, reported (supervisor)."""
        self._logger.error("internal error in the supervisor thread", exc_info=exc)
        if stop.is_set():
            return  # ending anyway (disconnect, close, a connect timeout): nothing to report
        err = MagkError(f"internal error in the supervisor thread ({type(exc).__name__}); see the log")
        err.__cause__ = exc
        self._give_up(err)

    def _supervisor_done(self, stop: threading.Event) -> None:
        with self._lock:
            mine = self._stop is stop  # not a later session's
            conn = self._conn if mine else None
            opening = self._opening if mine else None
        if opening is not None:  # a handshake that ended in an internal error
            opening.close()
        self._teardown_connection(conn)
        with self._lock:
            if self._stop is stop:
                if self._conn is conn:
                    self._conn = None
                self._opening = None
                # a half-open probe that ended without an outcome (stopped, failed) is given back
                self._breaker.release_probe(time.monotonic())
            self._changed.notify_all()

    def _make_transport(self, ctype: ConnectionType) -> Transport:
        cfg = self._config
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
        transport: Transport
        if ctype is ConnectionType.WEBSOCKET:
            from .transports.websocket import WebSocketTransport

            transport = WebSocketTransport(options)
        else:
            from .transports.sse import SSETransport

            transport = SSETransport(options)
        self._handles.transports.add(transport)
        return transport

    def _other(self, ctype: ConnectionType) -> Optional[ConnectionType]:
        cfg = self._config
        if not cfg.fallback_to_secondary:
            return None
        if ctype is ConnectionType.WEBSOCKET:
            return ConnectionType.EVENTSOURCE if cfg.event_source_url else None
        return ConnectionType.WEBSOCKET if cfg.websocket_url else None

    def _attempt(self, stop: threading.Event) -> Union[float, _Handshake, None]:
        """Start one connection attempt (supervisor): the handshake to make, else the wait
        before the next turn, or None. :meth:`_opened` finishes it."""
        now = time.monotonic()
        with self._lock:
            if not self._breaker.allow(now):
                retry_at = self._breaker.retry_at(now) or now + 1.0
                err = CircuitOpenError(self._breaker.consecutive_failures, retry_at - now)
                self._set_state_locked(ConnectionState.RECONNECTING, err)
                wait = retry_at - now
            else:
                wait = -1.0
            ctype = self._ctype
        if wait >= 0:
            return wait
        try:
            transport = self._make_transport(ctype)
        except ConfigError as exc:
            self._give_up(exc)
            return None
        with self._lock:
            if stop.is_set():
                return None
            self._opening = transport
        return _Handshake(transport, ctype, self._delivery.last_event_id or None, RealtimeService._opened)

    def _opened(self, handshake: _Handshake, stop: threading.Event) -> Optional[float]:
        """Finish a connection attempt (supervisor); the wait before the next turn, or None."""
        transport, ctype, err = handshake.transport, handshake.ctype, handshake.error
        if err is not None:
            with self._lock:
                self._opening = None
            transport.close()
            return self._after_failure(err, ctype, transport, connected=False, stop=stop)
        now = time.monotonic()
        with self._lock:
            self._opening = None
            if stop.is_set():
                transport.close()
                return None
            conn = _Connection(next(self._conn_numbers), transport, ctype, now)
            if self._session_connects:
                self._total_reconnects += 1
            self._session_connects += 1
            self._conn = conn
            self._connected_since = time.time()
            self._tracker.on_connected(now)
            self._breaker.record_success(now)
            self._heartbeat.start(now)
            if ctype is not self._config.preferred_type:
                self._next_preferred_try = now + self._config.preferred_retry_interval_ms / 1000.0
            # Nothing waiting offline: sends go out directly from the moment connect() returns.
            self._direct_send = len(self._outbox) == 0
            self._set_state_locked(ConnectionState.CONNECTED, None)
        self._start_reader(conn)
        self._logger.debug("connected over %s (connection %d)", ctype.value, conn.number)
        self._flush_outbox(conn)
        return 0.0

    def _start_reader(self, conn: _Connection) -> None:
        reader = threading.Thread(
            target=_reader_main,
            args=(weakref.ref(self), self._gate, conn),
            name=f"magk-reader-{self._number}-{conn.number}",
            daemon=True,
        )
        conn.reader = reader
        reader.start()

    def _flush_outbox(self, conn: _Connection) -> None:
        """Send the offline queue in order, then let sends go out directly (supervisor)."""
        while True:
            with self._lock:
                if conn.error is not None or self._conn is not conn:
                    return
                items = self._outbox.drain(time.monotonic())
                if not items:
                    self._direct_send = True
                    return
            if self._trace:
                self._logger.debug("-> sending %d queued message(s) over connection %d", len(items), conn.number)
            for index, text in enumerate(items):
                try:
                    conn.transport.send(text)
                except MagkConnectionError as err:
                    with self._lock:
                        self._outbox.requeue_front(items[index:], time.monotonic())
                        self._fail_connection_locked(conn, err)
                    return
                with self._lock:
                    self._sent += 1

    def _watch(self, conn: _Connection, stop: threading.Event) -> Union[float, _Handshake, None]:
        """Watch a live connection: heartbeat, preferred-transport retry (supervisor)."""
        cfg = self._config
        now = time.monotonic()
        with self._lock:
            error = conn.error
            retry_now = self._retry_now
        if error is None and retry_now:
            error = NetworkError("reconnect requested")
        if error is not None:
            return self._on_dropped(conn, error, stop)
        ping: Optional[str] = None
        with self._lock:
            hb = self._heartbeat
            if cfg.enable_heartbeat:
                hb.on_activity(conn.transport.last_activity)
                if conn.ctype is ConnectionType.WEBSOCKET:
                    if hb.is_dead(now):
                        self._fail_connection_locked(
                            conn, MagkTimeoutError("no pong within the heartbeat timeout: connection is dead")
                        )
                        return 0.0
                    if hb.ping_due(now):
                        ping = hb.make_ping(now)
                elif hb.is_silent(now, conn.transport.last_activity):
                    self._fail_connection_locked(
                        conn, MagkTimeoutError("nothing received within heartbeat interval + timeout")
                    )
                    return 0.0
            deadline = hb.next_deadline(now) if cfg.enable_heartbeat else now + 3600.0
            switch_back = (
                conn.ctype is not cfg.preferred_type
                and cfg.fallback_to_secondary
                and self._next_preferred_try > 0
            )
            if switch_back:
                if now >= self._next_preferred_try:
                    self._next_preferred_try = now + cfg.preferred_retry_interval_ms / 1000.0
                else:
                    switch_back = False
                deadline = min(deadline, self._next_preferred_try)
        if ping is not None:
            try:
                conn.transport.send(codec.encode({"type": "ping", "data": {"pingId": ping}}))
                if self._trace:
                    self._logger.debug("-> ping %s", ping)
            except MagkConnectionError as err:
                with self._lock:
                    self._fail_connection_locked(conn, err)
                return 0.0
        if switch_back:
            return self._try_switch_back(conn)
        return max(0.0, deadline - time.monotonic())

    def _try_switch_back(self, conn: _Connection) -> Union[float, _Handshake]:
        """Start probing the preferred transport (supervisor); :meth:`_switched` finishes it."""
        preferred = self._config.preferred_type
        try:
            probe = self._make_transport(preferred)
        except ConfigError as err:
            self._logger.debug("preferred transport still unavailable: %s", err)
            return 0.0
        with self._lock:
            self._opening = probe
        last_event_id = self._delivery.last_event_id or None
        return _Handshake(probe, preferred, last_event_id, RealtimeService._switched, conn)

    def _switched(self, handshake: _Handshake, stop: threading.Event) -> Optional[float]:
        """On a successful probe, move to the preferred transport, resuming (supervisor)."""
        probe, preferred, conn = handshake.transport, handshake.ctype, handshake.conn
        with self._lock:
            self._opening = None
        if handshake.error is not None:
            self._logger.debug("preferred transport still unavailable: %s", handshake.error)
            probe.close()
            return 0.0
        if stop.is_set() or conn is None:
            probe.close()
            return 0.0
        self._logger.info("switching back to the preferred transport %s", preferred.value)
        # Close the secondary and let its reader finish handing over what it read;
        # the probe replays from the last accepted id and duplicates are dropped.
        self._teardown_connection(conn)
        now = time.monotonic()
        with self._lock:
            self._conn = None
            self._direct_send = False
            self._switches += 1
            self._ctype = preferred
            new = _Connection(next(self._conn_numbers), probe, preferred, now)
            self._conn = new
            self._heartbeat.start(now)
            self._tracker.on_connected(now)
            self._set_state_locked(ConnectionState.CONNECTED, None, force=True)  # a switch is an event
        self._start_reader(new)
        self._flush_outbox(new)
        return 0.0

    def _teardown_connection(self, conn: Optional[_Connection]) -> None:
        if conn is None:
            return
        conn.transport.close()
        reader = conn.reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(5.0)
            if reader.is_alive():
                self._logger.warning("reader thread %s did not end", reader.name)

    def _on_dropped(self, conn: _Connection, error: MagkConnectionError, stop: threading.Event) -> Optional[float]:
        self._teardown_connection(conn)
        # The reader's own report of this failure woke us; it must not cut the backoff short.
        # (A stop or a reconnect() request is still seen: stop is an Event, _retry_now a flag.)
        self._wake.clear()
        now = time.monotonic()
        with self._lock:
            self._conn = None
            self._direct_send = False
            self._connected_since = None
            self._tracker.on_disconnected(now)
            self._changed.notify_all()  # reconnect() waits for the old connection to be gone
        if stop.is_set():
            return None
        if isinstance(error, MessageTooLargeError):
            with self._lock:
                self._oversized += 1
        return self._after_failure(error, conn.ctype, conn.transport, connected=True, stop=stop)

    def _after_failure(
        self,
        error: MagkConnectionError,
        ctype: ConnectionType,
        transport: Transport,
        *,
        connected: bool,
        stop: threading.Event,
    ) -> Optional[float]:
        """Apply the recovery plan after a failed attempt or a lost connection (supervisor)."""
        now = time.monotonic()
        other = self._other(ctype)
        cap = self._config.max_retry_after_ms / 1000.0
        plan = recovery_plan(
            error,
            self._recovery,
            auto_reconnect=self._config.auto_reconnect,
            fallback_available=other is not None,
            max_delay_floor=cap,
        )
        self._report(error, escalate=plan.escalate, notify=plan.notify or plan.escalate)
        if stop.is_set():
            return None
        refused_upgrade = (
            not connected and ctype is ConnectionType.WEBSOCKET and error.status in (400, 404, 405, 426, 501)
        )
        with self._lock:
            self._note_outage_locked(error, plan.queue_offline)
            if not connected:  # a dropped connection was counted by on_disconnected
                self._tracker.on_attempt_failed(now)
                self._breaker.record_failure(now)
            # Repeated failures alternate transports every second retry (either may be the one
            # that is down); a refused upgrade or a server error switches at once.
            repeated = not connected and self._tracker.attempts >= 2 and self._tracker.attempts % 2 == 0
            switch = other is not None and not error.terminal and (plan.fallback or refused_upgrade or repeated)
            if refused_upgrade and not switch:
                # nothing to fall back to: a refused upgrade will be refused again (docs/faults.rst row 13)
                self._session_error = error
                self._set_state_locked(ConnectionState.ERROR, error)
                return None
            if not plan.reconnect and not (switch and refused_upgrade):
                self._session_error = error
                self._set_state_locked(ConnectionState.ERROR, error)
                return None
            if self._tracker.exhausted:
                self._session_error = error
                self._set_state_locked(ConnectionState.ERROR, error)
                self._logger.warning("giving up after %d attempts: %s", self._tracker.attempts, error)
                return None
            if switch and other is not None:
                self._ctype = other
                self._switches += 1
                if other is self._config.preferred_type:
                    self._next_preferred_try = 0.0
                self._logger.info("falling back from %s to %s", ctype.value, other.value)
            floor = max(plan.draw_floor(self._rng), self._server_wait(error, transport, cap))
            delay = self._tracker.next_delay(self._rng, floor)
            if self._retry_now:
                delay, self._retry_now = 0.0, False
            self._set_state_locked(ConnectionState.RECONNECTING, error)
        self._logger.debug("reconnecting in %.3f s after %s", delay, type(error).__name__)
        return None if stop.is_set() else delay

    @staticmethod
    def _server_wait(error: MagkConnectionError, transport: Transport, cap: float) -> float:
        """The SSE ``retry:`` wait, capped at ``cap`` s; logs any wait the server asked for above it."""
        for source, asked in (("Retry-After", error.retry_after), ("SSE retry:", (transport.retry_ms or 0) / 1000.0)):
            if asked is not None and asked > cap:
                logger.warning(
                    "the server asked to wait %.0f s (%s); capped at %.0f s (max_retry_after_ms)", asked, source, cap
                )
        return cap_server_wait((transport.retry_ms or 0) / 1000.0, cap)

    def _give_up(self, error: MagkError) -> None:
        self._report(error, escalate=False)
        with self._lock:
            self._session_error = error
            self._set_state_locked(ConnectionState.ERROR, error)

    def _report(self, error: MagkError, *, escalate: bool, notify: bool = True) -> None:
        """Record ``error`` in health, log it and, with ``notify``, queue it for the error
        listeners. Connection errors pass their recovery plan's NOTIFY_ONLY (or ESCALATE)."""
        with self._lock:
            self._record_error_locked(error)
        # Errors the service recovers from on its own are INFO; what needs the user is louder.
        if escalate:
            level = logging.ERROR
        elif isinstance(error, MagkConnectionError) and not error.terminal:
            level = logging.INFO
        else:
            level = logging.WARNING
        self._logger.log(level, "%s: %s", type(error).__name__, error)
        if notify:
            self._dispatch_q.put(_Notice("error", None, error))

    # ------------------------------------------------------------------ reader

    def _process(self, conn: _Connection, items: List[Inbound]) -> None:
        """Decode a batch, handle control messages, drop duplicates, hand over (reader thread).

        The per-message hot path: names are bound to locals once per batch."""
        now = time.time()
        depth = self._config.max_json_depth
        delivery = self._delivery
        accept = delivery.accept
        decode = codec.decode
        from_sse = codec.from_backend_message
        transformers = self._transformers
        invalid = codec.InvalidMessage
        control = _CONTROL
        ack, refusal = MessageType.SUBSCRIPTION_ACK, MessageType.SUBSCRIPTION_ERROR
        out: List[Any] = []
        append = out.append
        for item in items:
            try:
                if isinstance(item, str):
                    message = decode(item, now, depth)
                else:
                    if item.event == "message" and item.dispatch:  # an unnamed SSE event: an envelope
                        message = decode(item.data, now, depth)
                    elif not item.dispatch:  # an SSE id-only block: only the resume point moves
                        delivery.set_last_event_id(item.id or None)
                        continue
                    else:
                        decoded = from_sse(item, transformers, now, depth)
                        if decoded is None:
                            continue
                        message = decoded
                    if not message.id and item.id:
                        # no id in the envelope: the SSE last-event-id buffer is the resume point
                        delivery.set_last_event_id(item.id)
            except invalid as exc:
                self._invalid += 1
                self._report(exc, escalate=False)
                continue
            mtype = message.type
            if mtype in control:
                self._on_control(conn, message)
                if not self._router.match(message):  # only a subscription naming the type gets it
                    continue
            elif message.id and not accept(message.id):
                continue
            elif mtype is ack:
                # A server may tell where the stream stands; a client with no event yet resumes from there.
                position = message.data.get("lastEventId")
                if isinstance(position, str) and position and delivery.last_event_id is None:
                    delivery.set_last_event_id(position)
            elif mtype is refusal and message.data.get("code") == "resume_gap":
                self._resume_gaps += 1
                last = message.data.get("lastEventId")
                gap = ResumeGapError(last if isinstance(last, str) else None)
                self._logger.warning("%s", gap)
                append(_Notice("gap", None, gap))
            append(message)
        if self._trace:
            self._trace_in(conn, len(items), out)
        self._received += len(items)
        self._last_message_at = now
        if not out:
            return
        pending = self._enqueued - self._dispatched
        if pending + len(out) > self._config.max_dispatch_queue:
            self._overflow(out, pending)
            return
        self._enqueued += len(out)
        self._dispatch_q.put(out)
        if pending + len(out) > _HANDOFF_BACKLOG:
            self._hand_off()

    def _trace_in(self, conn: _Connection, read: int, out: List[Any]) -> None:
        """enable_debug_logging: one line per message handed to the dispatcher (type, ids; never
        the data), and one per read (reader thread)."""
        log = self._logger
        messages = 0
        for message in out:
            if type(message) is RealtimeMessage:
                messages += 1
                log.debug(
                    "<- %s id=%s workflow=%s node=%s", message.type, message.id, message.workflow_id, message.node_id
                )
        log.debug(
            "<- connection %d: %d item(s) read, %d handed to the dispatcher (the rest: control, duplicate, invalid)",
            conn.number,
            read,
            messages,
        )

    def _overflow(self, out: List[Any], pending: int) -> None:
        """Hand over what fits under ``max_dispatch_queue``; drop, count and report the rest
        (reader thread). Notices in the excess are kept: they are not messages."""
        room = max(0, self._config.max_dispatch_queue - pending)
        excess = out[room:]
        kept = out[:room]
        kept.extend(x for x in excess if type(x) is _Notice)
        dropped = len(out) - len(kept)
        if kept:
            self._enqueued += len(kept)
            self._dispatch_q.put(kept)
        if dropped:
            self._dispatch_dropped += dropped
            self._report(
                MagkError(f"dispatch queue full ({pending} waiting): dropped {dropped} message(s)"),
                escalate=True,
            )
        if pending + len(kept) > _HANDOFF_BACKLOG:
            self._hand_off()

    def _hand_off(self) -> None:
        """Let the dispatcher catch up for a moment (reader thread, per batch)."""
        # Under the GIL the dispatcher runs only when this thread lets it: at full rate the
        # reader wins every GIL race after its socket reads, so it decoded 4,000-5,000
        # messages ahead of the callbacks (tens of milliseconds of queueing). Waiting here,
        # the GIL released, lets the dispatcher catch up now (the backlog stays under about
        # 700); bounded, so a slow callback only slows reading down.
        caught_up = self._caught_up
        caught_up.clear()
        if self._enqueued != self._dispatched:
            caught_up.wait(_HANDOFF_WAIT)

    def _on_control(self, conn: _Connection, message: RealtimeMessage) -> None:
        data = message.data
        if self._trace:
            self._logger.debug("<- %s id=%s (control)", message.type, message.id)
        if message.type is MessageType.PONG:
            ping_id = data.get("pingId")
            if isinstance(ping_id, str):
                with self._lock:
                    self._heartbeat.on_pong(ping_id, time.monotonic())
            return
        # server heartbeat {"ping": id} or a server ping: answer with a pong
        ping_id = data.get("ping") if message.type is MessageType.HEARTBEAT else data.get("pingId", message.id)
        if message.type is MessageType.HEARTBEAT and not ping_id:
            return  # liveness only
        if conn.ctype is ConnectionType.WEBSOCKET:
            try:
                conn.transport.send(codec.encode({"type": "pong", "data": {"pingId": ping_id}}))
                if self._trace:
                    self._logger.debug("-> pong for %s", ping_id)
            except MagkConnectionError as err:
                with self._lock:
                    self._fail_connection_locked(conn, err)

    # ------------------------------------------------------------------ dispatcher

    def _dispatch(self, item: Any, control: _DispatchControl) -> None:
        """Deliver one batch or notice (dispatcher thread, no lock held), until ``control.discard``."""
        if type(item) is _Notice:
            self._deliver_notice(item)
            return
        match = self._router.match
        answers, workflow_event = self._answer_handler, MessageType.WORKFLOW_EVENT
        notices = 0
        for index, message in enumerate(item):  # the per-message hot path: keep it to lookups and calls
            if control.discard:  # disconnect() ended delivery
                self._delivered += index - notices
                self._dispatched += index
                self._discard_batch(item[index:])
                return
            if type(message) is _Notice:
                notices += 1
                self._deliver_notice(message)
                continue
            if answers is not None and message.type is workflow_event and message.data.get("type") == _ANSWER:
                try:
                    answers(message)
                except Exception:
                    self._logger.warning("command answer handler raised", exc_info=True)
                continue
            for sub in match(message):
                check = sub.filter
                try:
                    if check is None or check(message):
                        sub.callback(message)
                except Exception as exc:  # noqa: BLE001 - user code: reported, delivery goes on
                    self._callback_failed(sub, exc)
        self._delivered += len(item) - notices
        self._dispatched += len(item)
        if self._dispatched == self._enqueued:
            self._caught_up.set()

    def _discard_batch(self, batch: List[Any]) -> None:
        """Count a batch that will not be delivered (dispatcher, after ``disconnect()``)."""
        self._discarded_on_close += sum(1 for m in batch if type(m) is not _Notice)
        self._dispatched += len(batch)

    def _discard_queued(self, item: Any, q: queue.SimpleQueue[Any]) -> None:
        """Count ``item`` and everything still queued as discarded (dispatcher, after ``disconnect()``)."""
        while True:
            if type(item) is list:
                self._discard_batch(item)
            try:
                item = q.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                break
        if self._dispatched == self._enqueued:
            self._caught_up.set()

    def _callback_failed(self, sub: Subscription, exc: Exception) -> None:
        """A callback (or its filter) raised: log, count, report to error listeners; go on."""
        self._callback_errors += 1
        self._logger.warning("callback of subscription %s raised %s", sub.id, type(exc).__name__, exc_info=True)
        err = CallbackError(f"callback of subscription {sub.id} raised {type(exc).__name__}: {exc}"[:500])
        err.__cause__ = exc
        self._call_listeners(self._error_listeners, err)

    def _deliver_notice(self, notice: _Notice) -> None:
        if notice.kind == "state":
            assert notice.state is not None
            for listener in self._state_listeners:
                try:
                    listener(notice.state, notice.error)
                except Exception:
                    self._callback_errors += 1
                    self._logger.warning("state listener raised", exc_info=True)
        elif notice.kind == "gap":
            assert isinstance(notice.error, ResumeGapError)
            self._call_listeners(self._gap_listeners, notice.error)
            for listener in self._state_listeners:
                try:
                    listener(self._state, notice.error)
                except Exception:
                    self._callback_errors += 1
                    self._logger.warning("state listener raised", exc_info=True)
        elif isinstance(notice.error, MagkError):
            self._call_listeners(self._error_listeners, notice.error)

    def _call_listeners(self, listeners: Tuple[Callable[[Any], Any], ...], error: MagkError) -> None:
        for listener in listeners:
            try:
                listener(error)
            except Exception:
                self._callback_errors += 1
                self._logger.warning("listener raised", exc_info=True)


# ---------------------------------------------------------------------- thread entry points
#
# Threads hold the service only through a weak reference between steps, and never while
# they block (on the socket, the queue, a handshake or a wait), so a service dropped
# without disconnect() (a re-run notebook cell) can be garbage collected; its finalizer then
# stops the threads and closes the sockets. A step holds a strong reference for a moment:
# a service in a reference cycle (a callback that uses it) that a full collection met in
# that moment would survive it, so its threads collect again once none of them holds it
# (reclaim.StepGate).


def _bounded_wait(seconds: float) -> float:
    """``seconds`` as a timeout ``Event.wait``/``Thread.join`` accept: above ``threading.TIMEOUT_MAX``
    they raise OverflowError (a huge backoff, breaker or server wait must never kill the supervisor).
    Negative: 0; NaN (a broken computation): 1 s, so that the supervisor cannot spin."""
    if math.isnan(seconds):
        return 1.0
    return min(max(0.0, seconds), threading.TIMEOUT_MAX)


def _supervisor_main(
    ref: weakref.ReferenceType[RealtimeService], gate: StepGate, stop: threading.Event, wake: threading.Event
) -> None:
    """Supervisor thread: the retry loop and heartbeat timer of one session.

    It never dies of an exception: anything unexpected ends the session in ``error``,
    reported to error listeners (a waiting ``connect()`` raises it)."""
    try:
        while not stop.is_set():
            wake.clear()
            token = gate.enter()
            try:
                service = ref()
                if service is None:
                    return
                step = service._supervise_step(stop)
                del service
            finally:
                gate.leave(token)
            wait: Optional[float]
            if isinstance(step, _Handshake):
                step.run()  # the network wait: no reference to the service
                token = gate.enter()
                try:
                    service = ref()
                    if service is None:
                        step.transport.close()
                        return
                    wait = step.finish(service, step, stop)
                    del service
                finally:
                    gate.leave(token)
            else:
                wait = step
            if wait is None:
                break
            if wait > 0:
                wake.wait(_bounded_wait(wait))
    except Exception as exc:  # noqa: BLE001 - logged and reported by _supervisor_failed
        service = ref()
        if service is not None:
            try:
                service._supervisor_failed(exc, stop)
            except Exception:
                logger.exception("supervisor failed, and so did reporting it")
    service = ref()
    if service is not None:
        try:
            service._supervisor_done(stop)
        except Exception:
            logger.exception("supervisor failed while ending its session")


def _reader_main(ref: weakref.ReferenceType[RealtimeService], gate: StepGate, conn: _Connection) -> None:
    """Reader thread: receive, decode, answer pings, de-duplicate, hand over batches."""
    transport = conn.transport
    try:
        while True:
            items = transport.receive()
            token = gate.enter()
            try:
                service = ref()
                if service is None:
                    transport.close()
                    return
                service._process(conn, items)
                del service
            finally:
                gate.leave(token)
    except MagkConnectionError as err:
        error: MagkConnectionError = err
    except Exception as exc:
        logger.exception("reader failed")
        error = MagkConnectionError(f"reader failed: {type(exc).__name__}")
    service = ref()
    if service is not None:
        with service._lock:
            service._fail_connection_locked(conn, error)


def _dispatcher_main(
    ref: weakref.ReferenceType[RealtimeService],
    gate: StepGate,
    q: queue.SimpleQueue[Any],
    control: _DispatchControl,
) -> None:
    """Dispatcher thread: deliver batches and notices in order, no lock held; once
    ``disconnect()`` sets ``control.discard``, count what is left and end."""
    while True:
        item = q.get()
        if item is _STOP:
            return
        token = gate.enter()
        try:
            service = ref()
            if service is None:
                return
            if control.discard:
                service._discard_queued(item, q)
                return
            service._dispatch(item, control)
            del service
        finally:
            gate.leave(token)


class _Handles:
    """What the finalizer of a collected service must stop (holds no reference to it)."""

    def __init__(self) -> None:
        self.stop: Optional[threading.Event] = None
        self.wake: Optional[threading.Event] = None
        self.queue: Optional[queue.SimpleQueue[Any]] = None
        self.transports: weakref.WeakSet[Transport] = weakref.WeakSet()


def _release(handles: _Handles) -> None:
    """Finalizer of a service that was dropped while running: stop its threads."""
    if handles.stop is not None:
        handles.stop.set()
    if handles.wake is not None:
        handles.wake.set()
    for transport in list(handles.transports):
        transport.close()
    if handles.queue is not None:
        handles.queue.put(_STOP)


_live_services: weakref.WeakSet[RealtimeService] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    """At interpreter exit, disconnect what is still connected (close frames, no hang)."""
    for service in list(_live_services):
        try:
            service.disconnect(timeout=1.0)
        except Exception:
            logger.debug("disconnect at exit failed", exc_info=True)
