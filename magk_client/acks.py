"""Outbound acknowledgements: the window of written, unacknowledged messages (pure).

docs/protocol.rst, "Acknowledgements": a server that lists ``"ack"`` in the
``features`` of its ``subscription_ack`` confirms each client message by id (an
``ack`` message on the WebSocket, the ``2xx`` of ``POST /messages``) and runs a
repeated id once. :class:`OutboundWindow` keeps what such a server has not
confirmed yet, so that it can be sent again, with the same id, after a reconnect.

The life of a message id in the window:

* :meth:`~OutboundWindow.record` -- written (or about to be) on connection ``conn``.
  Kept as an *entry* (its encoded text, size, first write time, waiters) unless
  that connection is known not to acknowledge: then only its write time is kept,
  in a *tail* used to count what a broken connection may have lost.
* :meth:`~OutboundWindow.ack` -- confirmed: forgotten, its waiters completed.
* :meth:`~OutboundWindow.connection_lost` -- its connection broke: an entry of a
  connection that acknowledges (or, not having said yet, of a server that did
  last time) waits for :meth:`~OutboundWindow.resends`; otherwise it is given up
  and counted ``unconfirmed`` (it may or may not have arrived: at most once).
* refused by the server (:meth:`~OutboundWindow.refuse`), or given up for the
  bounds (``max_size`` entries, ``max_bytes`` of text, ``retention`` seconds
  since the first write: the offline queue's bounds). A sender asks
  :meth:`~OutboundWindow.has_room` first and queues the message when there is
  none, so bounds are not reached on a working connection.

Whether a connection acknowledges is decided once per connection
(:meth:`~OutboundWindow.decide`) from the first message the server sends
(:func:`ack_feature`), or as "no" when ``feature_wait`` seconds pass without one.

Waiters (opaque objects: the service's futures) ride along; every method that
finishes messages returns :class:`Completion` items for the ones that have
waiters, for the caller to complete outside its lock. Time is passed in (``now``,
:func:`time.monotonic` seconds). Not thread-safe: the service calls it under its lock.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from typing import Any, Deque, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple

from .errors import ConfigError
from .models import StrEnum
from .outbox import _utf8_len

__all__ = ["ACK_FEATURE", "Completion", "Outcome", "OutboundWindow", "ack_feature", "is_acknowledged_type"]

#: The name of the feature in ``subscription_ack``'s ``features``.
ACK_FEATURE = "ack"


class Outcome(StrEnum):
    """How a message's wait ended."""

    #: the server confirmed it (an ``ack``, or the 2xx of ``POST /messages``)
    ACKNOWLEDGED = "acknowledged"
    #: written to a server that does not acknowledge: delivered at most once
    WRITTEN = "written"
    #: the server refused it; sending it again would not help
    REFUSED = "refused"
    #: given up unconfirmed: over the bounds or the retention of the window or the offline queue
    DROPPED = "dropped"
    #: ``disconnect()`` came first (the message is kept and sent after the next connect)
    CANCELLED = "cancelled"


class Completion(NamedTuple):
    """A message whose waiters are to be told ``outcome`` (``reason`` says why, for errors)."""

    message_id: str
    outcome: Outcome
    waiters: Tuple[Any, ...]
    reason: str = ""


def ack_feature(mtype: str, data: Mapping[str, Any]) -> Optional[bool]:
    """What the server's first messages on a connection say about acknowledgements.

    ``subscription_ack``: whether its ``features`` list ``"ack"``. A ``resume_gap``
    comes before the ``subscription_ack``: None (not decided yet). Anything else
    first means the server sends no ``subscription_ack``, hence no acknowledgements.
    """
    if mtype == "subscription_ack":
        features = data.get("features")
        return isinstance(features, list) and ACK_FEATURE in features
    if mtype == "subscription_error" and data.get("code") == "resume_gap":
        return None
    return False


def is_acknowledged_type(mtype: str, data: Mapping[str, Any]) -> bool:
    """Does a server that acknowledges confirm a client message of this type? Not a ping or
    pong (liveness), nor a command envelope (its ``command_response`` is its acknowledgement)."""
    if mtype in ("ping", "pong"):
        return False
    return not (mtype == "workflow_event" and data.get("type") == "command")


class _Entry:
    __slots__ = ("attempts", "by_reply", "conn", "first_at", "nbytes", "text", "waiters")

    def __init__(self, text: str, nbytes: int, first_at: float, conn: Optional[int]) -> None:
        self.text = text
        self.nbytes = nbytes
        self.first_at = first_at
        self.conn = conn  # None: waiting to be sent again
        self.attempts = 1
        self.waiters: Optional[List[Any]] = None
        #: its write's own reply decides (an HTTP request in flight): the writer acks or unrecords it
        self.by_reply = False


def _check_bounds(max_size: Any, retention: Any, max_bytes: Any, feature_wait: Any) -> None:
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
        raise ConfigError(f"max_size must be an integer >= 1, got {max_size!r}")
    for name, value in (("retention", retention), ("feature_wait", feature_wait)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
            raise ConfigError(f"{name} must be > 0 seconds, got {value!r}")
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1):
        raise ConfigError(f"max_bytes must be an integer >= 1 or None, got {max_bytes!r}")


class OutboundWindow:
    """Written, unacknowledged messages by id, in first-write order (see the module docstring).

    Counters: ``acknowledged``, ``resent`` (writes after the first), ``unconfirmed``
    (given up after a connection broke, the server not acknowledging), ``refused``,
    ``dropped`` (over the bounds), ``expired`` (over the retention), ``unmatched_acks``
    (an ack naming no entry: late, repeated, or for a message given up).
    """

    def __init__(
        self, max_size: int, retention: float, max_bytes: Optional[int] = None, *, feature_wait: float = 10.0
    ) -> None:
        _check_bounds(max_size, retention, max_bytes, feature_wait)
        self.max_size = max_size
        self.retention = float(retention)
        self.max_bytes = max_bytes
        self.feature_wait = float(feature_wait)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        #: ids in the offline queue that someone waits for (see wait_queued)
        self._queued: Dict[str, List[Any]] = {}
        self._conn: Optional[int] = None
        self._support: Optional[bool] = None
        self._opened_at = 0.0
        #: write times on the current connection, when it does not acknowledge (the newest max_size)
        self._tail: Deque[float] = deque(maxlen=max_size)
        #: the last connection's decision: None until a server has said
        self.server_acks: Optional[bool] = None
        self.acknowledged = 0
        self.resent = 0
        self.unconfirmed = 0
        self.refused = 0
        self.dropped = 0
        self.expired = 0
        self.unmatched_acks = 0

    def __len__(self) -> int:
        """How many messages are unacknowledged (written or waiting to be sent again)."""
        return len(self._entries)

    def __repr__(self) -> str:
        return (
            f"OutboundWindow(unacknowledged={len(self._entries)}/{self.max_size}, connection={self._conn}, "
            f"acks={self._support}, acknowledged={self.acknowledged}, resent={self.resent})"
        )

    def __contains__(self, mid: object) -> bool:
        return mid in self._entries

    def written_on(self, mid: str) -> Optional[int]:
        """The connection ``mid`` was last written on (None: not held, or waiting to be sent again)."""
        entry = self._entries.get(mid)
        return None if entry is None else entry.conn

    def awaits_resend(self, mid: str) -> bool:
        """Is ``mid`` held, its connection broken (see :meth:`resends`)?"""
        entry = self._entries.get(mid)
        return entry is not None and entry.conn is None

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def at_most_once(self) -> bool:
        """True until a server said it acknowledges (and again when one says it does not)."""
        return self.server_acks is not True

    @property
    def pending_resend(self) -> int:
        """Entries whose connection broke, waiting for :meth:`resends`."""
        return sum(1 for e in self._entries.values() if e.conn is None)

    def reconfigure(self, max_size: int, retention: float, max_bytes: Optional[int], now: float) -> List[Completion]:
        """New bounds (the offline queue's); entries over them are dropped, oldest first."""
        _check_bounds(max_size, retention, max_bytes, self.feature_wait)
        self.max_size, self.retention, self.max_bytes = max_size, float(retention), max_bytes
        self._tail = deque(self._tail, maxlen=max_size)
        done = self.expire(now)
        while self._entries and not self._fits(0, strict=False):
            done.extend(self._drop_oldest("the window's bounds changed"))
        return done

    # -- connections ------------------------------------------------------------------------

    def connection_opened(self, conn: int, now: float) -> List[Completion]:
        """``conn`` is the live connection now; whether it acknowledges is not known yet."""
        done = self.connection_lost(self._conn, now) if self._conn is not None else []
        self._conn, self._support, self._opened_at = conn, None, now
        self._tail.clear()
        return done

    def support(self, conn: int) -> Optional[bool]:
        """Whether ``conn`` acknowledges: None when not (yet) decided, or not the live connection."""
        return self._support if conn == self._conn else None

    def undecided(self, conn: int) -> bool:
        """Is ``conn`` the live connection, and has it not said whether it acknowledges?"""
        return conn == self._conn and self._support is None

    def feature_deadline(self) -> Optional[float]:
        """When the live connection counts as not acknowledging if it has not said (None: decided)."""
        if self._conn is None or self._support is not None:
            return None
        return self._opened_at + self.feature_wait

    def decide(self, conn: int, supported: bool) -> List[Completion]:
        """``conn`` does (or does not) acknowledge; the first decision for a connection stands.
        Not acknowledging: what it was written so far is released to its waiters as ``WRITTEN``."""
        if conn != self._conn or self._support is not None:
            return []
        self._support = supported
        self.server_acks = supported
        if supported:
            return []
        done: List[Completion] = []
        for mid in [m for m, e in self._entries.items() if e.conn == conn and not e.by_reply]:
            entry = self._pop(mid)
            self._tail.append(entry.first_at)
            if entry.waiters:
                done.append(Completion(mid, Outcome.WRITTEN, tuple(entry.waiters)))
        return done

    def connection_lost(self, conn: Optional[int], now: float) -> List[Completion]:
        """``conn`` broke (or was closed). What it carried unacknowledged is sent again on the next
        connection if it acknowledges (when it had not said: if the server did last time); else it
        is given up, counted ``unconfirmed`` with the tail of writes within the retention."""
        if conn is None or conn != self._conn:
            return []
        resend = self._support if self._support is not None else self.server_acks is True
        self._conn, self._support = None, None
        done: List[Completion] = []
        # an entry whose write's reply decides is its writer's business (it acks or unrecords it)
        mine = [m for m, e in self._entries.items() if e.conn == conn and not e.by_reply]
        if resend:
            for mid in mine:
                self._entries[mid].conn = None
        else:
            for mid in mine:
                entry = self._pop(mid)
                self.unconfirmed += 1
                if entry.waiters:
                    done.append(Completion(mid, Outcome.WRITTEN, tuple(entry.waiters)))
        tail = self._tail
        self.unconfirmed += sum(1 for stamp in tail if now - stamp <= self.retention)
        tail.clear()
        return done

    # -- messages ---------------------------------------------------------------------------

    def has_room(self, text: str) -> bool:
        """Can ``text`` be written now and kept until acknowledged? Always on a connection that is
        known not to acknowledge; else within ``max_size`` and ``max_bytes`` (an empty window
        takes any one message)."""
        if self._support is False and self._conn is not None:
            return True
        return not self._entries or self._fits(_utf8_len(text), strict=True)

    def _fits(self, nbytes: int, *, strict: bool) -> bool:
        count = len(self._entries) + (1 if strict else 0)
        if count > self.max_size:
            return False
        return self.max_bytes is None or self._bytes + nbytes <= self.max_bytes

    def record(
        self, mid: str, text: str, conn: int, now: float, waiter: Any = None, *, by_reply: bool = False
    ) -> List[Completion]:
        """``mid`` is written on ``conn`` now (call it just before the write, so an ack cannot come
        first). A known id is the same message written again (a resend: counted ``resent``).
        ``by_reply``: the write's own reply confirms it (the 2xx of ``POST /messages``), so it is
        kept for :meth:`ack` (or :meth:`unrecord`) whether or not the connection acknowledges."""
        waiters = self._queued.pop(mid, None) if self._queued else None
        if waiter is not None:
            waiters = [*(waiters or ()), waiter]
        unacked = conn == self._conn and self._support is False and not by_reply
        entry = self._entries.get(mid)
        if entry is not None:
            if entry.conn is None:
                self.resent += 1
                entry.attempts += 1
            entry.conn = conn
            entry.by_reply = by_reply
            if waiters:
                entry.waiters = [*(entry.waiters or ()), *waiters]
            return self._release(mid) if unacked else []
        if unacked:
            self._tail.append(now)
            return [Completion(mid, Outcome.WRITTEN, tuple(waiters))] if waiters else []
        entries = self._entries
        done = []
        if entries and now - next(iter(entries.values())).first_at > self.retention:
            done = self.expire(now)
        nbytes = len(text) if text.isascii() else _utf8_len(text)
        if self.max_bytes is not None and nbytes > self.max_bytes:
            self.dropped += 1
            if waiters:
                done.append(Completion(mid, Outcome.DROPPED, tuple(waiters), "larger than the window's max_bytes"))
            return done
        while entries and not self._fits(nbytes, strict=True):
            done.extend(self._drop_oldest("the window of unacknowledged messages was full"))
        entry = _Entry(text, nbytes, now, conn)
        entry.waiters = waiters
        entry.by_reply = by_reply
        entries[mid] = entry
        self._bytes += nbytes
        return done

    def unrecord(self, mid: str) -> List[Any]:
        """A write of ``mid`` failed before it reached the socket: forget it (the caller queues it
        again); returns its waiters, for :meth:`wait_queued`."""
        entry = self._entries.get(mid)
        if entry is None:
            return []
        self._pop(mid)
        return list(entry.waiters or ())

    def ack(self, ids: Iterable[Any]) -> List[Completion]:
        """The server confirmed ``ids`` (non-string items are ignored)."""
        done: List[Completion] = []
        entries = self._entries
        for mid in ids:
            entry = entries.pop(mid, None) if isinstance(mid, str) else None
            if entry is None:
                self.unmatched_acks += 1
                continue
            self._bytes -= entry.nbytes
            self.acknowledged += 1
            if entry.waiters:
                done.append(Completion(mid, Outcome.ACKNOWLEDGED, tuple(entry.waiters)))
        return done

    def refuse(self, mid: str, reason: str) -> List[Completion]:
        """The server refused ``mid`` for good: forgotten, never sent again."""
        entry = self._entries.get(mid)
        if entry is None:
            return []
        self._pop(mid)
        self.refused += 1
        return [Completion(mid, Outcome.REFUSED, tuple(entry.waiters), reason)] if entry.waiters else []

    def largest_on(self, conn: int) -> Optional[str]:
        """The id of the largest entry written on ``conn`` (a WebSocket closed with 1009 was sent a
        message over the server's limit: that one, most likely)."""
        best: Optional[Tuple[int, str]] = None
        for mid, entry in self._entries.items():
            if entry.conn == conn and (best is None or entry.nbytes > best[0]):
                best = (entry.nbytes, mid)
        return None if best is None else best[1]

    def resends(self, now: float) -> Tuple[List[Tuple[str, str]], List[Completion]]:
        """``(id, text)`` of the entries to send again, in first-write order, and the completions of
        the ones found expired first (see :meth:`expire`). Send each with :meth:`record`."""
        done = self.expire(now)
        return [(mid, e.text) for mid, e in self._entries.items() if e.conn is None], done

    def next_expiry(self) -> Optional[float]:
        """When the oldest entry passes the retention (None: the window is empty)."""
        if not self._entries:
            return None
        return next(iter(self._entries.values())).first_at + self.retention

    def expire(self, now: float) -> List[Completion]:
        """Drop entries first written more than ``retention`` seconds ago."""
        done: List[Completion] = []
        entries = self._entries
        while entries:
            mid, entry = next(iter(entries.items()))
            if now - entry.first_at <= self.retention:
                break
            self._pop(mid)
            self.expired += 1
            if entry.waiters:
                done.append(Completion(mid, Outcome.DROPPED, tuple(entry.waiters), "unacknowledged past retention"))
        return done

    # -- waiters of queued messages ---------------------------------------------------------

    def wait_queued(self, mid: str, waiters: Iterable[Any]) -> None:
        """Someone waits for ``mid``, which sits in the offline queue; :meth:`record` takes them over."""
        items = list(waiters)
        if items:
            self._queued.setdefault(mid, []).extend(items)

    @property
    def has_queued_waiters(self) -> bool:
        return bool(self._queued)

    def discard_queued(self, mid: str, outcome: Outcome, reason: str) -> List[Completion]:
        """``mid`` left the offline queue unsent (dropped, expired, refused): its waiters are told."""
        waiters = self._queued.pop(mid, None)
        return [Completion(mid, outcome, tuple(waiters), reason)] if waiters else []

    def cancel_waiters(self, reason: str) -> List[Completion]:
        """Detach every waiter (``disconnect()``): told ``CANCELLED``; the messages stay."""
        done = [Completion(m, Outcome.CANCELLED, tuple(w), reason) for m, w in self._queued.items()]
        self._queued.clear()
        for mid, entry in self._entries.items():
            if entry.waiters:
                done.append(Completion(mid, Outcome.CANCELLED, tuple(entry.waiters), reason))
                entry.waiters = None
        return done

    def clear(self) -> int:
        """Forget every entry (not counted); return how many. Waiters are left to :meth:`cancel_waiters`."""
        count = len(self._entries)
        self._entries.clear()
        self._bytes = 0
        return count

    # -- internals --------------------------------------------------------------------------

    def _pop(self, mid: str) -> _Entry:
        entry = self._entries.pop(mid)
        self._bytes -= entry.nbytes
        return entry

    def _drop_oldest(self, reason: str) -> List[Completion]:
        mid = next(iter(self._entries))
        entry = self._pop(mid)
        self.dropped += 1
        return [Completion(mid, Outcome.DROPPED, tuple(entry.waiters), reason)] if entry.waiters else []

    def _release(self, mid: str) -> List[Completion]:
        """An entry written again on a connection that does not acknowledge: released as ``WRITTEN``."""
        entry = self._pop(mid)
        self._tail.append(entry.first_at)
        return [Completion(mid, Outcome.WRITTEN, tuple(entry.waiters))] if entry.waiters else []
