"""The byte side of Server-Sent Events: a pure, incremental decoder.

:class:`SSEDecoder` takes the bytes of an event stream in chunks of any size and
returns the events they complete. It keeps sseclient-py as the parser of fields
(``data``, ``event``) and fixes, at the boundary, what sseclient-py gets wrong
against the WHATWG rules (HTML section 9.2, docs/sse.rst S5-S16):

- S9: the stream is decoded as UTF-8 with replacement (sseclient-py ends the stream
  on invalid UTF-8), incrementally, so a character split across chunks survives;
  exactly one leading U+FEFF is dropped (sseclient-py loses the first event).
- S10: CRLF and lone CR become LF before sseclient-py sees them
  (sseclient-py merges ``data:a\\n\\r\\ndata:b\\n\\n`` into one event). A CR ends
  its line at once, even at the end of a read (an event of CR-only lines is complete
  at its second CR); an LF at the start of the next read is then dropped, so a CRLF
  split across reads is still one line end.
- S16: sseclient-py is fed only complete events (up to the last blank line);
  an event cut off by the end of the stream is discarded, not dispatched.
- S5-S7: ``id`` and ``retry`` lines are read here, in stream order, because
  sseclient-py drops blocks without data (an ``id``-only block must still set
  the last event id), keeps ids holding NUL, forgets the id between events, and
  takes any ``retry`` value. The last-event-id buffer persists across events.
- docs/faults.rst row 18: the incomplete event held between chunks, and every complete
  event, is bounded by ``max_event_size``; past it :class:`MessageTooLargeError`.

sseclient-py is used through its public interface only, ``SSEClient(chunks).events()``.
Two paths parse the complete events of a read:

1. canonical: every block is exactly ``id: <non-empty>`` then one ``data:`` line
   (what nearly every server writes, the reference Backend included). The shape is
   checked with C-level bytes operations over the whole batch, the ids are read here
   and sseclient-py is fed only the ``data:`` lines, up to 16 short lines as one event
   (its data split on LF again), so its fixed cost per event is paid once per group.
2. full, for anything else: a first pass applies ``id``/``retry`` in stream order,
   then sseclient-py parses the blocks that carry data (a huge block of short lines
   is assembled here).

Both agree event for event (Hypothesis tests against a transcription of the
standard); they differ only in cost.

No sockets, no threads, no clock: the transport drives it, and tests feed it
directly (any chunking of the same bytes gives the same events).
"""

from __future__ import annotations

import codecs
from itertools import repeat
from typing import Any, Iterator, List, Optional, Tuple

from sseclient import SSEClient

from ..errors import MessageTooLargeError
from .base import SSEEvent

__all__ = ["SSEDecoder", "DEFAULT_MAX_EVENT_SIZE", "DEFAULT_QUADRATIC_BUDGET", "EVENT_SIZE_SLACK"]

DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024
#: bytes allowed on top of ``max_event_size`` for field names, ``id:`` and ``event:``
#: lines, so a data payload of exactly the limit still fits.
EVENT_SIZE_SLACK = 4096
#: lines x bytes of one block above which sseclient-py's per-line accumulation
#: (quadratic) is avoided; about 20 ms of copying.
DEFAULT_QUADRATIC_BUDGET = 1 << 26
#: ``retry:`` values with more digits than this are clamped (int() of a huge digit
#: string is slow, and over 4300 digits raises on Python 3.11+).
_MAX_RETRY_DIGITS = 12
_MAX_RETRY_MS = 10**_MAX_RETRY_DIGITS - 1

_LF = 0x0A
_new_tuple = tuple.__new__
_COLON = 0x3A
#: canonical data lines given to sseclient-py as one event (see _canonical_datas)
_GROUP_LINES = 16
_GROUP_BYTES = 16 * 1024


class SSEDecoder:
    """Incremental WHATWG event-stream decoder (bytes in, :class:`SSEEvent` out).

    ``feed(chunk)`` returns the events completed by ``chunk`` in stream order;
    ``finish()`` ends the stream (an incomplete event is discarded). Besides dispatched events, a block that
    changes the last event id without carrying data yields
    ``SSEEvent(data="", id=<new id or None>, dispatch=False)``.

    Attributes:
        last_event_id: the last-event-id buffer (``None`` when empty); persists
            across events and is what a reconnect sends as ``Last-Event-ID``.
        retry_ms: the last valid ``retry:`` value (all ASCII digits), or None.
    """

    def __init__(
        self,
        *,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        last_event_id: Optional[str] = None,
        quadratic_budget: int = DEFAULT_QUADRATIC_BUDGET,
    ) -> None:
        self.max_event_size = max_event_size
        #: a data block whose lines x bytes exceed this is assembled without sseclient-py
        self.quadratic_budget = quadratic_budget
        self._limit = max_event_size + EVENT_SIZE_SLACK
        self.last_event_id: Optional[str] = last_event_id or None
        self.retry_ms: Optional[int] = None
        #: set when an event went over the limit after earlier events of the same
        #: chunk were returned; raised by the next call.
        self.pending_error: Optional[MessageTooLargeError] = None
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._bom_pending = True
        self._skip_lf = False  # the last read ended with a CR: drop one LF next
        self._tail: List[bytes] = []
        self._tail_len = 0
        self._tail_ends_lf = False
        self._finished = False

    # -- public -------------------------------------------------------------------------

    def feed(self, data: bytes) -> List[SSEEvent]:
        """Take the next bytes of the stream; return the events they complete."""
        self._check()
        return self._feed_text(self._utf8.decode(data))

    def finish(self) -> List[SSEEvent]:
        """End of stream: a partial event is discarded (S16)."""
        self._check()
        events = self._feed_text(self._utf8.decode(b"", final=True))
        self._finished = True
        self._tail = []
        self._tail_len = 0
        return events

    @property
    def buffered(self) -> int:
        """Bytes of the incomplete event held between chunks."""
        return self._tail_len

    # -- internals ----------------------------------------------------------------------

    def _check(self) -> None:
        if self.pending_error is not None:
            err, self.pending_error = self.pending_error, None
            self._finished = True
            raise err
        if self._finished:
            raise RuntimeError("SSEDecoder used after finish() or an oversized event")

    def _too_large(self, size: int) -> MessageTooLargeError:
        return MessageTooLargeError(
            f"SSE event or line larger than max_message_size ({self.max_event_size} bytes; "
            f"got {size} bytes without an end)"
        )

    def _feed_text(self, text: str) -> List[SSEEvent]:
        if not text:
            return []
        if self._bom_pending:
            # The incremental decoder only emits a complete character, so a BOM split
            # across chunks is seen whole here. Exactly one is dropped (S9).
            self._bom_pending = False
            if text[0] == "\ufeff":
                text = text[1:]
        if self._skip_lf:
            # The last read ended with a CR, already taken as a line end: an LF now is the
            # second half of that CRLF, not a line of its own (S10).
            self._skip_lf = False
            if text[:1] == "\n":
                text = text[1:]
        if "\r" in text:
            # A CR is a line end at once, even the last character of a read (an event of
            # CR-only lines ends in CR CR and is complete then).
            self._skip_lf = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if not text:
            return []
        # Valid UTF-8 now (replacement applied), LF-only line ends.
        data = text.encode("utf-8")

        idx = data.rfind(b"\n\n")
        if idx >= 0:
            cut = idx + 2
        elif data[0] == _LF and self._tail_ends_lf:
            cut = 1  # the blank line straddles the chunk boundary
        else:
            cut = 0

        if not cut:
            self._tail.append(data)
            self._tail_len += len(data)
            self._tail_ends_lf = data[-1] == _LF
            if self._tail_len > self._limit:
                self._finished = True
                raise self._too_large(self._tail_len)
            return []

        if self._tail:
            self._tail.append(data[:cut])
            complete = b"".join(self._tail)
        else:
            complete = data[:cut] if cut < len(data) else data
        rest = data[cut:]
        self._tail = [rest] if rest else []
        self._tail_len = len(rest)
        self._tail_ends_lf = bool(rest) and rest[-1] == _LF

        events = self._parse(complete)
        if self.pending_error is None and self._tail_len > self._limit:
            self.pending_error = self._too_large(self._tail_len)
        if self.pending_error is not None and not events:
            self._check()
        return events

    def _parse(self, complete: bytes) -> List[SSEEvent]:
        """Parse whole events (``complete`` ends with a blank line).

        A first pass walks the blocks in stream order and applies ``id``/``retry``
        per the standard, noting which blocks carry ``data`` (sseclient-py yields
        exactly one event per such block, and none for the others). sseclient-py
        then parses the fields of those blocks and each event is paired with its
        block. sseclient-py accumulates a block line by line in O(lines x bytes), so
        a block past ``quadratic_budget`` is assembled here instead (a 16 MiB event
        of short lines would otherwise hold the reader thread for minutes).
        """
        canonical = self._parse_canonical(complete)
        if canonical is not None:
            return canonical
        limit = self._limit
        budget = self.quadratic_budget
        last_id = self.last_event_id
        # (block, has_data, is_big, id after the block, id field seen)
        plan: List[Tuple[bytes, bool, bool, Optional[str], bool]] = []
        any_big = False
        for block in complete.split(b"\n\n"):
            if not block:
                continue
            if len(block) > limit:
                self.pending_error = self._too_large(len(block))
                break
            has_data = False
            id_seen = False
            lines = block.split(b"\n")
            for line in lines:
                first = line[:1]
                if first == b"d":
                    if line[:5] == b"data:" or line == b"data":
                        has_data = True
                elif first == b"i":
                    if line[:3] == b"id:" or line == b"id":
                        value = line[3:]
                        if value[:1] == b" ":
                            value = value[1:]
                        if b"\x00" not in value:  # S6
                            last_id = value.decode("utf-8") or None  # S7: empty resets
                            id_seen = True
                elif first == b"r" and (line[:6] == b"retry:" or line == b"retry"):
                    value = line[6:]
                    if value[:1] == b" ":
                        value = value[1:]
                    if value.isdigit():  # S5: ASCII digits only (bytes.isdigit is ASCII)
                        self.retry_ms = int(value) if len(value) <= _MAX_RETRY_DIGITS else _MAX_RETRY_MS
            big = has_data and len(lines) * len(block) > budget
            any_big = any_big or big
            plan.append((block, has_data, big, last_id, id_seen))

        if any_big:
            small = [b for b, has_data, big, _, _ in plan if has_data and not big]
            source = b"\n\n".join(small) + b"\n\n" if small else b""
        else:
            source = complete
        parsed: Iterator[Any] = SSEClient(iter((source,))).events()

        out: List[SSEEvent] = []
        for block, has_data, big, block_id, id_seen in plan:
            if big:
                data, event = _assemble(block)
                out.append(SSEEvent(data, event, block_id))
            elif has_data:
                ev = next(parsed)
                out.append(SSEEvent(ev.data, ev.event, block_id))
            elif id_seen and block_id != self.last_event_id:
                out.append(SSEEvent("", "message", block_id, dispatch=False))
            self.last_event_id = block_id
        return out

    def _parse_canonical(self, complete: bytes) -> Optional[List[SSEEvent]]:
        """The shape nearly every server writes, checked in C over the whole batch: each
        block is exactly ``id:<non-empty>`` then one ``data:`` line. None for anything else.

        The ids are read here (as the full path does: this module owns ``id`` and ``retry``)
        and sseclient-py is given only the ``data:`` lines to parse (see _canonical_datas).
        """
        lines = complete.split(b"\n")
        count, extra = divmod(len(lines), 3)
        # ``complete`` ends with a blank line, so a batch of n canonical blocks is 3n + 1 lines.
        longest = max(map(len, lines))
        if extra != 1 or not count or b"\x00" in complete or longest > self.max_event_size:
            return None  # (an event near the size limit: the full path decides)
        end = 3 * count
        heads = b"\n" + b"\n".join(lines[0:end:3])
        bodies = lines[1:end:3]
        if (
            heads.count(b"\nid:") != count
            or lines[2:end:3].count(b"") != count
            or (b"\n" + b"\n".join(bodies)).count(b"\ndata:") != count
        ):
            return None
        # "\nid:" and "\n " can only match at the start of a line: drop the field name, then
        # one space (S12), from every head at once.
        ids = heads.replace(b"\nid:", b"\n").replace(b"\n ", b"\n").decode("utf-8").split("\n")
        del ids[0]
        if "" in ids:
            return None  # an empty id resets the buffer: the full path handles that
        datas = _canonical_datas(bodies, longest)
        if len(datas) != count:
            return None
        self.last_event_id = ids[-1]
        return list(map(_new_tuple, repeat(SSEEvent), zip(datas, repeat("message"), ids, repeat(True))))


def _canonical_datas(bodies: List[bytes], longest: int) -> List[str]:
    """The ``data`` of each single ``data:`` line in ``bodies``, parsed by sseclient-py.

    Up to :data:`_GROUP_LINES` lines go to sseclient-py as one event: per the standard (and
    sseclient-py) the data lines of a block are joined with LF, and a line holds no LF, so
    splitting that event's data on LF gives each line's value, exactly as one event per line
    would. sseclient-py's fixed cost per event (a generator step, an ``Event``, a
    ``logger.debug``) is then paid once per group. It accumulates a block in
    O(lines x bytes), so a group is kept under :data:`_GROUP_BYTES` bytes (long lines go
    one per event, as before).
    """
    per = min(_GROUP_LINES, _GROUP_BYTES // (longest + 1))
    if per < 2:
        return [ev.data for ev in SSEClient(iter((b"\n\n".join(bodies) + b"\n\n",))).events()]
    source = b"\n\n".join([b"\n".join(bodies[i : i + per]) for i in range(0, len(bodies), per)]) + b"\n\n"
    datas: List[str] = []
    for ev in SSEClient(iter((source,))).events():
        datas.extend(ev.data.split("\n"))
    return datas


def _assemble(block: bytes) -> Tuple[str, str]:
    """``data`` and event type of one block, in linear time (same rules as sseclient-py)."""
    parts: List[bytes] = []
    etype = b""
    for line in block.split(b"\n"):
        if not line or line[:1] == b":":
            continue
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            parts.append(value)
        elif name == b"event":
            etype = value
    return b"\n".join(parts).decode("utf-8"), etype.decode("utf-8") or "message"
