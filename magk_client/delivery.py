"""Exactly-once bookkeeping for resume (pure).

The server delivers at least once: after a reconnect it replays the events after
``Last-Event-ID``, and a replay may overlap what we already delivered. The
:class:`DeliveryTracker` remembers the ids of the last ``window`` accepted
events (a deque for age plus a set for O(1) lookup: bounded memory) and refuses
an id seen among them, so each event reaches the callbacks once. It also keeps
``last_event_id``, the id to send as ``Last-Event-ID`` on the next connection.

Not thread-safe: the service calls it from one thread (or under its lock).
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Optional, Set

from .errors import ConfigError

__all__ = ["DeliveryTracker"]


class DeliveryTracker:
    """De-duplicates events by id within a sliding window of the last ``window`` ids.

    * :meth:`accept` returns False for an id accepted among the last ``window``
      accepted ids (a replayed duplicate, counted in ``duplicates``), True otherwise,
      and records it. An id older than the window is accepted again: the window
      must cover the largest replay the server may send.
    * Messages without an id (``None`` or ``""``) are always accepted and change
      nothing (not ``last_event_id``, not the window).
    * ``last_event_id`` is the id of the last accepted event; a duplicate never
      moves it back. :meth:`set_last_event_id` sets it directly (an SSE id-only
      block; ``None`` or ``""`` clears it, as SSE ``id:`` with an empty value does).
    """

    __slots__ = ("_order", "_seen", "accepted", "duplicates", "last_event_id", "window")

    def __init__(self, window: int) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ConfigError(f"window must be an integer >= 1, got {window!r}")
        self.window = window
        self._order: Deque[str] = deque()
        self._seen: Set[str] = set()
        self.last_event_id: Optional[str] = None
        self.duplicates = 0
        self.accepted = 0

    def accept(self, event_id: Optional[str]) -> bool:
        """True if the event is new (and record it); False for a duplicate. O(1)."""
        if not event_id:
            return True
        seen = self._seen
        if event_id in seen:
            self.duplicates += 1
            return False
        order = self._order
        if len(order) >= self.window:
            seen.discard(order.popleft())
        order.append(event_id)
        seen.add(event_id)
        self.last_event_id = event_id
        self.accepted += 1
        return True

    def seen(self, event_id: Optional[str]) -> bool:
        """Whether ``event_id`` is among the remembered ids (no side effect)."""
        return bool(event_id) and event_id in self._seen

    def set_last_event_id(self, value: Optional[str]) -> None:
        """Set the id to resume from; ``None`` or ``""`` means "no id" (header omitted)."""
        self.last_event_id = value or None

    def __len__(self) -> int:
        """How many ids are remembered (<= window)."""
        return len(self._order)

    def clear(self) -> None:
        """Forget every remembered id and ``last_event_id`` (a fresh session)."""
        self._order.clear()
        self._seen.clear()
        self.last_event_id = None
