"""What the reference backend saw: counters, client messages, pongs, handshakes, open connections.

The loop thread writes through :class:`Records`; any thread reads snapshots or waits through
:class:`RecordsView` (which :class:`~magk_client.testing.Backend` inherits). Every write notifies the one
condition, so a waiter re-checks its predicate whenever anything is recorded.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

from aiohttp import web

__all__ = ["CommandRecord", "ReceivedMessage", "Records", "RecordsView"]


@dataclass(frozen=True)
class ReceivedMessage:
    """One message a client sent: over ``"websocket"`` or ``"http"`` (``POST /messages``).

    ``duplicate``: its id had been processed already, so it was acknowledged again and not processed.
    """

    transport: str
    connection_id: Optional[str]
    message: Any
    raw: str
    received_at: float
    duplicate: bool = False


@dataclass(frozen=True)
class CommandRecord:
    """One command the backend received (:attr:`RecordsView.command_log`).

    ``route``: how it came: ``"ws"`` (a WebSocket envelope), ``"commands"`` (``POST /commands``),
    ``"messages"`` (an envelope on ``POST /messages``) or ``"python"`` (``Backend.execute_command``).
    ``received_at``: ``time.monotonic()`` when the backend took it. ``replay``: answered from the
    idempotency store (its request id had run already), not run again. ``fault``: a fault switch
    answered it instead (``"http 503"``, ``"reset"``) and it did not run. ``payload``: the command object
    as received (without ``requestId`` when the backend generated one). ``success``: its answer's
    (None when a fault answered). ``connection_id``: the WebSocket, or the ``X-Connection-Id`` of
    ``POST /messages``.
    """

    request_id: str
    command: str
    workflow_id: str
    route: str
    received_at: float
    replay: bool
    payload: Dict[str, Any]
    connection_id: Optional[str] = None
    success: Optional[bool] = None
    fault: Optional[str] = None

    @property
    def executed(self) -> bool:
        """Whether the command actually ran (not a replay, not answered by a fault)."""
        return not self.replay and self.fault is None


class Records:
    """The records and their condition (re-entrant: a predicate may read a snapshot).

    Written by the loop thread (or the caller's thread while the backend is stopped); the collections
    are read only under ``cond``.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.received_messages: List[ReceivedMessage] = []
        self.pongs: List[ReceivedMessage] = []
        self.connections_log: List[Dict[str, Any]] = []
        self.counters: Counter[str] = Counter()
        self.command_counts: Counter[str] = Counter()
        self.command_log: List[CommandRecord] = []
        self.executions: Counter[str] = Counter()
        self.processed_counts: Counter[str] = Counter()
        self.open: Dict[str, str] = {}  # connection id -> transport
        self.event_waiters = 0
        self.published_count = 0

    def count(self, key: str, amount: int = 1) -> None:
        with self.cond:
            self.counters[key] += amount
            self.cond.notify_all()

    def notify(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def received(
        self, transport: str, conn_id: Optional[str], message: Any, raw: str, *, duplicate: bool = False
    ) -> None:
        item = ReceivedMessage(transport, conn_id, message, raw, time.monotonic(), duplicate)
        with self.cond:
            if isinstance(message, dict) and message.get("type") == "pong":
                self.pongs.append(item)
                self.counters["pongs"] += 1
            else:
                self.received_messages.append(item)
            self.cond.notify_all()

    def handshake(self, transport: str, request: web.Request, outcome: str, conn_id: Optional[str]) -> None:
        entry = {
            "transport": transport,
            "path": request.path,
            "query": dict(request.query),
            "headers": dict(request.headers),
            "last_event_id": request.headers.get("Last-Event-ID"),
            "authorization": request.headers.get("Authorization"),
            "outcome": outcome,
            "connection_id": conn_id,
            "time": time.monotonic(),
        }
        with self.cond:
            self.connections_log.append(entry)
            self.cond.notify_all()

    def opened(self, conn_id: str, transport: str, replayed: int) -> None:
        with self.cond:
            self.counters["ws_connects" if transport == "websocket" else "sse_connects"] += 1
            self.counters["replayed"] += replayed
            self.open[conn_id] = transport
            self.cond.notify_all()

    def closed(self, conn_id: str) -> None:
        with self.cond:
            self.open.pop(conn_id, None)
            self.cond.notify_all()

    def all_closed(self) -> None:
        with self.cond:
            self.open.clear()
            self.cond.notify_all()

    def command(self, record: CommandRecord) -> None:
        """A command was answered (run, replayed, or answered by a fault instead)."""
        rid = record.request_id
        with self.cond:
            self.command_log.append(record)
            if record.fault is not None:
                self.counters["commands_faulted"] += 1
            else:
                self.command_counts[rid] += 1
                self.counters["commands"] += 1
                if record.replay:
                    self.counters["commands_replayed"] += 1
                else:
                    self.executions[rid] += 1
            self.cond.notify_all()

    def processed(self, message_id: str) -> None:
        """A client message with this id was processed (not ignored as a duplicate)."""
        with self.cond:
            self.processed_counts[message_id] += 1
            self.cond.notify_all()

    def acked(self, n_ids: int, message: bool) -> None:
        """``n_ids`` message ids were acknowledged, in one WebSocket ``ack`` (``message``) or a 2xx."""
        with self.cond:
            self.counters["acks_sent"] += n_ids
            if message:
                self.counters["ack_messages"] += 1
            self.cond.notify_all()

    def published(self) -> None:
        """An event went into the replay log: wake ``wait_for_event`` (cheap when nobody waits)."""
        if self.event_waiters:
            with self.cond:
                self.published_count += 1
                self.cond.notify_all()


class RecordsView:
    """The public, thread-safe view of the records: snapshots, and waits (never on the loop thread)."""

    _records: Records

    @property
    def received_messages(self) -> List[ReceivedMessage]:
        """Client messages so far (pings and pongs excluded), oldest first: a snapshot."""
        with self._records.cond:
            return list(self._records.received_messages)

    @property
    def pongs(self) -> List[ReceivedMessage]:
        """``pong`` messages clients sent (answers to server heartbeats): a snapshot."""
        with self._records.cond:
            return list(self._records.pongs)

    @property
    def connections_log(self) -> List[Dict[str, Any]]:
        """Every WebSocket handshake and SSE request: transport, headers, query, outcome, connection id."""
        with self._records.cond:
            return [dict(entry) for entry in self._records.connections_log]

    @property
    def counters(self) -> Dict[str, int]:
        """ws_attempts, ws_connects, sse_attempts, sse_connects, pings, pongs, commands, commands_replayed,
        commands_faulted (answered by a ``POST /commands`` fault), answers_dropped (command answers
        withheld), bad_messages, http_requests, auth_failures, refused, dropped, acks_sent (ids
        acknowledged, on any transport), ack_messages (WebSocket ``ack`` messages), duplicates_ignored, ..."""
        with self._records.cond:
            return dict(self._records.counters)

    @property
    def command_counts(self) -> Dict[str, int]:
        """How many times each requestId was received and answered by the backend (over any transport;
        commands a fault switch answered instead are only in :attr:`command_log`)."""
        with self._records.cond:
            return dict(self._records.command_counts)

    @property
    def command_log(self) -> List[CommandRecord]:
        """Every command received, oldest first: its request id, command, workflow, route (``"ws"``,
        ``"commands"``, ``"messages"``, ``"python"``), time, and whether it ran, was a replay, or was
        answered by a fault (see :class:`CommandRecord`). A snapshot. Malformed commands are not in it
        (they are counted in ``bad_messages``)."""
        with self._records.cond:
            return list(self._records.command_log)

    def executions(self, request_id: str) -> int:
        """How many times the command with this request id actually ran: at most 1, as a repeat is
        answered from the idempotency store (unless more than ``idempotency_size`` other commands came
        in between). Counted since the last :meth:`clear_records`."""
        with self._records.cond:
            return self._records.executions[request_id]

    @property
    def processed_counts(self) -> Dict[str, int]:
        """How many times each client message id was processed (over any transport): 1 each when every
        message was processed exactly once. Duplicates ignored while acks are on are not counted (see
        ``ReceivedMessage.duplicate``); commands are in :attr:`command_counts`; ping and pong are neither."""
        with self._records.cond:
            return dict(self._records.processed_counts)

    @property
    def ws_connects(self) -> int:
        with self._records.cond:
            return self._records.counters["ws_connects"]

    @property
    def sse_connects(self) -> int:
        with self._records.cond:
            return self._records.counters["sse_connects"]

    @property
    def open_connections(self) -> Dict[str, str]:
        """Connection id -> transport for the connections open now."""
        with self._records.cond:
            return dict(self._records.open)

    def clear_records(self) -> None:
        """Forget received messages, pongs, the connections log and all counters (the backend's own memory,
        the ids it processed and the command answers it keeps, stays)."""
        records = self._records
        with records.cond:
            records.received_messages.clear()
            records.pongs.clear()
            records.connections_log.clear()
            records.counters.clear()
            records.command_counts.clear()
            records.command_log.clear()
            records.executions.clear()
            records.processed_counts.clear()

    def wait_until(
        self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
    ) -> None:
        """Wait until ``predicate()`` is true; it is re-checked whenever the backend records something."""
        deadline = time.monotonic() + timeout
        cond = self._records.cond
        with cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
                cond.wait(remaining)

    def wait_for_received(
        self,
        count_or_predicate: Union[int, Callable[[ReceivedMessage], bool]] = 1,
        timeout: float = 5.0,
    ) -> List[ReceivedMessage]:
        """Wait for ``n`` received messages (returns them all) or one matching the predicate (returns the
        matching ones)."""
        received = self._records.received_messages
        if callable(count_or_predicate):
            pred = count_or_predicate
            found: List[ReceivedMessage] = []

            def check() -> bool:
                found[:] = [m for m in received if pred(m)]
                return bool(found)

            self.wait_until(check, timeout, "a matching received message")
            return found
        n = count_or_predicate
        self.wait_until(lambda: len(received) >= n, timeout, f"{n} received messages")
        return self.received_messages

    def wait_for_command(
        self,
        request_id_or_predicate: Union[str, Callable[[CommandRecord], bool]],
        count: int = 1,
        timeout: float = 5.0,
    ) -> List[CommandRecord]:
        """Wait until :attr:`command_log` holds ``count`` commands with this request id (or matching the
        predicate); returns all the matching ones, oldest first."""
        if callable(request_id_or_predicate):
            pred, what = request_id_or_predicate, "matching commands"
        else:
            rid = request_id_or_predicate
            pred, what = (lambda c: c.request_id == rid), f"command {rid!r}"
        log = self._records.command_log
        found: List[CommandRecord] = []

        def check() -> bool:
            found[:] = [c for c in log if pred(c)]
            return len(found) >= count

        self.wait_until(check, timeout, f"{count} x {what}")
        return list(found)

    def wait_for_processed(self, message_ids: Iterable[str], timeout: float = 5.0) -> Dict[str, int]:
        """Wait until every one of ``message_ids`` has been processed; returns :attr:`processed_counts`."""
        wanted = set(message_ids)
        counts = self._records.processed_counts
        self.wait_until(lambda: all(counts[m] for m in wanted), timeout, f"{len(wanted)} processed message ids")
        return self.processed_counts

    def wait_for_connections(
        self, n: int = 1, timeout: float = 5.0, *, transport: Optional[str] = None, total: bool = False
    ) -> int:
        """Wait until ``n`` connections are open now (or, with ``total=True``, have been accepted in all);
        ``transport`` ``"websocket"`` or ``"sse"`` counts only that kind. Returns the count."""
        counters, open_now = self._records.counters, self._records.open

        def count() -> int:
            if total:
                if transport is None:
                    return counters["ws_connects"] + counters["sse_connects"]
                return counters["ws_connects" if transport == "websocket" else "sse_connects"]
            return sum(1 for t in open_now.values() if transport is None or t == transport)

        self.wait_until(lambda: count() >= n, timeout, f"{n} connections")
        with self._records.cond:
            return count()

    def wait_for_disconnects(self, timeout: float = 5.0, *, transport: Optional[str] = None) -> None:
        """Wait until no connection (of that transport) is open."""
        open_now = self._records.open
        self.wait_until(
            lambda: not any(transport is None or t == transport for t in open_now.values()),
            timeout,
            "all connections to close",
        )

    def _wait_for_logged(
        self,
        events: Callable[[], List[Dict[str, Any]]],
        predicate: Callable[[Dict[str, Any]], bool],
        timeout: float,
    ) -> Dict[str, Any]:
        """Wait until ``events()`` (a replay log snapshot) holds one matching ``predicate``; return it."""
        records = self._records
        deadline = time.monotonic() + timeout
        with records.cond:
            records.event_waiters += 1
        try:
            while True:
                with records.cond:
                    seen = records.published_count
                for event in events():
                    if predicate(event):
                        return event
                with records.cond:
                    while records.published_count == seen:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise TimeoutError(f"timed out after {timeout} s waiting for a matching event")
                        records.cond.wait(remaining)
        finally:
            with records.cond:
                records.event_waiters -= 1
