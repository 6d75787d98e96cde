"""The send path's decisions: acknowledgements, flow control and the rate limit.

:class:`OutboundDesk` puts the pure parts together -- the window of
unacknowledged messages (:mod:`magk_client.acks`), the offline queue
(:mod:`magk_client.outbox`) and the token bucket (:mod:`magk_client.rate_limit`)
-- and tells the service what to write, what to queue and whom to tell. It makes
no I/O and starts no thread; the service calls it under its lock, with the time
passed in, and does the writing and the telling outside the lock.

Every write of a client message follows the same three steps:

1. :meth:`OutboundDesk.record` under the lock, just before the write (so an ``ack``
   can never come first);
2. the transport's ``send`` outside the lock;
3. :meth:`OutboundDesk.written` on success (the 2xx of ``POST /messages`` is the
   acknowledgement), :meth:`OutboundDesk.unsend` on failure (the message goes back
   to the front of the offline queue, as it always did).

Direct writes from ``send_message`` first ask :meth:`OutboundDesk.admit` (room in
the window, a token); when it says no, the message is queued and the supervisor
writes the queue one :meth:`OutboundDesk.next_step` at a time.

Waiters are futures. :class:`MessageFuture` (from ``submit_message``) runs its
done-callbacks, which are user code, on the dispatcher thread: the service posts
its completions there. The futures of ``send_message(wait=True)`` have no
callbacks and are completed wherever the outcome becomes known.
"""

from __future__ import annotations

import json
import math
from collections import deque
from concurrent.futures import Future
from typing import Any, Deque, Iterable, List, Mapping, NamedTuple, Optional, Tuple, Union

from .acks import Completion, OutboundWindow, Outcome, ack_feature, is_acknowledged_type
from .config import RealtimeConnectionConfig
from .errors import DeliveryError, MessageRefusedError
from .models import RealtimeMessage, SendResult
from .outbox import OfflineQueue, QueuedItem
from .rate_limit import TokenBucket

__all__ = [
    "WAIT_FOR_ACK",
    "MessageFuture",
    "OutboundDesk",
    "Settlement",
    "Step",
    "identify",
    "message_identity",
    "resolve",
    "settle_now",
]

#: :attr:`Step.wait` when the window is full: until an acknowledgement makes room.
WAIT_FOR_ACK = math.inf
_QUEUE_DROPPED = "the offline queue dropped it (bounds or retention)"


class MessageFuture(Future[SendResult]):
    """The future ``submit_message`` returns: a :class:`~magk_client.models.SendResult`, or a
    :class:`~magk_client.errors.DeliveryError`. Its outcome is set, and its done-callbacks run, on
    the dispatcher thread: inside a callback use ``add_done_callback`` (``result()`` there would
    wait for itself) or ``send_message(wait=True)``."""


def message_identity(message: Union[RealtimeMessage, Mapping[str, Any]]) -> Tuple[str, bool]:
    """``(id, acknowledged)`` of an outbound message that has an id: whether a server that
    acknowledges confirms it (not a ping, pong or command envelope)."""
    if type(message) is dict:  # the common case, on every send: no ABC checks
        data = message.get("data")
        mtype = message.get("type")
    elif isinstance(message, RealtimeMessage):
        return str(message.id), is_acknowledged_type(str(message.type), message.data)
    else:
        data = message.get("data")
        mtype = message.get("type")
    if type(data) is not dict and not isinstance(data, Mapping):
        data = {}
    return str(message.get("id")), is_acknowledged_type(str(mtype), data)


def identify(text: str) -> Tuple[Optional[str], bool]:
    """``(id, acknowledged)`` of an encoded message (from the offline queue)."""
    try:
        obj = json.loads(text)
    except ValueError:
        return None, False
    if not isinstance(obj, dict):
        return None, False
    mid = obj.get("id")
    data = obj.get("data")
    acked = is_acknowledged_type(str(obj.get("type")), data if isinstance(data, Mapping) else {})
    return (mid if isinstance(mid, str) and mid else None), acked


def resolve(completion: Completion, futures: Iterable[Any]) -> None:
    """Complete ``futures`` (not done yet) with ``completion``'s outcome."""
    outcome, mid = completion.outcome, completion.message_id
    error: Optional[DeliveryError] = None
    if outcome is Outcome.REFUSED:
        error = MessageRefusedError(
            f"the server refused message {mid}: {completion.reason}", message_id=mid, outcome=outcome.value
        )
    elif outcome is Outcome.DROPPED:
        error = DeliveryError(
            f"message {mid} was given up before the server acknowledged it: {completion.reason}",
            message_id=mid,
            outcome=outcome.value,
        )
    elif outcome is Outcome.CANCELLED:
        error = DeliveryError(
            f"message {mid} was not acknowledged before {completion.reason}; it is kept and sent "
            "again after the next connect()",
            message_id=mid,
            outcome=outcome.value,
        )
    result = SendResult(mid, outcome is Outcome.ACKNOWLEDGED)
    for future in futures:
        if future.done():
            continue
        try:
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
        except Exception:  # noqa: BLE001 - a future cancelled meanwhile: nothing to tell
            pass


class Settlement:
    """Outcomes for :class:`MessageFuture` s, run on the dispatcher thread (their done-callbacks are
    user code); a dispatcher that discards what is left after ``disconnect()`` still runs these:
    a future always ends."""

    __slots__ = ("items",)

    def __init__(self, items: List[Tuple[Completion, List[Any]]]) -> None:
        self.items = items

    def run(self) -> None:
        for completion, futures in self.items:
            resolve(completion, futures)


def settle_now(done: Iterable[Completion]) -> Optional[Settlement]:
    """Complete the plain futures of ``done`` now (they have no callbacks: ``send_message(wait=True)``)
    and return the :class:`MessageFuture` s' part, for the dispatcher (None when there is none)."""
    later: List[Tuple[Completion, List[Any]]] = []
    for completion in done:
        plain = [w for w in completion.waiters if type(w) is not MessageFuture]
        if plain:
            resolve(completion, plain)
        public = [w for w in completion.waiters if type(w) is MessageFuture]
        if public:
            later.append((completion, public))
    return Settlement(later) if later else None


class Step(NamedTuple):
    """What the flush does next: write ``text`` (already recorded), or wait ``wait`` seconds (for a
    token; with ``room``, for an ack, at most until the oldest entry expires; :data:`WAIT_FOR_ACK`:
    no bound), or -- neither -- stop: the queue is empty."""

    text: Optional[str] = None
    mid: Optional[str] = None
    acked: bool = False
    wait: Optional[float] = None
    item: Optional[QueuedItem] = None  # None for a resend (its text is in the window)
    room: bool = False  # the wait is for room in the window: an acknowledgement ends it early


class OutboundDesk:
    """The window, the token bucket and their counters (see the module docstring).

    Not thread-safe: called under the service's lock. ``rate_limit_waits`` counts the
    waits for a token (a direct send told to queue, a queued message told to wait),
    ``window_waits`` the times the flush waited for acks to make room.
    """

    def __init__(self, cfg: RealtimeConnectionConfig) -> None:
        self.window = OutboundWindow(
            cfg.max_queue_size,
            cfg.queue_retention_ms / 1000.0,
            cfg.max_queue_bytes,
            feature_wait=cfg.connection_timeout_ms / 1000.0,
        )
        rate = cfg.max_messages_per_second
        self.bucket: Optional[TokenBucket] = None if rate is None else TokenBucket(rate, cfg.max_message_burst)
        self._resend: Deque[Tuple[str, str]] = deque()
        self._waiting_token = False  # the head of the queue was told to wait (counted once)
        self.rate_limit_waits = 0
        self.window_waits = 0

    def reconfigure(self, cfg: RealtimeConnectionConfig, now: float) -> List[Completion]:
        """New bounds and rate (``update_config``): applied at once, state kept."""
        rate = cfg.max_messages_per_second
        if rate is None:
            self.bucket = None
        elif self.bucket is None:
            self.bucket = TokenBucket(rate, cfg.max_message_burst)
        else:
            self.bucket.reconfigure(rate, cfg.max_message_burst, now)
        self.window.feature_wait = cfg.connection_timeout_ms / 1000.0
        return self.window.reconfigure(
            cfg.max_queue_size, cfg.queue_retention_ms / 1000.0, cfg.max_queue_bytes, now
        )

    # -- connections --------------------------------------------------------------------------

    def connection_opened(self, conn: int, now: float) -> List[Completion]:
        """A new live connection: what the last one left unacknowledged is to be sent again first."""
        done = self.window.connection_opened(conn, now)
        resends, expired = self.window.resends(now)
        self._resend = deque(resends)
        return done + expired

    def connection_lost(self, conn: int, now: float, *, refused_size: bool = False) -> List[Completion]:
        """``conn`` broke. ``refused_size``: the server closed it with 1009 (a message too big for
        it): the largest message written on it is refused rather than sent again (it would be
        refused again)."""
        done: List[Completion] = []
        if refused_size:
            mid = self.window.largest_on(conn)
            if mid is not None:
                done = self.window.refuse(mid, "too large for the server (it closed the WebSocket with 1009)")
        self._resend.clear()
        return done + self.window.connection_lost(conn, now)

    def feature_deadline(self) -> Optional[float]:
        return self.window.feature_deadline()

    def decide_overdue(self, conn: int, now: float) -> List[Completion]:
        """No word on acknowledgements within ``connection_timeout_ms``: the connection has none."""
        deadline = self.window.feature_deadline()
        if deadline is None or now < deadline:
            return []
        return self.window.decide(conn, False)

    # -- inbound (reader) -----------------------------------------------------------------------

    def undecided(self, conn: int) -> bool:
        return self.window.undecided(conn)

    def on_inbound(self, conn: int, mtype: str, data: Mapping[str, Any]) -> List[Completion]:
        """A message from the server while ``conn`` has not said whether it acknowledges."""
        decision = ack_feature(mtype, data)
        return [] if decision is None else self.window.decide(conn, decision)

    def on_ack(self, data: Mapping[str, Any]) -> List[Completion]:
        ids = data.get("ids")
        return self.window.ack(ids) if isinstance(ids, list) else []

    def on_refusal(self, data: Mapping[str, Any]) -> List[Completion]:
        """``subscription_error`` ``bad_message`` naming an id: final for that id."""
        mid = data.get("id")
        if data.get("code") != "bad_message" or not isinstance(mid, str) or not mid:
            return []
        reason = data.get("message")
        return self.window.refuse(mid, str(reason)[:200] if reason else "bad_message")

    # -- writing --------------------------------------------------------------------------------

    @property
    def resends_pending(self) -> int:
        """Messages to send again on the live connection before anything else."""
        return len(self._resend)

    def refuse(self, mid: str, reason: str, waiter: Any = None) -> List[Completion]:
        """The server refused ``mid`` as its reply to the write (``POST /messages`` 400 or 413)."""
        held = mid in self.window
        done = self.window.refuse(mid, reason)
        if not held:
            self.window.refused += 1  # a message the window did not hold (a command): counted all the same
        if waiter is not None:
            done.append(Completion(mid, Outcome.REFUSED, (waiter,), reason))
        return done

    def admit(self, text: str, acked: bool, now: float) -> bool:
        """May a message be written now, directly (else it is queued)? Takes a token when so."""
        if self._resend:
            return False
        if acked and not self.window.has_room(text):
            return False
        bucket = self.bucket
        if bucket is not None and bucket.take(now) > 0:
            self.rate_limit_waits += 1
            return False
        return True

    def take(
        self, mid: str, text: str, acked: bool, conn: int, now: float, waiter: Any = None, *, http: bool = False
    ) -> Optional[List[Completion]]:
        """:meth:`admit`, then :meth:`record` (step 1) in one call (the direct send's hot path):
        None when the message is to be queued instead."""
        if not self.admit(text, acked, now):
            return None
        if not acked:
            return []
        return self.window.record(mid, text, conn, now, waiter, by_reply=http)

    def record(
        self, mid: str, text: str, acked: bool, conn: int, now: float, waiter: Any = None, *, http: bool = False
    ) -> List[Completion]:
        """Step 1: ``mid`` is about to be written on ``conn`` (``http``: by ``POST /messages``,
        whose 2xx will confirm it)."""
        if not acked:
            return []
        return self.window.record(mid, text, conn, now, waiter, by_reply=http)

    def written(self, mid: Optional[str], acked: bool, *, http: bool, waiter: Any = None) -> List[Completion]:
        """Step 3, success. Over HTTP the 2xx is the acknowledgement. A message the server does not
        acknowledge (a command) is done now for its waiters."""
        if mid is None:
            return []
        if acked:
            return self.window.ack([mid]) if http else []
        done = self.window.discard_queued(mid, Outcome.WRITTEN, "")
        if waiter is not None:
            done.append(Completion(mid, Outcome.WRITTEN, (waiter,)))
        return done

    def unsend(
        self,
        mid: Optional[str],
        text: str,
        outbox: OfflineQueue,
        now: float,
        item: Optional[QueuedItem] = None,
        waiter: Any = None,
    ) -> int:
        """Step 3, failure: back to the front of the offline queue (it is sent again after the
        reconnect, as before acknowledgements); returns how many queued messages that dropped."""
        if mid is not None:
            waiters = self.window.unrecord(mid)
            if waiter is not None and waiter not in waiters:
                waiters.append(waiter)
            self.window.wait_queued(mid, waiters)
        return outbox.requeue_front([item if item is not None else text], now)

    def next_step(
        self, conn: int, outbox: OfflineQueue, now: float, *, http: bool = False
    ) -> Tuple[Step, List[Completion]]:
        """The flush's next move on ``conn``: resends first, then the offline queue, each when the
        window has room and the bucket a token. A write step is already recorded (step 1)."""
        window = self.window
        while self._resend:
            rid, rtext = self._resend[0]
            if not window.awaits_resend(rid):
                self._resend.popleft()  # acknowledged, refused, expired or re-queued meanwhile
                continue
            wait = self._token(now)
            if wait:
                return Step(wait=wait), []
            self._resend.popleft()
            return Step(rtext, rid, True), window.record(rid, rtext, conn, now, by_reply=http)
        text = outbox.peek(now)
        if text is None:
            return Step(), []
        mid, acked = identify(text)
        if acked and mid is not None and not window.has_room(text):
            expired = window.expire(now)  # an entry past the retention makes room too
            if not window.has_room(text):
                self.window_waits += 1
                at = window.next_expiry()
                return Step(wait=WAIT_FOR_ACK if at is None else max(at - now, 1e-3), room=True), expired
            step, more = self.next_step(conn, outbox, now, http=http)
            return step, expired + more
        wait = self._token(now)
        if wait:
            return Step(wait=wait), []
        item = outbox.pop(now)
        assert item is not None and item.text is text
        if acked and mid is not None:
            return Step(text, mid, True, item=item), window.record(mid, text, conn, now, by_reply=http)
        return Step(text, mid, False, item=item), []

    def _token(self, now: float) -> float:
        bucket = self.bucket
        if bucket is None:
            return 0.0
        wait = bucket.take(now)
        if wait and not self._waiting_token:
            self._waiting_token = True
            self.rate_limit_waits += 1
        elif not wait:
            self._waiting_token = False
        return wait

    # -- waiters --------------------------------------------------------------------------------

    def wait_queued(self, mid: str, waiter: Any, outbox: OfflineQueue) -> None:
        """``waiter`` waits for ``mid``, which was just queued; the queue reports what it discards."""
        self.window.wait_queued(mid, [waiter])
        if outbox.discards is None:
            outbox.discards = []

    def queue_discards(self, outbox: OfflineQueue) -> List[Completion]:
        """Waiters of messages the offline queue dropped or expired (call after queue operations)."""
        texts = outbox.discards
        done: List[Completion] = []
        for text in texts or ():
            mid, _ = identify(text)
            if mid is not None:
                done.extend(self.window.discard_queued(mid, Outcome.DROPPED, _QUEUE_DROPPED))
        outbox.discards = [] if self.window.has_queued_waiters else None
        return done

    def cancel(self, reason: str) -> List[Completion]:
        return self.window.cancel_waiters(reason)
