"""The bounded replay log of the reference backend (pure: no sockets, no threads, no clock).

Every event the backend publishes gets a sequence number ``seq`` (1, 2, 3, ... for the life of the
:class:`ReplayLog`, never reused, even after :meth:`ReplayLog.expire`). Events published without an id get
the id ``"e-<seq>"``. The log keeps the newest ``maxlen`` events; :meth:`ReplayLog.after` answers the
question a resuming client asks with ``Last-Event-ID``.
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from typing import Any, Deque, Dict, List, NamedTuple, Optional, Tuple

__all__ = ["LoggedEvent", "ReplayLog", "EVENT_ID_PREFIX"]

EVENT_ID_PREFIX = "e-"
_AUTO_ID = re.compile(r"^e-([0-9]{1,18})$")


class LoggedEvent(NamedTuple):
    """One event as it went on the wire: its sequence number, id, message and JSON text."""

    seq: int
    id: str
    message: Dict[str, Any]
    text: str


class ReplayLog:
    """Bounded, ordered log of events, indexed by id."""

    def __init__(self, maxlen: int = 10000) -> None:
        if maxlen < 0:
            raise ValueError("maxlen must be >= 0")
        self.maxlen = maxlen
        self._entries: Deque[LoggedEvent] = deque()
        self._index: Dict[str, int] = {}
        self._next_seq = 1
        self._expired_before = 1  # ids e-<n> with n below this were forgotten by expire()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def next_seq(self) -> int:
        """The sequence number the next event will get."""
        return self._next_seq

    def next_auto_id(self) -> str:
        """The id the next event gets when it has none of its own."""
        return f"{EVENT_ID_PREFIX}{self._next_seq}"

    @property
    def position(self) -> str:
        """The id to resume from to get every event logged from now on (``e-0``: before the first)."""
        if self._entries:
            return self._entries[-1].id
        return f"{EVENT_ID_PREFIX}{self._next_seq - 1}"

    def append(self, event_id: str, message: Dict[str, Any], text: str) -> LoggedEvent:
        seq = self._next_seq
        self._next_seq += 1
        entry = LoggedEvent(seq, event_id, message, text)
        if self.maxlen == 0:
            return entry
        self._entries.append(entry)
        self._index[event_id] = seq
        while len(self._entries) > self.maxlen:
            old = self._entries.popleft()
            if self._index.get(old.id) == old.seq:
                del self._index[old.id]
        return entry

    def expire(self) -> None:
        """Forget every logged event (the sequence counter carries on); every id issued so far now
        resumes with a gap."""
        self._expired_before = self._next_seq
        self._entries.clear()
        self._index.clear()

    def entries(self) -> List[LoggedEvent]:
        return list(self._entries)

    def after(self, last_event_id: str) -> Tuple[bool, List[LoggedEvent]]:
        """Events after ``last_event_id``: ``(gap, events)``.

        ``gap`` is False when the id is held: ``events`` are exactly the ones logged after it. For an id
        of ours (``e-<n>``, n already issued, ``e-0`` meaning "before the first") that is no longer held,
        ``events`` are the held events after n, and ``gap`` says whether some events after n are gone
        (pushed out of the bounded log, or forgotten by :meth:`expire`). For an id we never issued,
        ``gap`` is True and ``events`` is empty.
        """
        seq = self._index.get(last_event_id)
        first = self._entries[0].seq if self._entries else self._next_seq
        if seq is not None and seq >= first:
            return False, list(itertools.islice(self._entries, seq - first + 1, None))
        match = _AUTO_ID.match(last_event_id)
        if match is not None:
            n = int(match.group(1))
            if n < self._next_seq:
                gap = n < first - 1 or n < self._expired_before - 1 or (n > 0 and n < self._expired_before)
                return gap, [e for e in self._entries if e.seq > n]
        return True, []

    def find(self, event_id: str) -> Optional[LoggedEvent]:
        seq = self._index.get(event_id)
        if seq is None or not self._entries:
            return None
        return self._entries[seq - self._entries[0].seq]
