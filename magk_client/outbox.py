"""The offline queue: outbound messages waiting for a connection (pure).

Messages are stored as their encoded JSON text, so the queue knows its size in
bytes (UTF-8) exactly. Bounds and policy, all visible in health:

* ``max_size`` items and optionally ``max_bytes`` bytes; when a new message does
  not fit, the **oldest** messages are dropped to make room (``dropped`` counts
  them exactly). A single message larger than ``max_bytes`` is refused with
  :class:`~magk_client.errors.QueueFullError` (it could never fit).
* ``retention`` seconds: a message older than that (age > retention) is
  discarded instead of sent (``expired`` counts them).
* :meth:`OfflineQueue.drain` hands out everything in FIFO order;
  :meth:`OfflineQueue.requeue_front` puts back what a failed flush did not send,
  keeping the order.
* ``discards``: ``None``, or a list the texts of dropped and expired messages are
  appended to (the service sets one while someone waits for a queued message, so
  it can tell them; see :mod:`magk_client.acks`).

Time is passed in (``now``, :func:`time.monotonic` seconds). Not thread-safe:
the service calls it under its lock.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Deque, List, NamedTuple, Optional, Sequence, Tuple, Union

from .errors import ConfigError, QueueFullError

__all__ = ["OfflineQueue", "QueuedItem"]


class QueuedItem(NamedTuple):
    """One queued message: its encoded text, when it was queued, its UTF-8 size."""

    text: str
    enqueued_at: float
    nbytes: int


def _utf8_len(text: str) -> int:
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


class OfflineQueue:
    """A bounded FIFO of encoded messages with retention and drop-oldest overflow.

    Every operation is O(1) amortised per item moved; memory is bounded by
    ``max_size`` items (and ``max_bytes`` bytes of text when given).
    """

    def __init__(self, max_size: int, retention: float, max_bytes: Optional[int] = None) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ConfigError(f"max_size must be an integer >= 1, got {max_size!r}")
        if (
            isinstance(retention, bool)
            or not isinstance(retention, (int, float))
            or math.isnan(retention)
            or retention <= 0
        ):
            raise ConfigError(f"retention must be > 0 seconds, got {retention!r}")
        if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1):
            raise ConfigError(f"max_bytes must be an integer >= 1 or None, got {max_bytes!r}")
        self.max_size = max_size
        self.retention = float(retention)
        self.max_bytes = max_bytes
        # plain tuples (text, enqueued_at, nbytes): cheaper than building QueuedItems per put
        self._items: Deque[Tuple[str, float, int]] = deque()
        self._bytes = 0
        self.dropped = 0
        self.expired = 0
        self.refused = 0
        self.total_put = 0
        #: when a list: the texts of dropped and expired messages are appended to it
        self.discards: Optional[List[str]] = None

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __repr__(self) -> str:
        return (
            f"OfflineQueue(size={len(self._items)}/{self.max_size}, bytes={self._bytes}"
            f"/{self.max_bytes}, dropped={self.dropped}, expired={self.expired})"
        )

    @property
    def size_bytes(self) -> int:
        """Total UTF-8 size of the queued texts."""
        return self._bytes

    def _popleft(self) -> None:
        item = self._items.popleft()
        self._bytes -= item[2]
        if self.discards is not None:
            self.discards.append(item[0])

    def put(self, text: str, now: float) -> int:
        """Queue ``text``; return how many older messages were dropped to make room.

        Expired messages are discarded first (counted in ``expired``, not ``dropped``).
        Raises :class:`QueueFullError` if ``text`` alone exceeds ``max_bytes``.
        """
        nbytes = len(text) if text.isascii() else _utf8_len(text)
        max_bytes = self.max_bytes
        if max_bytes is not None and nbytes > max_bytes:
            self.refused += 1
            raise QueueFullError(f"message of {nbytes} bytes exceeds the offline queue's max_bytes ({max_bytes})")
        items = self._items
        if items and now - items[0][1] > self.retention:
            self.expire(now)
        dropped = 0
        max_size = self.max_size
        # hot path (1e6 puts while offline): inline the bound checks
        discards = self.discards
        while items and (len(items) >= max_size or (max_bytes is not None and self._bytes + nbytes > max_bytes)):
            item = items.popleft()
            self._bytes -= item[2]
            if discards is not None:
                discards.append(item[0])
            dropped += 1
        items.append((text, now, nbytes))
        self._bytes += nbytes
        if dropped:
            self.dropped += dropped
        self.total_put += 1
        return dropped

    def expire(self, now: float) -> int:
        """Discard messages older than ``retention``; return how many."""
        items = self._items
        count = 0
        retention = self.retention
        while items and now - items[0][1] > retention:
            self._popleft()
            count += 1
        self.expired += count
        return count

    def drain_items(self, now: float) -> List[QueuedItem]:
        """Remove everything; return the unexpired items (with their queue times) in FIFO order."""
        items = self._items
        self._items = deque()
        self._bytes = 0
        retention = self.retention
        keep = [QueuedItem(*item) for item in items if now - item[1] <= retention]
        self.expired += len(items) - len(keep)
        if self.discards is not None and len(keep) != len(items):
            self.discards.extend(item[0] for item in items if now - item[1] > retention)
        return keep

    def peek(self, now: float) -> Optional[str]:
        """The oldest unexpired text, left in place (expired ones are discarded first)."""
        if self._items and now - self._items[0][1] > self.retention:
            self.expire(now)
        return self._items[0][0] if self._items else None

    def pop(self, now: float) -> Optional[QueuedItem]:
        """Remove and return the oldest unexpired item (a flush that goes one message at a time)."""
        if self._items and now - self._items[0][1] > self.retention:
            self.expire(now)
        if not self._items:
            return None
        item = self._items.popleft()
        self._bytes -= item[2]
        return QueuedItem(*item)

    def drain(self, now: float) -> List[str]:
        """Remove everything; return the unexpired texts in FIFO order."""
        return [item.text for item in self.drain_items(now)]

    def requeue_front(self, items: Sequence[Union[str, QueuedItem]], now: float) -> int:
        """Put back unsent messages in front of the queue, keeping their order.

        A :class:`QueuedItem` (from :meth:`drain_items`) keeps its original queue time,
        so retention is exact. A bare ``str`` (from :meth:`drain`) counts as queued at
        ``now``, clamped to no later than the current front message so the queue stays
        ordered by time. Bounds still hold: if the queue is now too full, the oldest
        messages (these, first) are dropped and counted; expired ones are discarded.
        Returns how many were dropped for room.
        """
        if not items:
            return 0
        stamp = now
        if self._items:
            stamp = min(stamp, self._items[0][1])
        restored: List[Tuple[str, float, int]] = []
        for entry in items:
            if isinstance(entry, QueuedItem):
                restored.append((entry.text, min(entry.enqueued_at, stamp), entry.nbytes))
            else:
                restored.append((entry, stamp, _utf8_len(entry)))
        # keep the queue time-ordered: an item may not be younger than the one behind it
        for i in range(len(restored) - 2, -1, -1):
            if restored[i][1] > restored[i + 1][1]:
                text, _, nbytes = restored[i]
                restored[i] = (text, restored[i + 1][1], nbytes)
        self._items.extendleft(reversed(restored))
        self._bytes += sum(item[2] for item in restored)
        self.expire(now)
        dropped = 0
        while len(self._items) > self.max_size or (self.max_bytes is not None and self._bytes > self.max_bytes):
            self._popleft()
            dropped += 1
        self.dropped += dropped
        return dropped

    def next_expiry(self) -> Optional[float]:
        """When the oldest message expires (``None`` when empty)."""
        if not self._items:
            return None
        return self._items[0][1] + self.retention

    def clear(self) -> int:
        """Discard everything (not counted as dropped); return how many."""
        count = len(self._items)
        self._items.clear()
        self._bytes = 0
        return count
