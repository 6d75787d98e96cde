"""The supervisor room: the thread ``magk-supervisor-N`` of one session.

The retry loop and the heartbeat timer. It opens connections (the handshake runs in
:func:`supervisor_main`, holding no reference to the room), applies backoff, the circuit
breaker and the recovery plan, switches transports and back (the decisions are the pure
:func:`~magk_client.policies.decide_after_failure` and
:class:`~magk_client.policies.PreferredRetry`), sends pings, has the outbound room flush the
offline queue, and tears connections down. It only ever waits on an Event with a deadline
(clamped by :func:`bounded_wait`; a server's ``Retry-After`` is capped at
``max_retry_after_ms``), so ``disconnect()`` interrupts any wait. It never dies of an
exception: anything unexpected ends the session in ``error``, reported to error listeners.
Every method here runs on the supervisor thread.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Optional, Union

from ..errors import (
    CircuitOpenError,
    ConfigError,
    MagkConnectionError,
    MagkError,
    MagkTimeoutError,
    MessageTooLargeError,
    NetworkError,
)
from ..models import ConnectionState, ConnectionType
from ..policies import GiveUp, cap_server_wait, decide_after_failure, recovery_plan
from ..reclaim import StepGate
from ..transports.base import Transport
from .connecting import Handshake, TransportFactory, bounded_wait
from .inbound import Inbound
from .outbound import Outbound
from .state import Connection, Session

__all__ = ["Supervisor", "supervisor_main"]

logger = logging.getLogger("magk_client.service")

Step = Union[float, Handshake, None]


class Supervisor:
    """One turn at a time of the retry loop (see the module docstring); :func:`supervisor_main` drives it."""

    def __init__(
        self, session: Session, inbound: Inbound, outbound: Outbound, factory: TransportFactory, gate: StepGate
    ) -> None:
        self._s = session
        self._inbound = inbound
        self._outbound = outbound
        self._factory = factory
        self.gate = gate

    def step(self, stop: threading.Event) -> Step:
        """One turn: attempt or watch. Returns how long to wait before the next turn (woken early
        by ``wake``), None to end the session, or a handshake to make (with no reference to the
        room) and finish."""
        conn = self._s.conn
        if conn is None:
            return self._attempt(stop)
        return self._watch(conn, stop)

    def failed(self, exc: Exception, stop: threading.Event) -> None:
        """Anything unexpected in the supervisor ends the session in ``error``, reported."""
        self._s.logger.error("internal error in the supervisor thread", exc_info=exc)
        if stop.is_set():
            return  # ending anyway (disconnect, close, a connect timeout): nothing to report
        err = MagkError(f"internal error in the supervisor thread ({type(exc).__name__}); see the log")
        err.__cause__ = exc
        self._give_up(err)

    def done(self, stop: threading.Event) -> None:
        """The session ends: close what is open (a handshake that ended in an internal error too)."""
        s = self._s
        with s.lock:
            mine = s.stop is stop  # not a later session's
            conn = s.conn if mine else None
            opening = s.opening if mine else None
        if opening is not None:
            opening.close()
        self.teardown(conn)
        self._outbound.lost(conn, None)
        with s.lock:
            if s.stop is stop:
                if s.conn is conn:
                    s.conn = None
                s.opening = None
                # a half-open probe that ended without an outcome (stopped, failed) is given back
                s.breaker.release_probe(time.monotonic())
            s.changed.notify_all()

    def teardown(self, conn: Optional[Connection]) -> None:
        """Close ``conn`` and join its reader (which hands over what it read first)."""
        if conn is None:
            return
        conn.transport.close()
        reader = conn.reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(5.0)
            if reader.is_alive():
                self._s.logger.warning("reader thread %s did not end", reader.name)

    # ------------------------------------------------------------------ attempts

    def _make_transport(self, ctype: ConnectionType) -> Transport:
        transport = self._factory(self._s.config, ctype)
        self._s.handles.transports.add(transport)
        return transport

    def _other(self, ctype: ConnectionType) -> Optional[ConnectionType]:
        cfg = self._s.config
        if not cfg.fallback_to_secondary:
            return None
        if ctype is ConnectionType.WEBSOCKET:
            return ConnectionType.EVENTSOURCE if cfg.event_source_url else None
        return ConnectionType.WEBSOCKET if cfg.websocket_url else None

    def _attempt(self, stop: threading.Event) -> Step:
        """Start one connection attempt: the handshake to make, else the wait before the next
        turn, or None. :meth:`_opened` finishes it."""
        s = self._s
        now = time.monotonic()
        with s.lock:
            if not s.breaker.allow(now):
                retry_at = s.breaker.retry_at(now) or now + 1.0
                err = CircuitOpenError(s.breaker.consecutive_failures, retry_at - now)
                s.set_state_locked(ConnectionState.RECONNECTING, err)
                wait = retry_at - now
            else:
                wait = -1.0
            ctype = s.ctype
        if wait >= 0:
            return wait
        try:
            transport = self._make_transport(ctype)
        except ConfigError as exc:
            self._give_up(exc)
            return None
        with s.lock:
            if stop.is_set():
                return None
            s.opening = transport
        return Handshake(transport, ctype, s.delivery.last_event_id or None, Supervisor._opened)

    def _opened(self, handshake: Handshake, stop: threading.Event) -> Optional[float]:
        """Finish a connection attempt; the wait before the next turn, or None."""
        s = self._s
        transport, ctype, err = handshake.transport, handshake.ctype, handshake.error
        if err is not None:
            with s.lock:
                s.opening = None
            transport.close()
            return self._after_failure(err, ctype, transport, connected=False, stop=stop)
        now = time.monotonic()
        stats = s.stats
        with s.lock:
            s.opening = None
            if stop.is_set():
                transport.close()
                return None
            conn = Connection(next(s.conn_numbers), transport, ctype, now)
            if stats.session_connects:
                stats.total_reconnects += 1
            stats.session_connects += 1
            s.conn = conn
            stats.connected_since = time.time()
            s.tracker.on_connected(now)
            s.breaker.record_success(now)
            s.heartbeat.start(now)
            if ctype is not s.config.preferred_type:
                s.preferred_retry.schedule(now, s.config.preferred_retry_interval_ms / 1000.0)
            done = self._outbound.opened_locked(conn, now)
            # Nothing waiting offline: sends go out directly from the moment connect() returns.
            s.direct_send = self._outbound.pending_locked() == 0
            s.set_state_locked(ConnectionState.CONNECTED, None)
        self._outbound.settle(done)
        self._inbound.start_reader(conn)
        s.logger.debug("connected over %s (connection %d)", ctype.value, conn.number)
        self._outbound.flush(conn)
        return 0.0

    # ------------------------------------------------------------------ a live connection

    def _watch(self, conn: Connection, stop: threading.Event) -> Step:
        """Watch a live connection: heartbeat, preferred-transport retry."""
        s = self._s
        cfg = s.config
        now = time.monotonic()
        with s.lock:
            error = conn.error
            retry_now = s.retry_now
        if error is None and retry_now:
            error = NetworkError("reconnect requested")
        if error is not None:
            return self._on_dropped(conn, error, stop)
        # the queue waits for tokens of the rate limit, or for acks to make room
        flush_wait = None if s.direct_send else self._outbound.flush(conn)
        ping: Optional[str] = None
        with s.lock:
            hb = s.heartbeat
            if cfg.enable_heartbeat:
                hb.on_activity(conn.transport.last_activity)
                if conn.ctype is ConnectionType.WEBSOCKET:
                    if hb.is_dead(now):
                        s.fail_connection_locked(
                            conn, MagkTimeoutError("no pong within the heartbeat timeout: connection is dead")
                        )
                        return 0.0
                    if hb.ping_due(now):
                        ping = hb.make_ping(now)
                elif hb.is_silent(now, conn.transport.last_activity):
                    s.fail_connection_locked(
                        conn, MagkTimeoutError("nothing received within heartbeat interval + timeout")
                    )
                    return 0.0
            deadline = hb.next_deadline(now) if cfg.enable_heartbeat else now + 3600.0
            if flush_wait is not None:
                deadline = min(deadline, now + flush_wait)
            feature_at, done = self._outbound.watch_locked(conn, now)
            if feature_at is not None:
                deadline = min(deadline, feature_at)
            switch_back = False
            if conn.ctype is not cfg.preferred_type and cfg.fallback_to_secondary:
                switch_back, at = s.preferred_retry.check(now, cfg.preferred_retry_interval_ms / 1000.0)
                if at is not None:
                    deadline = min(deadline, at)
        self._outbound.settle(done)
        if ping is not None and not s.send_ping_frame(conn, "ping", ping):
            return 0.0
        if switch_back:
            return self._try_switch_back(conn)
        return max(0.0, deadline - time.monotonic())

    def _try_switch_back(self, conn: Connection) -> Step:
        """Start probing the preferred transport; :meth:`_switched` finishes it."""
        s = self._s
        preferred = s.config.preferred_type
        try:
            probe = self._make_transport(preferred)
        except ConfigError as err:
            s.logger.debug("preferred transport still unavailable: %s", err)
            return 0.0
        with s.lock:
            s.opening = probe
        return Handshake(probe, preferred, s.delivery.last_event_id or None, Supervisor._switched, conn)

    def _switched(self, handshake: Handshake, stop: threading.Event) -> Optional[float]:
        """On a successful probe, move to the preferred transport, resuming."""
        s = self._s
        probe, preferred, conn = handshake.transport, handshake.ctype, handshake.conn
        with s.lock:
            s.opening = None
        if handshake.error is not None:
            s.logger.debug("preferred transport still unavailable: %s", handshake.error)
            probe.close()
            return 0.0
        if stop.is_set() or conn is None:
            probe.close()
            return 0.0
        s.logger.info("switching back to the preferred transport %s", preferred.value)
        # Close the secondary and let its reader finish handing over what it read;
        # the probe replays from the last accepted id and duplicates are dropped.
        self.teardown(conn)
        self._outbound.lost(conn, None)
        now = time.monotonic()
        with s.lock:
            s.conn = None
            s.direct_send = False
            s.stats.switches += 1
            s.ctype = preferred
            new = Connection(next(s.conn_numbers), probe, preferred, now)
            s.conn = new
            s.heartbeat.start(now)
            s.tracker.on_connected(now)
            done = self._outbound.opened_locked(new, now)
            s.set_state_locked(ConnectionState.CONNECTED, None, force=True)  # a switch is an event
        self._outbound.settle(done)
        self._inbound.start_reader(new)
        self._outbound.flush(new)
        return 0.0

    # ------------------------------------------------------------------ failures

    def _on_dropped(self, conn: Connection, error: MagkConnectionError, stop: threading.Event) -> Optional[float]:
        s = self._s
        self.teardown(conn)
        self._outbound.lost(conn, error)
        # The reader's own report of this failure woke us; it must not cut the backoff short.
        # (A stop or a reconnect() request is still seen: stop is an Event, retry_now a flag.)
        s.wake.clear()
        now = time.monotonic()
        with s.lock:
            s.conn = None
            s.direct_send = False
            s.stats.connected_since = None
            s.tracker.on_disconnected(now)
            s.changed.notify_all()  # reconnect() waits for the old connection to be gone
        if stop.is_set():
            return None
        if isinstance(error, MessageTooLargeError):
            with s.lock:
                s.stats.oversized += 1
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
        """Apply the recovery plan after a failed attempt or a lost connection."""
        s = self._s
        cfg = s.config
        now = time.monotonic()
        other = self._other(ctype)
        cap = cfg.max_retry_after_ms / 1000.0
        plan = recovery_plan(
            error, s.recovery, auto_reconnect=cfg.auto_reconnect, fallback_available=other is not None,
            max_delay_floor=cap,
        )
        s.report(error, escalate=plan.escalate, notify=plan.notify or plan.escalate)
        if stop.is_set():
            return None
        with s.lock:
            self._outbound.note_outage_locked(error, plan.queue_offline)
            if not connected:  # a dropped connection was counted by on_disconnected
                s.tracker.on_attempt_failed(now)
                s.breaker.record_failure(now)
            decision = decide_after_failure(
                error, plan, ctype=ctype, other=other, connected=connected,
                attempts=s.tracker.attempts, exhausted=s.tracker.exhausted,
            )
            if decision.give_up is not None:
                s.fail_session_locked(error)
                if decision.give_up is GiveUp.EXHAUSTED:
                    s.logger.warning("giving up after %d attempts: %s", s.tracker.attempts, error)
                return None
            switch_to = decision.switch_to
            if switch_to is not None:
                s.ctype = switch_to
                s.stats.switches += 1
                if switch_to is cfg.preferred_type:
                    s.preferred_retry.cancel()
                s.logger.info("falling back from %s to %s", ctype.value, switch_to.value)
            floor = max(plan.draw_floor(s.rng), _server_wait(error, transport, cap))
            delay = s.tracker.next_delay(s.rng, floor)
            if s.retry_now:
                delay, s.retry_now = 0.0, False
            s.set_state_locked(ConnectionState.RECONNECTING, error)
        s.logger.debug("reconnecting in %.3f s after %s", delay, type(error).__name__)
        return None if stop.is_set() else delay

    def _give_up(self, error: MagkError) -> None:
        self._s.report(error, escalate=False)
        with self._s.lock:
            self._s.fail_session_locked(error)


def _server_wait(error: MagkConnectionError, transport: Transport, cap: float) -> float:
    """The SSE ``retry:`` wait, capped at ``cap`` s; logs any wait the server asked for above it."""
    for source, asked in (("Retry-After", error.retry_after), ("SSE retry:", (transport.retry_ms or 0) / 1000.0)):
        if asked is not None and asked > cap:
            logger.warning(
                "the server asked to wait %.0f s (%s); capped at %.0f s (max_retry_after_ms)", asked, source, cap
            )
    return cap_server_wait((transport.retry_ms or 0) / 1000.0, cap)


# Threads hold their room only through a weak reference between steps, and never while they
# block (on the socket, the queue, a handshake or a wait), so a service dropped without
# disconnect() (a re-run notebook cell) can be garbage collected; its finalizer then stops
# the threads and closes the sockets. A step holds a strong reference for a moment: a service
# in a reference cycle (a callback that uses it) that a full collection met in that moment
# would survive it, so its threads collect again once none of them holds it (reclaim.StepGate).


def supervisor_main(
    ref: weakref.ReferenceType[Supervisor], gate: StepGate, stop: threading.Event, wake: threading.Event
) -> None:
    """Supervisor thread: the retry loop and heartbeat timer of one session.

    It never dies of an exception: anything unexpected ends the session in ``error``,
    reported to error listeners (a waiting ``connect()`` raises it)."""
    try:
        while not stop.is_set():
            wake.clear()
            token = gate.enter()
            try:
                room = ref()
                if room is None:
                    return
                step = room.step(stop)
                del room
            finally:
                gate.leave(token)
            wait: Optional[float]
            if isinstance(step, Handshake):
                step.run()  # the network wait: no reference to the room
                token = gate.enter()
                try:
                    room = ref()
                    if room is None:
                        step.transport.close()
                        return
                    wait = step.finish(room, step, stop)
                    del room
                finally:
                    gate.leave(token)
            else:
                wait = step
            if wait is None:
                break
            if wait > 0:
                wake.wait(bounded_wait(wait))
    except Exception as exc:  # noqa: BLE001 - logged and reported by Supervisor.failed
        room = ref()
        if room is not None:
            try:
                room.failed(exc, stop)
            except Exception:
                logger.exception("supervisor failed, and so did reporting it")
    room = ref()
    if room is not None:
        try:
            room.done(stop)
        except Exception:
            logger.exception("supervisor failed while ending its session")
