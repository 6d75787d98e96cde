"""The outbound room: ``send_message`` -> offline queue -> flush on connect -> ``transport.send``.

The whole path of a message the application sends lives here, behind a narrow interface:

* :meth:`Outbound.send` (any user thread): send now over the live connection, or queue;
* :meth:`Outbound.flush` (supervisor thread, after each connection opened): send the queue
  in order, then let sends go out directly;
* :meth:`Outbound.note_outage_locked` (supervisor, or a failed send): whether sends may queue
  until the next connection;
* :meth:`Outbound.clear`, :meth:`Outbound.resize_locked` (update_config), ``outbox`` (health).

Server pings, pongs and heartbeats are not sent from here (the supervisor and the reader send
those themselves: they are not the application's messages and never queue).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import replace
from typing import Any, Mapping, Union

from .. import codec
from ..config import RealtimeConnectionConfig, RecoveryStrategy
from ..errors import ClientClosedError, MagkConnectionError, MessageTooLargeError, NotConnectedError
from ..models import RealtimeMessage
from ..outbox import OfflineQueue
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


class Outbound:
    """The application's messages on their way out (see the module docstring).

    ``outbox`` is guarded by the session's lock."""

    def __init__(self, session: Session) -> None:
        self._s = session
        self.outbox = _new_outbox(session.config)

    def send(self, message: Message) -> bool:
        """``send_message`` (any thread): True if sent now, False if queued; see its docstring."""
        s = self._s
        message = _with_id(message, s.rng)
        text = codec.encode(message)
        limit = s.config.max_message_size
        if len(text) > limit:
            raise MessageTooLargeError(f"message of {len(text)} characters is over max_message_size={limit}")
        with s.lock:
            if s.closed:
                raise ClientClosedError("this RealtimeService was closed")
            conn = s.conn if s.direct_send else None
            if conn is None:
                self._enqueue_locked(text)
        if conn is None:
            if s.trace:
                self._trace_out(message, len(text), "queued")
            return False
        try:
            conn.transport.send(text)
        except MagkConnectionError as err:
            with s.lock:
                s.fail_connection_locked(conn, err)
                self.note_outage_locked(err, self.queues_offline(err))
                self._enqueue_locked(text)
            if s.trace:
                self._trace_out(message, len(text), "queued")
            return False
        with s.lock:
            s.stats.sent += 1
        if s.trace:
            self._trace_out(message, len(text), f"sent over connection {conn.number}")
        return True

    def flush(self, conn: Connection) -> None:
        """Send the offline queue in order over ``conn``, then let sends go out directly
        (supervisor thread, right after ``conn`` opened). A failed send puts the rest back
        in front and marks ``conn`` broken."""
        s = self._s
        while True:
            with s.lock:
                if conn.error is not None or s.conn is not conn:
                    return
                items = self.outbox.drain(time.monotonic())
                if not items:
                    s.direct_send = True
                    return
            if s.trace:
                s.logger.debug("-> sending %d queued message(s) over connection %d", len(items), conn.number)
            for index, text in enumerate(items):
                try:
                    conn.transport.send(text)
                except MagkConnectionError as err:
                    with s.lock:
                        self.outbox.requeue_front(items[index:], time.monotonic())
                        s.fail_connection_locked(conn, err)
                    return
                with s.lock:
                    s.stats.sent += 1

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
        """Drop every message waiting in the offline queue; return how many (any thread)."""
        with self._s.lock:
            return self.outbox.clear()

    def pending_locked(self) -> int:
        return len(self.outbox)

    def resize_locked(self, cfg: RealtimeConnectionConfig, now: float) -> None:
        """New queue bounds from ``cfg`` (update_config): the messages (with their queue times)
        and the counters are kept; over the new bounds the oldest are dropped."""
        old = self.outbox
        if (old.max_size, old.retention, old.max_bytes) == (
            cfg.max_queue_size,
            cfg.queue_retention_ms / 1000.0,
            cfg.max_queue_bytes,
        ):
            return
        new = _new_outbox(cfg)
        dropped = new.requeue_front(old.drain_items(now), now)
        if dropped:
            self._s.logger.warning("offline queue resized: dropped %d oldest message(s)", dropped)
        new.dropped += old.dropped
        new.expired += old.expired
        new.refused += old.refused
        new.total_put += old.total_put
        self.outbox = new

    def _enqueue_locked(self, text: str) -> None:
        s = self._s
        if not s.config.enable_offline_queue:
            raise NotConnectedError("not connected and the offline queue is off (enable_offline_queue)")
        refusal = s.refuse_offline
        if refusal is not None:
            raise NotConnectedError(refusal)
        dropped = self.outbox.put(text, time.monotonic())
        if dropped:
            s.logger.warning("offline queue full: dropped %d oldest message(s)", dropped)

    def _trace_out(self, message: Message, size: int, how: str) -> None:
        """enable_debug_logging: one line per message sent (type and id only, never the data)."""
        if isinstance(message, RealtimeMessage):
            mtype, mid = str(message.type), message.id
        else:
            mtype, mid = str(message.get("type")), str(message.get("id"))
        log: logging.Logger = self._s.logger
        log.debug("-> %s id=%s (%d chars) %s", mtype, mid, size, how)
