"""The outbound room: ``send_message`` -> offline queue -> flush on connect -> ``transport.send``.

The whole path of a message the application sends lives here, behind a narrow interface;
the decisions (acknowledgements, flow control, the rate limit) are the
:class:`~magk_client.sending.OutboundDesk`'s, under the session's lock:

* :meth:`Outbound.send`, :meth:`Outbound.submit` (any user thread): write now over the live
  connection, or queue; with ``wait`` (or the future) until the server has it;
* :meth:`Outbound.opened_locked`, :meth:`Outbound.flush`, :meth:`Outbound.watch_locked`,
  :meth:`Outbound.lost` (supervisor thread): a connection opened (resend what the last one left
  unacknowledged, then the queue, as the window and the rate limit allow, then let sends go out
  directly), the deadlines of a live one, a connection gone;
* :meth:`Outbound.on_inbound`, :meth:`Outbound.on_ack`, :meth:`Outbound.on_refusal` (reader
  thread): what the server says about acknowledgements;
* :meth:`Outbound.note_outage_locked` (supervisor, or a failed send): whether sends may queue
  until the next connection;
* :meth:`Outbound.cancel_waiters` (``disconnect()``), :meth:`Outbound.clear`,
  :meth:`Outbound.resize_locked` (update_config), ``outbox`` and ``desk`` (health).

Waiters are futures; :meth:`Outbound.settle` completes them outside the lock, and hands those of
``submit_message`` (whose done-callbacks are user code) to the dispatcher thread.

Server pings, pongs and heartbeats are not sent from here (the supervisor and the reader send
those themselves: they are not the application's messages and never queue).
"""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import replace
from typing import Any, Callable, List, Mapping, Optional, Tuple, Union

from .. import codec
from ..acks import Completion, Outcome
from ..config import RealtimeConnectionConfig, RecoveryStrategy
from ..errors import (
    ClientClosedError,
    DeliveryTimeout,
    MagkConnectionError,
    MessageRefusedError,
    MessageTooLargeError,
    NotConnectedError,
)
from ..models import ConnectionType, RealtimeMessage, SendResult
from ..outbox import OfflineQueue
from ..sending import MessageFuture, OutboundDesk, Settlement, identify, message_identity, settle_now
from .state import Connection, Session

__all__ = ["Outbound", "new_message_id"]

Message = Union[RealtimeMessage, Mapping[str, Any]]

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_message_id(rng: random.Random) -> str:
    """``msg_<epoch ms>_<9 random base36 characters>``, the original services' message ids."""
    return f"msg_{int(time.time() * 1000)}_{''.join(rng.choices(_BASE36, k=9))}"


def _with_id(message: Message, rng: random.Random) -> Message:
    """``message`` with an id when it has none (a copy; the caller's object is not changed).

    The timestamp is filled in by :func:`codec.encode`."""
    if isinstance(message, RealtimeMessage):
        return message if message.id else replace(message, id=new_message_id(rng))
    if isinstance(message, Mapping) and not message.get("id"):
        return {**message, "id": new_message_id(rng)}
    return message


def _new_outbox(cfg: RealtimeConnectionConfig) -> OfflineQueue:
    return OfflineQueue(cfg.max_queue_size, cfg.queue_retention_ms / 1000.0, cfg.max_queue_bytes)


def _refused_by_reply(conn: Connection, err: MagkConnectionError) -> bool:
    """``POST /messages`` answered 400 or 413: that message is refused for good, the stream is fine."""
    return conn.ctype is ConnectionType.EVENTSOURCE and err.status in (400, 413)


class Outbound:
    """The application's messages on their way out (see the module docstring).

    ``outbox`` and ``desk`` are guarded by the session's lock. ``undecided`` (the live connection
    while it has not said whether it acknowledges) is replaced whole and read by the reader
    without the lock; ``post_locked`` (set by the service) hands a :class:`Settlement` to the
    dispatcher and says whether it took it."""

    def __init__(self, session: Session) -> None:
        self._s = session
        self.outbox = _new_outbox(session.config)
        self.desk = OutboundDesk(session.config)
        self.undecided: Optional[int] = None
        self.post_locked: Optional[Callable[[Settlement], bool]] = None
        self._waiting_room = False  # the flush waits for acknowledgements (the reader wakes it)

    # ------------------------------------------------------------------ user threads

    def send(self, message: Message, *, wait: bool = False, timeout: Optional[float] = None) -> bool:
        """``send_message`` (any thread): without ``wait``, True if written now, False if queued;
        with it, True once acknowledged, False once written to a server that does not acknowledge."""
        if not wait:
            return self._send(message, None)[0]
        future: Future[SendResult] = Future()
        mid = self._send(message, future)[1]
        if not wait_futures([future], timeout)[0]:
            raise DeliveryTimeout(
                f"message {mid} was not acknowledged within {timeout} s; it is still held and may yet "
                "be delivered",
                message_id=mid,
                outcome="timeout",
            )
        return future.result().acknowledged

    def submit(self, message: Message) -> MessageFuture:
        """``submit_message`` (any thread): a future of the :class:`SendResult`."""
        future = MessageFuture()
        self._send(message, future)
        return future

    def _send(self, message: Message, waiter: Any) -> Tuple[bool, str]:
        s = self._s
        message = _with_id(message, s.rng)
        mid, acked = message_identity(message)
        text = codec.encode(message)
        limit = s.config.max_message_size
        if len(text) > limit:
            raise MessageTooLargeError(f"message of {len(text)} characters is over max_message_size={limit}")
        desk = self.desk
        now = time.monotonic()
        http = False
        with s.lock:
            if s.closed:
                raise ClientClosedError("this RealtimeService was closed")
            conn = s.conn if s.direct_send else None
            if conn is not None:
                http = conn.ctype is ConnectionType.EVENTSOURCE
                taken = desk.take(mid, text, acked, conn.number, now, waiter, http=http)
                if taken is None:  # no room or no token: queued, the supervisor sends it as they come
                    s.direct_send = False
                    s.wake.set()
                    conn = None
                else:
                    done = taken
            if conn is None:
                self._enqueue_locked(text)
                if waiter is not None:
                    desk.wait_queued(mid, waiter, self.outbox)
                done = desk.queue_discards(self.outbox)
        if conn is None:
            self.settle(done)
            if s.trace:
                self._trace_out(message, len(text), "queued")
            return False, mid
        try:
            conn.transport.send(text)
        except MagkConnectionError as err:
            self._send_failed(conn, err, mid, text, waiter, done)
            if s.trace:
                self._trace_out(message, len(text), "queued")
            return False, mid
        with s.lock:
            s.stats.sent += 1
            if http or not acked or desk.window.has_queued_waiters:
                done += desk.written(mid, acked, http=http, waiter=waiter)
        if done:
            self.settle(done)
        if s.trace:
            self._trace_out(message, len(text), f"sent over connection {conn.number}")
        return True, mid

    def _send_failed(
        self, conn: Connection, err: MagkConnectionError, mid: str, text: str, waiter: Any, done: List[Completion]
    ) -> None:
        """A direct write failed: refused by the server (raised), or back to the front of the queue."""
        s = self._s
        # "written" to a server without acks, said just before the write: not so after all
        mine = [c for c in done if c.message_id == mid and c.outcome is Outcome.WRITTEN]
        self.settle([c for c in done if c not in mine])
        waiters = [w for c in mine for w in c.waiters if w is not waiter]
        if _refused_by_reply(conn, err):
            with s.lock:
                refused = self.desk.refuse(mid, str(err), waiter)
            self.settle(refused)
            raise MessageRefusedError(f"the server refused message {mid}: {err}", message_id=mid, outcome="refused")
        with s.lock:
            s.fail_connection_locked(conn, err)
            self.note_outage_locked(err, self.queues_offline(err))
            window = self.desk.window
            try:
                self._check_queueable_locked()
            except NotConnectedError:
                window.unrecord(mid)  # the caller is told it failed: it is not sent again either
                raise
            if mid in window and window.written_on(mid) != conn.number:
                return  # the connection was found broken first: the window holds it for a resend (or resent it)
            self.desk.unsend(mid, text, self.outbox, time.monotonic(), waiter=waiter)
            self.desk.window.wait_queued(mid, waiters)
            done = self.desk.queue_discards(self.outbox)
        self.settle(done)

    # ------------------------------------------------------------------ supervisor thread

    def opened_locked(self, conn: Connection, now: float) -> List[Completion]:
        """``conn`` is live (lock held): what the last connection left unacknowledged goes first.
        Returns the completions to :meth:`settle` once the lock is released."""
        done = self.desk.connection_opened(conn.number, now)
        self.undecided = conn.number
        self._waiting_room = False
        return done

    def lost(self, conn: Optional[Connection], error: Optional[MagkConnectionError]) -> None:
        """``conn`` is gone (supervisor, after its reader ended): unacknowledged messages wait for
        the next connection, or are given up when the server does not acknowledge. A WebSocket the
        server closed with 1009 refuses its largest message (it would be refused again)."""
        if conn is None:
            return
        too_big = isinstance(error, MessageTooLargeError) and error.server_refused
        with self._s.lock:
            done = self.desk.connection_lost(conn.number, time.monotonic(), refused_size=too_big)
            if self.undecided == conn.number:
                self.undecided = None
        self.settle(done)

    def flush(self, conn: Connection) -> Optional[float]:
        """Send what waits, in order, over ``conn`` (supervisor thread): resends, then the queue,
        as the window and the rate limit allow; then let sends go out directly. Returns None when
        done (or ``conn`` failed), else how long until it can go on (``inf``: until an ack)."""
        s = self._s
        desk = self.desk
        http = conn.ctype is ConnectionType.EVENTSOURCE
        sent = 0
        while True:
            now = time.monotonic()
            with s.lock:
                if conn.error is not None or s.conn is not conn:
                    return None
                step, done = desk.next_step(conn.number, self.outbox, now, http=http)
                done += desk.queue_discards(self.outbox)
                if step.text is None:
                    if step.wait is None:
                        s.direct_send = True
                    self._waiting_room = step.room
            self.settle(done)
            text = step.text
            if text is None:
                if sent and s.trace:
                    s.logger.debug("-> sent %d queued message(s) over connection %d", sent, conn.number)
                return step.wait
            try:
                conn.transport.send(text)
            except MagkConnectionError as err:
                if step.mid is not None and _refused_by_reply(conn, err):
                    self._refused_in_flush(step.mid, err)
                    continue
                with s.lock:
                    if step.item is not None:  # from the queue: back in front (a resend stays in the window)
                        desk.unsend(step.mid, text, self.outbox, time.monotonic(), step.item)
                    s.fail_connection_locked(conn, err)
                return None
            sent += 1
            with s.lock:
                s.stats.sent += 1
                done = desk.written(step.mid, step.acked, http=http)
            self.settle(done)

    def _refused_in_flush(self, mid: str, err: MagkConnectionError) -> None:
        s = self._s
        with s.lock:
            done = self.desk.refuse(mid, str(err))
            done += self.desk.window.discard_queued(mid, Outcome.REFUSED, str(err))
        self.settle(done)
        s.report(MessageRefusedError(f"the server refused message {mid}: {err}", message_id=mid), escalate=False)

    def watch_locked(self, conn: Connection, now: float) -> Tuple[Optional[float], List[Completion]]:
        """The live connection's outbound deadline (lock held): when it counts as not acknowledging
        if it has not said by then. Returns it (or None) and the completions of a decision due now."""
        done = self.desk.decide_overdue(conn.number, now)
        if done or not self.desk.undecided(conn.number):
            if self.undecided == conn.number:
                self.undecided = None
        return self.desk.feature_deadline(), done

    # ------------------------------------------------------------------ reader thread

    def on_inbound(self, conn: Connection, message: RealtimeMessage) -> None:
        """A server message on ``conn`` while it has not said whether it acknowledges."""
        with self._s.lock:
            done = self.desk.on_inbound(conn.number, str(message.type), message.data)
            if not self.desk.undecided(conn.number):
                self.undecided = None
        self.settle(done)

    def on_ack(self, conn: Connection, data: Mapping[str, Any]) -> None:
        """An ``ack`` naming message ids; wakes a flush that waits for room."""
        s = self._s
        with s.lock:
            done = self.desk.on_ack(data)
            if self._waiting_room and s.conn is conn:
                self._waiting_room = False
                s.wake.set()
        self.settle(done)

    def on_refusal(self, data: Mapping[str, Any]) -> None:
        """``subscription_error`` ``bad_message``: final for the id it names."""
        with self._s.lock:
            done = self.desk.on_refusal(data)
        self.settle(done)

    # ------------------------------------------------------------------ any thread

    def settle(self, done: List[Completion]) -> None:
        """Tell the waiters of ``done`` (no lock held): plain futures now, those of
        ``submit_message`` on the dispatcher thread (run here when no dispatcher runs)."""
        if not done:
            return
        later = settle_now(done)
        if later is None:
            return
        with self._s.lock:
            posted = self.post_locked is not None and self.post_locked(later)
        if not posted:
            later.run()

    def cancel_waiters(self, cause: str) -> None:
        """``disconnect()``/``close()``: every waiting sender fails now (their messages stay)."""
        with self._s.lock:
            done = self.desk.cancel(cause)
        later = settle_now(done)
        if later is not None:
            later.run()  # at once, on the caller's thread: the dispatcher is about to stop

    def queues_offline(self, error: MagkConnectionError) -> bool:
        """Does ``error``'s category have the QUEUE_OFFLINE strategy?"""
        return RecoveryStrategy.QUEUE_OFFLINE in self._s.recovery.strategies_for(error.category)

    def note_outage_locked(self, error: MagkConnectionError, queue_offline: bool) -> None:
        """The connection is down because of ``error``. Until the next connect (or a
        disconnect: :meth:`Session.set_state_locked` lifts the refusal), :meth:`send`
        queues only if its category has QUEUE_OFFLINE."""
        s = self._s
        if queue_offline:
            s.refuse_offline = None
        else:
            category = error.category.value
            s.refuse_offline = (
                f"not connected after a {category} error ({type(error).__name__}), and queue_offline "
                f"is not among the {category}_errors recovery strategies"
            )

    def clear(self) -> int:
        """Drop every message waiting in the offline queue; return how many (any thread). Who
        waits for one of them is told (``DeliveryError``)."""
        done: List[Completion] = []
        with self._s.lock:
            window = self.desk.window
            if window.has_queued_waiters:
                items = self.outbox.drain_items(time.monotonic())
                for item in items:
                    mid = identify(item.text)[0]
                    if mid is not None:
                        done += window.discard_queued(mid, Outcome.DROPPED, "clear_queue() dropped it")
                count = len(items) + self.outbox.clear()
            else:
                count = self.outbox.clear()
        self.settle(done)
        return count

    def pending_locked(self) -> int:
        """Messages waiting to be written: queued, or to be sent again."""
        return len(self.outbox) + self.desk.resends_pending

    def resize_locked(self, cfg: RealtimeConnectionConfig, now: float) -> List[Completion]:
        """New queue bounds and rate limit from ``cfg`` (update_config): the messages (with their
        queue times) and the counters are kept; over the new bounds the oldest are dropped.
        Returns the completions to :meth:`settle` once the lock is released."""
        done = self.desk.reconfigure(cfg, now)
        old = self.outbox
        if (old.max_size, old.retention, old.max_bytes) == (
            cfg.max_queue_size,
            cfg.queue_retention_ms / 1000.0,
            cfg.max_queue_bytes,
        ):
            return done
        new = _new_outbox(cfg)
        new.discards = old.discards
        dropped = new.requeue_front(old.drain_items(now), now)
        if dropped:
            self._s.logger.warning("offline queue resized: dropped %d oldest message(s)", dropped)
        new.dropped += old.dropped
        new.expired += old.expired
        new.refused += old.refused
        new.total_put += old.total_put
        self.outbox = new
        return done + self.desk.queue_discards(new)

    def _check_queueable_locked(self) -> None:
        s = self._s
        if not s.config.enable_offline_queue:
            raise NotConnectedError("not connected and the offline queue is off (enable_offline_queue)")
        refusal = s.refuse_offline
        if refusal is not None:
            raise NotConnectedError(refusal)

    def _enqueue_locked(self, text: str) -> None:
        self._check_queueable_locked()
        dropped = self.outbox.put(text, time.monotonic())
        if dropped:
            self._s.logger.warning("offline queue full: dropped %d oldest message(s)", dropped)

    def _trace_out(self, message: Message, size: int, how: str) -> None:
        """enable_debug_logging: one line per message sent (type and id only, never the data)."""
        if isinstance(message, RealtimeMessage):
            mtype, mid = str(message.type), message.id
        else:
            mtype, mid = str(message.get("type")), str(message.get("id"))
        log: logging.Logger = self._s.logger
        log.debug("-> %s id=%s (%d chars) %s", mtype, mid, size, how)
