"""The counters behind :meth:`RealtimeService.get_connection_health`.

Each counter has one writing thread (noted) or is written with the session's lock held;
:func:`health` reads them all under the lock (a counter written without it may be one
batch behind, never torn: ints are replaced whole).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, List, Optional

from ..models import ConnectionHealth, ConnectionState

if TYPE_CHECKING:
    from ..outbox import OfflineQueue
    from ..sending import OutboundDesk
    from .state import Session

__all__ = ["Stats", "health"]


class Stats:
    """The service's counters (see the module docstring for who writes what)."""

    def __init__(self) -> None:
        self.received = 0  # reader
        self.enqueued = 0  # reader
        self.invalid = 0  # reader
        self.oversized = 0  # supervisor (lock)
        self.resume_gaps = 0  # reader
        self.dispatch_dropped = 0  # reader
        self.dispatched = 0  # dispatcher
        self.delivered = 0  # dispatcher
        self.discarded_on_close = 0  # dispatcher
        self.callback_errors = 0  # dispatcher
        self.sent = 0  # lock
        self.total_reconnects = 0  # lock
        self.session_connects = 0  # lock: connections made in the current session
        self.switches = 0  # lock
        self.connected_since: Optional[float] = None  # lock (wall clock)
        self.last_message_at: Optional[float] = None  # reader (wall clock)
        self.errors: List[str] = []  # lock
        #: set by the dispatcher when it has delivered every batch handed to it (enqueued == dispatched)
        self.caught_up = threading.Event()


def health(session: Session, outbox: OfflineQueue, desk: OutboundDesk) -> ConnectionHealth:
    """An immutable snapshot of ``session``'s health (any thread; takes the lock)."""
    now = time.monotonic()
    s = session
    st = s.stats
    window = desk.window
    with s.lock:
        hb = s.heartbeat
        conn = s.conn
        dead = conn is not None and hb.is_dead(now)
        circuit = s.breaker.state(now)
        pong = hb.last_pong_at  # monotonic: shown as wall-clock time like the other times
        return ConnectionHealth(
            is_healthy=s.state is ConnectionState.CONNECTED and not dead and circuit.value == "closed",
            state=s.state,
            connection_type=conn.ctype if conn is not None else None,
            connected_since=st.connected_since,
            last_message_at=st.last_message_at,
            last_heartbeat_at=None if pong is None else time.time() - (now - pong),
            latency_ms=hb.latency_avg_ms(),
            latency_p50_ms=hb.latency_p50_ms(),
            latency_p99_ms=hb.latency_p99_ms(),
            reconnect_attempts=s.tracker.attempts,
            total_reconnects=st.total_reconnects,
            transport_switches=st.switches,
            circuit_state=circuit,
            messages_received=st.received,
            messages_delivered=st.delivered,
            messages_sent=st.sent,
            duplicates_dropped=s.delivery.duplicates,
            invalid_messages=st.invalid,
            oversized_messages=st.oversized,
            callback_errors=st.callback_errors,
            resume_gaps=st.resume_gaps,
            queue_size=len(outbox),
            queue_dropped=outbox.dropped,
            queue_expired=outbox.expired,
            dispatch_queue_size=max(0, st.enqueued - st.dispatched),
            dispatch_dropped=st.dispatch_dropped,
            discarded_on_close=st.discarded_on_close,
            last_event_id=s.delivery.last_event_id,
            errors=list(st.errors[-10:]),
            outbound_at_most_once=window.at_most_once,
            messages_acknowledged=window.acknowledged,
            messages_resent=window.resent,
            messages_unacknowledged=len(window),
            messages_unconfirmed=window.unconfirmed + window.dropped + window.expired,
            messages_refused=window.refused,
            rate_limit_waits=desk.rate_limit_waits,
        )
