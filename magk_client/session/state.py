"""The state the rooms of one service share: the lock, the condition, config, policies.

:class:`Session` holds no thread and calls no user code. ``lock`` guards every mutable field
below unless a field says otherwise; it is never held while user code, a transport call or a
join runs. Any thread may call its ``*_locked`` methods, with the lock held.
"""

from __future__ import annotations

import itertools
import logging
import queue
import random
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Optional

from .. import codec
from ..config import ErrorRecoveryConfig, RealtimeConnectionConfig, logging_level
from ..delivery import DeliveryTracker
from ..errors import MagkConnectionError, MagkError
from ..models import ConnectionState, ConnectionType, MessageType
from ..policies import Backoff, CircuitBreaker, HeartbeatMonitor, PreferredRetry, ReconnectTracker
from ..router import SubscriptionRouter
from ..transports.base import Transport
from .stats import Stats

__all__ = ["CONTROL", "STOP", "Connection", "Handles", "Notice", "Session", "service_logger"]

#: the logger every service's own logger (``magk_client.service.<n>``) hangs under
service_logger = logging.getLogger("magk_client.service")

#: the client's own business (handled by the reader; only subscriptions naming the type get them)
CONTROL = frozenset({MessageType.PING, MessageType.PONG, MessageType.HEARTBEAT, MessageType.ACK})
#: states in which no outage is going on: send_message may queue (see Outbound)
_NO_OUTAGE = frozenset({ConnectionState.CONNECTING, ConnectionState.CONNECTED, ConnectionState.DISCONNECTED})
#: ends a dispatcher (put on its queue) and a MessageStream
STOP = object()


class _AppLevel(logging.Filter):
    """On each service's logger: a record must also pass the effective level of
    ``magk_client.service``, so the application's logging configuration (``basicConfig``,
    a level on ``magk_client``) still applies to a service whose own level is ``log_level``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= service_logger.getEffectiveLevel()


_APP_LEVEL = _AppLevel()


@dataclass(frozen=True)
class Notice:
    """Something for listeners, queued in order with the events around it."""

    kind: str  # "state" | "gap" | "error"
    state: Optional[ConnectionState] = None
    error: Optional[BaseException] = None


class Connection:
    """One live transport and its reader thread (owned by the supervisor)."""

    __slots__ = ("ctype", "error", "number", "opened_at", "reader", "transport")

    def __init__(self, number: int, transport: Transport, ctype: ConnectionType, now: float) -> None:
        self.number = number
        self.transport = transport
        self.ctype = ctype
        self.opened_at = now
        self.reader: Optional[threading.Thread] = None
        self.error: Optional[MagkConnectionError] = None


class Handles:
    """What the finalizer of a collected service must stop (holds no reference to it)."""

    def __init__(self) -> None:
        self.stop: Optional[threading.Event] = None
        self.wake: Optional[threading.Event] = None
        self.queue: Optional[queue.SimpleQueue[Any]] = None
        self.transports: weakref.WeakSet[Transport] = weakref.WeakSet()


class Session:
    """The shared state of one service (see the module docstring for the locking rule).

    Fields without the lock: ``stats`` (each counter has one writing thread, noted there),
    ``trace`` and ``config`` (replaced whole, read without the lock), ``delivery`` (reader
    thread), ``router`` and ``transformers`` (thread-safe on their own).
    """

    def __init__(self, config: RealtimeConnectionConfig, recovery: ErrorRecoveryConfig, number: int) -> None:
        self.number = number
        self.config = config
        self.recovery = recovery
        #: this service's logger (no handlers): level from log_level, see apply_logging
        self.logger = logging.getLogger(f"{service_logger.name}.{number}")
        self.logger.addFilter(_APP_LEVEL)
        self.trace = False  # enable_debug_logging: one DEBUG line per message (checked once per batch)
        self.apply_logging(config)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        #: the current session's events: ``stop`` ends it, ``wake`` interrupts the supervisor's wait
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.dispatch_q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.router = SubscriptionRouter(private_types=CONTROL)
        self.transformers = codec.TransformerRegistry()
        self.rng = random.Random()
        self.state = ConnectionState.DISCONNECTED
        self.ctype = config.preferred_type
        self.conn: Optional[Connection] = None
        self.opening: Optional[Transport] = None
        self.closed = False
        #: sends go straight to ``conn`` (nothing waits in the offline queue)
        self.direct_send = False
        #: why the current session ended (what a waiting connect() raises); see fail_session_locked
        self.error: Optional[MagkError] = None
        self.retry_now = False
        #: while offline after a failure whose category lacks QUEUE_OFFLINE: why send_message refuses
        self.refuse_offline: Optional[str] = None
        self.conn_numbers = itertools.count(1)
        self.stats = Stats()
        self.delivery = DeliveryTracker(config.dedup_window)
        self.handles = Handles()
        self.preferred_retry = PreferredRetry()
        cfg = config
        self.tracker = ReconnectTracker(
            Backoff.from_config(cfg), cfg.max_reconnect_attempts, cfg.min_stable_connection_ms / 1000.0
        )
        self.breaker = CircuitBreaker(cfg.circuit_breaker_threshold, cfg.circuit_breaker_reset_ms / 1000.0)
        self.heartbeat = HeartbeatMonitor(cfg.heartbeat_interval_ms / 1000.0, cfg.heartbeat_timeout_ms / 1000.0)

    def apply_logging(self, cfg: RealtimeConnectionConfig) -> None:
        """The logger's level is ``log_level``, DEBUG with ``enable_debug_logging`` (which also
        turns on the per-message lines). What is shown is still up to the application's
        logging configuration (see :class:`_AppLevel`). Not under the lock (logging has its own)."""
        self.logger.setLevel(logging.DEBUG if cfg.enable_debug_logging else logging_level(cfg.log_level))
        self.trace = cfg.enable_debug_logging

    def reconfigure_policies_locked(self, cfg: RealtimeConnectionConfig) -> None:
        """New bounds for the policies; the state they govern is kept (update_config)."""
        self.config = cfg
        self.tracker.reconfigure(
            Backoff.from_config(cfg), cfg.max_reconnect_attempts, cfg.min_stable_connection_ms / 1000.0
        )
        self.breaker.reconfigure(cfg.circuit_breaker_threshold, cfg.circuit_breaker_reset_ms / 1000.0)
        self.heartbeat.reconfigure(cfg.heartbeat_interval_ms / 1000.0, cfg.heartbeat_timeout_ms / 1000.0)

    # ------------------------------------------------------------------ lock held

    def set_state_locked(self, state: ConnectionState, error: Optional[BaseException], *, force: bool = False) -> None:
        """Move to ``state`` and queue the notice for the state listeners (in order with events)."""
        if state in _NO_OUTAGE:
            self.refuse_offline = None
        if state is self.state and error is None and not force:
            return
        self.state = state
        self.changed.notify_all()
        self.dispatch_q.put(Notice("state", state, error))

    def fail_session_locked(self, error: MagkError) -> None:
        """The session failed: the one place that says so. A waiting ``connect()`` raises
        ``error``; the state becomes ``error``. The supervisor ends right after."""
        self.error = error
        self.set_state_locked(ConnectionState.ERROR, error)

    def fail_connection_locked(self, conn: Connection, error: MagkConnectionError) -> None:
        """``conn`` is broken (the first error wins); the supervisor is woken to act on it."""
        if conn.error is None:
            conn.error = error
        self.direct_send = False
        self.wake.set()

    def record_error_locked(self, error: MagkError) -> None:
        errors = self.stats.errors
        errors.append(f"{type(error).__name__}: {error}")
        if len(errors) > 50:
            del errors[:-20]

    # ------------------------------------------------------------------ no lock held

    def send_ping_frame(self, conn: Connection, kind: str, ping_id: Any) -> bool:
        """Send a ``ping`` or ``pong`` message with ``ping_id`` on ``conn`` (the reader or the
        supervisor thread, lock not held). A failed send fails the connection: returns False."""
        try:
            conn.transport.send(codec.encode({"type": kind, "data": {"pingId": ping_id}}))
        except MagkConnectionError as err:
            with self.lock:
                self.fail_connection_locked(conn, err)
            return False
        if self.trace:
            self.logger.debug("-> %s %s", kind, ping_id)
        return True

    def report(self, error: MagkError, *, escalate: bool, notify: bool = True) -> None:
        """Record ``error`` in health, log it and, with ``notify``, queue it for the error
        listeners (any thread, lock not held). Connection errors pass their recovery plan's
        NOTIFY_ONLY (or ESCALATE)."""
        with self.lock:
            self.record_error_locked(error)
        # Errors the service recovers from on its own are INFO; what needs the user is louder.
        if escalate:
            level = logging.ERROR
        elif isinstance(error, MagkConnectionError) and not error.terminal:
            level = logging.INFO
        else:
            level = logging.WARNING
        self.logger.log(level, "%s: %s", type(error).__name__, error)
        if notify:
            self.dispatch_q.put(Notice("error", None, error))
