"""The inbound room: the reader threads (``magk-reader-N-M``, one per live connection).

Each blocks on ``transport.receive()``, decodes the batch, answers server pings, records pongs,
drops duplicates and hands the batch to the dispatcher's queue. It never runs user code.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any, List

from .. import codec
from ..errors import MagkConnectionError, MagkError, ResumeGapError
from ..models import ConnectionType, MessageType, RealtimeMessage
from ..reclaim import StepGate
from ..transports.base import Inbound as InboundItem
from ..transports.ws_frames import UndecodableMessage
from .outbound import Outbound
from .state import CONTROL, Connection, Notice, Session

__all__ = ["Inbound", "reader_main"]

logger = logging.getLogger("magk_client.service")

#: Messages waiting for the dispatcher above which the reader hands it the GIL (see Inbound.process).
_HANDOFF_BACKLOG = 512
#: The longest the reader waits for the dispatcher to catch up, per batch (seconds).
_HANDOFF_WAIT = 0.005


def _invalid(item: InboundItem, exc: codec.InvalidMessage) -> codec.InvalidMessage:
    """What to report for an item that did not decode: a binary WebSocket message that is not
    UTF-8 says so (its placeholder text would read as "not valid JSON")."""
    if type(item) is UndecodableMessage:
        return codec.InvalidMessage(f"binary message is not UTF-8 ({item.size} bytes)")
    return exc


class Inbound:
    """Decoding and hand-off for every connection of one service (reader threads)."""

    def __init__(self, session: Session, gate: StepGate, outbound: Outbound) -> None:
        self._s = session
        self._gate = gate
        self._outbound = outbound

    def start_reader(self, conn: Connection) -> None:
        """Start ``conn``'s reader thread (supervisor thread). It holds this room only weakly."""
        reader = threading.Thread(
            target=reader_main,
            args=(weakref.ref(self), self._gate, conn),
            name=f"magk-reader-{self._s.number}-{conn.number}",
            daemon=True,
        )
        conn.reader = reader
        reader.start()

    def connection_failed(self, conn: Connection, error: MagkConnectionError) -> None:
        """The reader of ``conn`` ends on ``error`` (reader thread): the supervisor acts on it."""
        with self._s.lock:
            self._s.fail_connection_locked(conn, error)

    def process(self, conn: Connection, items: List[InboundItem]) -> None:
        """Decode a batch, handle control messages, drop duplicates, hand over (reader thread).

        The per-message hot path: names are bound to locals once per batch."""
        s = self._s
        stats = s.stats
        now = time.time()
        depth = s.config.max_json_depth
        delivery = s.delivery
        accept = delivery.accept
        decode = codec.decode
        from_sse = codec.from_backend_message
        transformers = s.transformers
        invalid = codec.InvalidMessage
        control = CONTROL
        ack, refusal = MessageType.SUBSCRIPTION_ACK, MessageType.SUBSCRIPTION_ERROR
        out: List[Any] = []
        append = out.append
        outbound = self._outbound
        undecided = outbound.undecided == conn.number  # has the server said whether it acknowledges?
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
                stats.invalid += 1
                s.report(_invalid(item, exc), escalate=False)
                continue
            mtype = message.type
            if undecided:  # its first messages tell (docs/protocol.rst, Acknowledgements)
                outbound.on_inbound(conn, message)
                undecided = outbound.undecided == conn.number
            if mtype in control:
                self._on_control(conn, message)
                if not s.router.match(message):  # only a subscription naming the type gets it
                    continue
            elif message.id and not accept(message.id):
                continue
            elif mtype is ack:
                # A server may tell where the stream stands; a client with no event yet resumes from there.
                position = message.data.get("lastEventId")
                if isinstance(position, str) and position and delivery.last_event_id is None:
                    delivery.set_last_event_id(position)
            elif mtype is refusal and message.data.get("code") == "bad_message":
                outbound.on_refusal(message.data)  # final for the id it names (still delivered)
            elif mtype is refusal and message.data.get("code") == "resume_gap":
                stats.resume_gaps += 1
                last = message.data.get("lastEventId")
                gap = ResumeGapError(last if isinstance(last, str) else None)
                s.logger.warning("%s", gap)
                append(Notice("gap", None, gap))
            append(message)
        if s.trace:
            self._trace_in(conn, len(items), out)
        stats.received += len(items)
        stats.last_message_at = now
        if not out:
            return
        pending = stats.enqueued - stats.dispatched
        if pending + len(out) > s.config.max_dispatch_queue:
            self._overflow(out, pending)
            return
        stats.enqueued += len(out)
        s.dispatch_q.put(out)
        if pending + len(out) > _HANDOFF_BACKLOG:
            self._hand_off()

    def _trace_in(self, conn: Connection, read: int, out: List[Any]) -> None:
        """enable_debug_logging: one line per message handed to the dispatcher (type, ids; never
        the data), and one per read (reader thread)."""
        log = self._s.logger
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
        s = self._s
        stats = s.stats
        room = max(0, s.config.max_dispatch_queue - pending)
        excess = out[room:]
        kept = out[:room]
        kept.extend(x for x in excess if type(x) is Notice)
        dropped = len(out) - len(kept)
        if kept:
            stats.enqueued += len(kept)
            s.dispatch_q.put(kept)
        if dropped:
            stats.dispatch_dropped += dropped
            s.report(
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
        stats = self._s.stats
        caught_up = stats.caught_up
        caught_up.clear()
        if stats.enqueued != stats.dispatched:
            caught_up.wait(_HANDOFF_WAIT)

    def _on_control(self, conn: Connection, message: RealtimeMessage) -> None:
        """A ping, pong, heartbeat or ack (reader thread): record a pong or an ack, answer a server ping."""
        s = self._s
        data = message.data
        if s.trace:
            s.logger.debug("<- %s id=%s (control)", message.type, message.id)
        if message.type is MessageType.ACK:
            self._outbound.on_ack(conn, data)
            return
        if message.type is MessageType.PONG:
            ping_id = data.get("pingId")
            if isinstance(ping_id, str):
                with s.lock:
                    s.heartbeat.on_pong(ping_id, time.monotonic())
            return
        # server heartbeat {"ping": id} or a server ping: answer with a pong
        ping_id = data.get("ping") if message.type is MessageType.HEARTBEAT else data.get("pingId", message.id)
        if message.type is MessageType.HEARTBEAT and not ping_id:
            return  # liveness only
        if conn.ctype is ConnectionType.WEBSOCKET:
            s.send_ping_frame(conn, "pong", ping_id)


def reader_main(ref: weakref.ReferenceType[Inbound], gate: StepGate, conn: Connection) -> None:
    """Reader thread of ``conn``: receive, then one step per batch (:meth:`Inbound.process`).

    Holds the room only between ``gate`` brackets, never while it blocks on the socket."""
    transport = conn.transport
    try:
        while True:
            items = transport.receive()
            token = gate.enter()
            try:
                room = ref()
                if room is None:
                    transport.close()
                    return
                room.process(conn, items)
                del room
            finally:
                gate.leave(token)
    except MagkConnectionError as err:
        error: MagkConnectionError = err
    except Exception as exc:
        logger.exception("reader failed")
        error = MagkConnectionError(f"reader failed: {type(exc).__name__}")
    room = ref()
    if room is not None:
        room.connection_failed(conn, error)
