"""RealtimeService: the threads that keep one live connection to a MAGK backend.

This module is the public face; the work is done in rooms, one per thread role, in
:mod:`magk_client.session`, sharing one :class:`~magk_client.session.state.Session` (the
lock, the condition, config, policies). Decisions are made by the pure objects of
:mod:`policies`, :mod:`outbox`, :mod:`router` and :mod:`delivery`; the rooms only move data
between them, the transports and the user's callbacks. Three kinds of thread, all named and
all joined by :meth:`RealtimeService.disconnect`:

``magk-supervisor-N`` (:mod:`.session.supervisor`)
    The retry loop and the heartbeat timer. Opens connections (the handshake runs here,
    holding no reference to the service), applies backoff, the circuit breaker and the
    recovery plan, switches transports, sends pings, flushes the offline queue
    (:mod:`.session.outbound`). It only ever waits on an Event with a deadline (clamped to
    ``threading.TIMEOUT_MAX``; a server's ``Retry-After`` is capped at
    ``max_retry_after_ms``), so ``disconnect()`` interrupts any wait. It never dies of an
    exception: anything unexpected ends the session in ``error``, reported to error listeners.
``magk-reader-N-M`` (:mod:`.session.inbound`)
    One per live connection: blocks on ``transport.receive()``, decodes, answers server
    pings, drops duplicates, and hands batches to the dispatcher. It never runs user code.
``magk-dispatcher-N`` (:mod:`.session.dispatch`)
    Takes batches from a ``SimpleQueue`` in order and calls subscriptions and listeners
    with no lock held. A callback that raises is logged, counted and reported to error
    listeners; delivery goes on. A callback may call any public method, ``disconnect()``
    included. Once ``disconnect()`` ends delivery it calls nothing more and counts what is
    left (``discarded_on_close``).

Public methods are safe from any thread and run on the calling thread
(:mod:`.session.lifecycle` for connect/disconnect). The session's lock guards mutable state
and is never held while user code, a transport call or a join runs. Threads hold their room
only weakly between steps (see :mod:`.reclaim`), so a dropped service is collected.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import threading
import time
import weakref
from typing import Any, Callable, ClassVar, Iterable, Mapping, Optional, Union

from . import codec
from .config import ErrorRecoveryConfig, RealtimeConnectionConfig
from .errors import ClientClosedError, ConfigError, MagkError, MagkTimeoutError, redact_url
from .models import ConnectionHealth, ConnectionState, ConnectionType, MessageType, RealtimeMessage
from .reclaim import StepGate
from .sending import MessageFuture
from .session.connecting import TransportFactory, make_transport
from .session.dispatch import (
    Dispatch,
    ErrorListener,
    GapListener,
    MessageCallback,
    MessageStream,
    Remover,
    StateListener,
)
from .session.inbound import Inbound
from .session.lifecycle import Lifecycle, release
from .session.outbound import Outbound
from .session.state import Session
from .session.stats import health
from .session.supervisor import Supervisor

__all__ = ["MessageStream", "RealtimeService"]

logger = logging.getLogger("magk_client.service")

_service_numbers = itertools.count(1)


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

    #: How the supervisor builds a transport: ``factory(config, connection_type)``, a plain
    #: function (it must not hold the service). A subclass may replace it (tests simulate faults so).
    transport_factory: ClassVar[TransportFactory] = staticmethod(make_transport)

    def __init__(
        self,
        config: Union[RealtimeConnectionConfig, Mapping[str, Any], None] = None,
        error_recovery: Union[ErrorRecoveryConfig, Mapping[str, Any], None] = None,
        **overrides: Any,
    ) -> None:
        cfg = RealtimeConnectionConfig.coerce(config, overrides)
        recovery = ErrorRecoveryConfig() if error_recovery is None else ErrorRecoveryConfig.from_dict(error_recovery)
        self._number = next(_service_numbers)
        s = self._session = Session(cfg, recovery, self._number)
        gate = StepGate()  # shared by this service's threads (see reclaim)
        self._outbound = Outbound(s)
        self._inbound = Inbound(s, gate, self._outbound)
        self._dispatch = Dispatch(s, gate)
        self._outbound.post_locked = self._dispatch.post_locked
        supervisor = Supervisor(s, self._inbound, self._outbound, type(self).transport_factory, gate)
        self._life = Lifecycle(s, supervisor, self._dispatch)
        weakref.finalize(self, release, s.handles)
        _live_services.add(self)

    # ------------------------------------------------------------------ properties

    @property
    def config(self) -> RealtimeConnectionConfig:
        """The current configuration (an immutable value; see :meth:`update_config`)."""
        return self._session.config

    @property
    def state(self) -> ConnectionState:
        return self._session.state

    @property
    def number(self) -> int:
        """This service's number: in its thread names (``magk-supervisor-<n>``, ...) and its
        logger's (``magk_client.service.<n>``)."""
        return self._number

    @property
    def connection_type(self) -> Optional[ConnectionType]:
        """The transport of the live connection, else the one the next attempt will use."""
        conn = self._session.conn
        return conn.ctype if conn is not None else self._session.ctype

    @property
    def is_connected(self) -> bool:
        return self._session.state is ConnectionState.CONNECTED

    @property
    def last_event_id(self) -> Optional[str]:
        """The id of the last event accepted; sent as ``Last-Event-ID`` on reconnect."""
        return self._session.delivery.last_event_id

    def __repr__(self) -> str:
        s = self._session
        cfg = s.config
        url = cfg.websocket_url if s.ctype is ConnectionType.WEBSOCKET else cfg.event_source_url
        return f"<RealtimeService #{self._number} {s.state.value} {s.ctype.value} {redact_url(url or '')}>"

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
        s = self._session
        with s.lock:
            if s.closed:
                raise ClientClosedError("this RealtimeService was closed; create a new one")
            if not self._life.running_locked():
                self._life.start_locked()
            elif s.state is ConnectionState.CONNECTED:
                return
            session, connects = s.stop, s.stats.session_connects  # the session this call waits for
        if wait:
            self._life.wait_connected(session, connects, timeout)

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
        self._outbound.cancel_waiters("disconnect()")
        self._life.shutdown(timeout, ConnectionState.DISCONNECTED, None)

    def close(self) -> None:
        """Disconnect for good (state ``closed``): later calls raise :class:`ClientClosedError`.
        Idempotent; like :meth:`disconnect` otherwise (default timeout)."""
        with self._session.lock:
            self._session.closed = True
        self._outbound.cancel_waiters("close()")
        self._life.shutdown(5.0, ConnectionState.CLOSED, None, cause="close()")

    def reconnect(self, timeout: Optional[float] = None) -> None:
        """Drop the current connection (if any) and connect again at once, resuming
        from the last event. Blocks like :meth:`connect`."""
        s = self._session
        with s.lock:
            if s.closed:
                raise ClientClosedError("this RealtimeService was closed; create a new one")
            running = self._life.running_locked() and not s.stop.is_set()
            conn = s.conn
            if running:
                s.retry_now = True
                s.tracker.reset()
                s.wake.set()
        if running and conn is not None:
            conn.transport.close()
            with s.lock:
                # wait until the supervisor noticed the old connection is gone
                while s.conn is conn and not s.stop.is_set():
                    s.changed.wait(0.5)
        self.connect(timeout)

    def __enter__(self) -> RealtimeService:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sending

    def send_message(
        self,
        message: Union[RealtimeMessage, Mapping[str, Any]],
        wait: bool = False,
        timeout: Optional[float] = None,
    ) -> bool:
        """Send a message now if connected (True); queue it while offline, or while the send
        rate limit or the window of unacknowledged messages says so (False).

        With ``wait=True``, block until the server has it: True once it acknowledged it, False
        once it was written to a server that does not acknowledge (delivered at most once; also
        for a command, whose answer is its acknowledgement). Raises :class:`DeliveryTimeout`
        after ``timeout`` seconds (the message is still held and may yet be delivered),
        :class:`MessageRefusedError` when the server refused it, and :class:`DeliveryError`
        when it was dropped over the queue's bounds or :meth:`disconnect` came first. See the
        README, "Outbound delivery".

        Raises :class:`NotConnectedError` when offline with the queue off,
        :class:`QueueFullError` for one message larger than ``max_queue_bytes``,
        :class:`MessageTooLargeError` over ``max_message_size``,
        :class:`MessageRefusedError` when ``POST /messages`` answers 400 or 413, and a
        :class:`ConfigError`/``TypeError`` for a message that cannot be encoded.
        A message without ``id`` gets one (``msg_<epoch ms>_<9 base36 chars>``) and one
        without ``timestamp`` the current UTC time (ISO-8601, milliseconds, ``Z``);
        the caller's values are kept. A queued message keeps the id it got here, and so does
        one sent again after a reconnect.
        """
        return self._outbound.send(message, wait=wait, timeout=timeout)

    def submit_message(self, message: Union[RealtimeMessage, Mapping[str, Any]]) -> MessageFuture:
        """Send like :meth:`send_message` and return at once a ``concurrent.futures.Future`` of a
        :class:`SendResult` (``message_id``, ``acknowledged``), which ends like ``wait=True``
        (the same errors, set on the future). Its done-callbacks run on the dispatcher thread.
        Errors of the message itself (too large, cannot be encoded, offline with the queue off)
        are raised here."""
        return self._outbound.submit(message)

    def clear_queue(self) -> int:
        """Drop every message waiting in the offline queue; return how many."""
        return self._outbound.clear()

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
        router = self._session.router
        return router.add(event_types, callback, workflow_id=workflow_id, node_id=node_id, filter=filter)

    def unsubscribe(self, subscription_id: str) -> bool:
        """Remove a subscription; True if it existed. Takes effect for the next message."""
        return self._session.router.remove(subscription_id)

    def on_connection_state_change(self, listener: StateListener) -> Remover:
        """Call ``listener(state, error)`` on the dispatcher thread at every state change."""
        return self._dispatch.add_listener("state", listener)

    def on_error(self, listener: ErrorListener) -> Remover:
        """Call ``listener(error)`` on the dispatcher thread for bad input, callbacks that
        raised, a full dispatch queue, and connection errors whose category has
        ``notify_only`` or ``escalate`` (terminal ones always)."""
        return self._dispatch.add_listener("error", listener)

    def on_resume_gap(self, listener: GapListener) -> Remover:
        """Call ``listener(ResumeGapError)`` when the server could not replay missed events."""
        return self._dispatch.add_listener("gap", listener)

    def register_message_transformer(self, event_name: str, fn: codec.MessageTransformer) -> Remover:
        """Turn named SSE events ``event_name`` into envelopes with ``fn(backend_message)``."""
        return self._session.transformers.register(event_name, fn)

    def set_command_answer_handler(self, handler: Optional[MessageCallback]) -> None:
        """Hand command answers (``workflow_event`` messages whose ``data.type`` is
        ``command_response``) to ``handler`` instead of to subscriptions: answers are not events
        (docs/protocol.rst, Commands). ``None`` restores plain delivery. The handler runs on the
        dispatcher thread, in stream order, with no lock held; the adapter's command pipeline uses it.
        """
        if handler is not None and not callable(handler):
            raise ConfigError("the command answer handler must be callable")
        self._dispatch.answer_handler = handler

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
                    stream.set_timeout(max(0.0, deadline - time.monotonic()))
        raise MagkTimeoutError(f"no matching message within {timeout} s")

    def _refuse_on_dispatcher(self, what: str) -> None:
        if threading.current_thread() is self._dispatch.thread:
            raise MagkError(f"{what} cannot be called from a callback: it would wait for itself")

    # ------------------------------------------------------------------ health and config

    def get_connection_health(self) -> ConnectionHealth:
        """An immutable snapshot of the connection's health."""
        return health(self._session, self._outbound.outbox, self._outbound.desk)

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
        s = self._session
        with s.lock:
            cfg = s.config.replace(**changes)
            s.reconfigure_policies_locked(cfg)
            done = self._outbound.resize_locked(cfg, time.monotonic())
            s.wake.set()  # the supervisor recomputes its deadlines
        self._outbound.settle(done)
        s.apply_logging(cfg)  # takes the logging module's lock: not under ours
        return cfg


_live_services: weakref.WeakSet[RealtimeService] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    """At interpreter exit, disconnect what is still connected (close frames, no hang)."""
    for service in list(_live_services):
        try:
            service.disconnect(timeout=1.0)
        except Exception:
            logger.debug("disconnect at exit failed", exc_info=True)
