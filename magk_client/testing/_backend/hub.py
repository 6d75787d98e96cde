"""The open connections of the reference backend and the events that reach them.

:class:`Hub` runs on the loop thread (or the caller's thread while the backend is stopped): it logs each
published event for replay and queues it on every connection, attaches a new connection (gap notice, ack,
replay) and sends heartbeats, control messages and the acknowledgements of client messages.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, Callable, Dict, List, Optional

from aiohttp import web

from ..engine import iso_now
from ..replay import LoggedEvent, ReplayLog
from .connection import Connection
from .faults import FaultSwitches
from .records import Records
from .wire import ack_message, control, dumps, sse_frame, subscription_error, text_frame

__all__ = ["MAX_IDS_PER_ACK", "Hub"]

#: The most ids one ``ack`` message names.
MAX_IDS_PER_ACK = 500


class Hub:
    """Connections by id, the replay log, and every way a message reaches a connection.

    ``send_ack()`` is read at each attach: whether to send ``subscription_ack``; ``features()`` is what
    that ``subscription_ack`` advertises (``["ack"]`` while acknowledgements are on).
    """

    def __init__(
        self,
        log: ReplayLog,
        records: Records,
        faults: FaultSwitches,
        send_ack: Callable[[], bool],
        features: Callable[[], List[str]] = list,
    ) -> None:
        self.log = log
        self.conns: Dict[str, Connection] = {}
        self._records = records
        self._faults = faults
        self._send_ack = send_ack
        self._features = features
        self._conn_ids = itertools.count(1)
        self._heartbeat_ids = itertools.count(1)

    def new_connection(self, transport: str, request: web.Request) -> Connection:
        return Connection(f"c-{next(self._conn_ids)}", transport, request)

    # -- events --------------------------------------------------------------------------------------

    def emit(self, msg_type: str, workflow_id: str, node_id: Optional[str], data: Dict[str, Any]) -> None:
        """The engine's ``emit``: one workflow event, published."""
        msg: Dict[str, Any] = {"type": msg_type, "timestamp": iso_now(), "workflowId": workflow_id}
        if node_id is not None:
            msg["nodeId"] = node_id
        msg["data"] = data
        msg["version"] = 1
        self.publish(msg)

    def publish(self, msg: Dict[str, Any]) -> LoggedEvent:
        """Give ``msg`` an id and timestamp when missing, log it for replay, queue it on every connection."""
        event_id = msg.get("id")
        if event_id is None:
            event_id = self.log.next_auto_id()
            msg = {"id": event_id, **msg}
        if "timestamp" not in msg:
            msg["timestamp"] = iso_now()
        text = dumps(msg)
        entry = self.log.append(event_id, msg, text)
        self._records.published()
        if self.conns and not self._faults.silent:
            ws_item: Optional[bytes] = None
            sse_item: Optional[bytes] = None
            for conn in self.conns.values():
                if conn.websocket:
                    if ws_item is None:
                        ws_item = text_frame(text)
                    conn.push(ws_item)
                else:
                    if sse_item is None:
                        sse_item = sse_frame(text, event_id)
                    conn.push(sse_item)
        return entry

    async def publish_all(self, msgs: List[Dict[str, Any]], batch: int = 2000) -> List[str]:
        """Publish ``msgs`` in batches, yielding to the loop between batches; their ids."""
        ids: List[str] = []
        for start in range(0, len(msgs), batch):
            ids.extend(self.publish(m).id for m in msgs[start : start + batch])
            await asyncio.sleep(0)
        return ids

    def broadcast(self, ws_item: Optional[bytes], sse_item: Optional[bytes]) -> None:
        """Queue raw wire bytes (not logged) on every WebSocket / SSE connection; None skips that kind."""
        if self._faults.silent:
            return
        for conn in self.conns.values():
            if conn.websocket:
                if ws_item is not None:
                    conn.push(ws_item)
            elif sse_item is not None:
                conn.push(sse_item)

    def send_control(self, conn: Connection, msg: Dict[str, Any]) -> None:
        """Send a message that is not an event (no id, not logged) to one connection.

        Acks waiting on ``conn`` go first: answers keep the order of the messages they answer."""
        if conn.pending_acks:
            self.flush_acks(conn)
        self._send(conn, msg)

    def send_answer(self, conn: Connection, msg: Dict[str, Any], delay: float) -> None:
        """Send a command answer to one connection, ``delay`` seconds from now (0: at once, as
        :meth:`send_control`). Delayed answers wait in their own queue, in order; nothing else waits
        behind them. An answer whose connection has closed meanwhile is forgotten."""
        if delay <= 0 and not conn.delayed_answers:
            self.send_control(conn, msg)
            return
        loop = asyncio.get_running_loop()
        conn.delayed_answers.append((loop.time() + max(delay, 0.0), msg))
        if len(conn.delayed_answers) == 1:
            loop.call_at(conn.delayed_answers[0][0], self._release_answers, conn)

    def _release_answers(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        queue = conn.delayed_answers
        if self.conns.get(conn.id) is not conn:
            queue.clear()  # closed meanwhile
            return
        while queue and queue[0][0] <= loop.time():
            self.send_control(conn, queue.popleft()[1])
        if queue:
            loop.call_at(queue[0][0], self._release_answers, conn)

    def drop(self, conn: Connection) -> None:
        """Abort one connection (RST, no close frame); counted in ``dropped``."""
        self._records.count("dropped")
        conn.abort()

    def _send(self, conn: Connection, msg: Dict[str, Any]) -> None:
        if self._faults.silent:
            return
        text = dumps(msg)
        conn.push(text_frame(text) if conn.websocket else sse_frame(text))

    def queue_ack(self, conn: Connection, message_id: str) -> None:
        """Acknowledge ``message_id`` on ``conn`` (a WebSocket) in the next ``ack`` (loop thread).

        The ids of the messages read in one go share one ``ack``: it goes out once the session yields to
        the loop (or at :data:`MAX_IDS_PER_ACK` ids, or before any other answer to that connection)."""
        conn.pending_acks.append(message_id)
        if len(conn.pending_acks) >= MAX_IDS_PER_ACK:
            self.flush_acks(conn)
        elif len(conn.pending_acks) == 1:
            asyncio.get_running_loop().call_soon(self.flush_acks, conn)

    def flush_acks(self, conn: Connection) -> None:
        """Send the ``ack`` of the ids waiting on ``conn``, if any and if it is still open."""
        ids, conn.pending_acks = conn.pending_acks, []
        if not ids or self.conns.get(conn.id) is not conn or self._faults.silent:
            return  # unsent: the client resends those messages and gets its ack then
        self._records.acked(len(ids), message=True)
        self._send(conn, ack_message(ids))

    async def heartbeat_loop(self, interval: float) -> None:
        """``heartbeat`` messages (WebSocket) and ``: ping`` lines (SSE) every ``interval`` seconds."""
        while True:
            await asyncio.sleep(interval)
            if self._faults.silent:
                continue
            for conn in list(self.conns.values()):
                if conn.websocket:
                    self.send_control(conn, control("heartbeat", {"ping": f"hb-{next(self._heartbeat_ids)}"}))
                else:
                    conn.push(b": ping\n\n")

    # -- connections ---------------------------------------------------------------------------------

    def attach(self, conn: Connection, request: web.Request) -> None:
        """Queue gap notice, ack and replay, and register for live events, with no await in between:
        nothing published meanwhile can be missed or sent twice."""
        last_id = request.headers.get("Last-Event-ID") or request.query.get("lastEventId") or None
        replay: List[LoggedEvent] = []
        if last_id is not None:
            gap, replay = self.log.after(last_id)
            if gap:
                self._records.count("resume_gaps")
                self.send_control(conn, subscription_error({"code": "resume_gap", "lastEventId": last_id}))
        if self._send_ack():
            ack = {
                "connectionId": conn.id,
                "replayed": len(replay),
                # the stream position at attach time ("e-0": before the first event), so a client that
                # has not received an event yet can still resume without a gap
                "lastEventId": self.log.position,
                "features": self._features(),
            }
            self.send_control(conn, control("subscription_ack", ack))
        if not self._faults.silent:
            for entry in replay:
                conn.push(text_frame(entry.text) if conn.websocket else sse_frame(entry.text, entry.id))
        if self._faults.drop_after is not None:
            conn.drop_after = self._faults.drop_after
        self.conns[conn.id] = conn
        self._records.opened(conn.id, conn.transport, len(replay))

    def detach(self, conn: Connection) -> None:
        self.conns.pop(conn.id, None)
        conn.done.set()
        self._records.closed(conn.id)

    async def write_loop(self, conn: Connection) -> None:
        """Drain ``conn`` until it closes (see :meth:`Connection.write_loop`)."""
        await conn.write_loop(self._faults, lambda: self._records.count("dropped"))

    def abort_all(self) -> int:
        """Abort every connection (RST, no close frame); how many."""
        conns = list(self.conns.values())
        for conn in conns:
            conn.abort()
        return len(conns)

    def close_all(self, code: int, reason: str) -> int:
        """Close every WebSocket with ``code`` and end every SSE stream; how many."""
        conns = list(self.conns.values())
        for conn in conns:
            conn.request_close(code, reason)
        return len(conns)

    async def shut_down(self, close_code: int, timeout: float) -> None:
        """Close every connection, wait up to ``timeout`` for the closes, abort what is left."""
        conns = list(self.conns.values())
        self.close_all(close_code, "server shutdown" if close_code != 1012 else "server restart")
        if conns:
            loop = asyncio.get_running_loop()
            await asyncio.wait([loop.create_task(c.done.wait()) for c in conns], timeout=timeout)
        self.abort_all()

    def clear_queues(self) -> None:
        for conn in self.conns.values():
            conn.items.clear()

    def set_drop_after(self, n_messages: Optional[int]) -> None:
        self._faults.drop_after = n_messages
        for conn in self.conns.values():
            conn.drop_after = None if n_messages is None else conn.sent + n_messages

    def queue_length(self) -> int:
        return sum(len(c.items) for c in self.conns.values())

