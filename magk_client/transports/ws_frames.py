"""A sans-I/O reader of RFC 6455 frames, client side: bytes in, messages and events out.

No socket, no clock, no thread: the transport feeds it what it read and asks it to decode every
complete frame buffered (:meth:`FrameReader.parse`), which returns how many bytes it needs to
make progress. Everything the server can get wrong is decided here:

* **Framing** (RFC 6455 5.2-5.5): a masked frame, reserved (RSV) bits, an unknown opcode, a
  fragmented or over-125-byte control frame, a continuation without a message, a new message
  inside a fragmented one, a 64-bit length with its top bit set: :class:`FrameViolation` with
  :data:`CLOSE_PROTOCOL_ERROR`.
* **Size**: the length in a frame header (for a fragmented message, the running total) is checked
  against ``max_message_size`` *before* the payload is awaited, for every length form including
  the 7-bit one (a limit below 126 bytes is honoured): :data:`CLOSE_MESSAGE_TOO_BIG`.
* **UTF-8** (RFC 6455 8.1): a *text* message must be UTF-8, checked strictly, a fragmented one as
  its fragments arrive (fail fast): :data:`CLOSE_INVALID_PAYLOAD`. A *binary* message has no such
  rule. Our protocol carries JSON text, and some servers send it in binary frames, so a binary
  message that is valid UTF-8 is decoded and returned like a text message; one that is not is an
  invalid message, not a broken connection: it is returned as an :class:`UndecodableMessage`
  (whole or fragmented; the rest of a fragmented one is still read and discarded), which the
  service drops, counts and reports like malformed JSON. The close reason must be UTF-8 too.
* **Control frames**: a ping's payload is kept in :attr:`FrameReader.ping` (only the latest one
  needs an answer, RFC 6455 5.5.3) for the caller to answer; a pong is ignored (the caller counts
  any bytes as liveness); a close frame ends parsing with :class:`CloseReceived`, after its code
  (RFC 6455 7.4) and reason are validated.

Messages complete before a violation or a close frame in the same buffer are already in ``out``
when the exception is raised.

Performance: ``parse`` is the reader thread's per-message hot path. A whole text frame of up to
65535 bytes takes a short branch (one header check, one slice, one decode); everything else takes
the general one. Small payloads are decoded from a slice, larger ones through a ``memoryview``
(no copy), fragments through an incremental decoder (a character may span fragments).
"""

from __future__ import annotations

import codecs
from typing import Any, List, Optional, Union

__all__ = [
    "CloseReceived",
    "FrameReader",
    "FrameViolation",
    "UndecodableMessage",
]

# opcodes (RFC 6455 5.2)
OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

# close codes (RFC 6455 7.4.1 and the IANA registry)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_NO_STATUS = 1005  # never on the wire: "the close frame had no code"
CLOSE_ABNORMAL = 1006  # never on the wire: "the connection ended without a close frame"
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_MANDATORY_EXTENSION = 1010
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_BAD_GATEWAY = 1014
CLOSE_TLS_HANDSHAKE = 1015  # never on the wire

#: codes a server may send in a close frame (1004-1006 and 1015 are reserved; 3000-4999 are open)
RECEIVABLE_CLOSE_CODES = frozenset(
    {
        CLOSE_NORMAL,
        CLOSE_GOING_AWAY,
        CLOSE_PROTOCOL_ERROR,
        CLOSE_UNSUPPORTED_DATA,
        CLOSE_INVALID_PAYLOAD,
        CLOSE_POLICY_VIOLATION,
        CLOSE_MESSAGE_TOO_BIG,
        CLOSE_MANDATORY_EXTENSION,
        CLOSE_INTERNAL_ERROR,
        CLOSE_SERVICE_RESTART,
        CLOSE_TRY_AGAIN_LATER,
        CLOSE_BAD_GATEWAY,
    }
)
#: codes that must never be sent in a close frame
UNSENDABLE_CLOSE_CODES = frozenset({1004, CLOSE_NO_STATUS, CLOSE_ABNORMAL, CLOSE_TLS_HANDSHAKE})
#: a control frame's payload limit (RFC 6455 5.5)
MAX_CONTROL_PAYLOAD = 125

Buffer = Union[bytes, bytearray]
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")
#: payloads up to this size are decoded from a slice (a copy is cheaper than a memoryview)
_SLICE_DECODE = 4096


class FrameViolation(Exception):
    """The server broke RFC 6455 or the size limit; ``code`` is the close code to answer with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class CloseReceived(Exception):
    """The server sent a valid close frame. ``code`` is None for an empty one (no status code);
    ``reason`` is the server's text, unredacted: never put it in an error unscrubbed."""

    def __init__(self, code: Optional[int], reason: str) -> None:
        super().__init__(code)  # the reason stays out of args (and so out of str/repr)
        self.code = code
        self.reason = reason


class UndecodableMessage(str):
    """A binary message that is not valid UTF-8, in place of its text.

    A ``str`` so the transport's batch stays a list of texts; its text is never valid JSON
    (it starts with ``<``), so the service's decoder rejects it like malformed JSON: dropped,
    counted and reported, and the connection stays up. ``size`` is the message's length in bytes.
    """

    size: int

    def __new__(cls, size: int) -> UndecodableMessage:
        self = super().__new__(cls, f"<binary message of {size} bytes that is not valid UTF-8>")
        self.size = size
        return self


class FrameReader:
    """Decodes server frames from a buffer. Used by one thread (the transport's reader).

    Buffer use: :meth:`feed` appends bytes read from the socket; for a frame much larger than a
    read, :meth:`exact_buffer` gives a buffer of the size needed with the unread bytes at its
    start, to be filled by ``recv_into`` and handed back with :meth:`load` (one copy of a big
    payload, not one per read).
    """

    def __init__(self, max_message_size: int) -> None:
        self.limit = int(max_message_size)
        self.buf: Buffer = b""
        self.pos = 0
        #: payload of the latest ping not yet answered (the caller answers and clears it)
        self.ping: Optional[bytes] = None
        # the fragmented message in progress
        self._kind = 0  # its opcode (OP_TEXT or OP_BINARY); 0 when there is none
        self._parts: List[str] = []
        self._size = 0
        self._decoder: Optional[codecs.IncrementalDecoder] = None
        self._bad = False  # a binary message found not to be UTF-8: the rest is discarded

    # ------------------------------------------------------------------ buffer

    @property
    def unread(self) -> int:
        """Bytes buffered and not yet decoded."""
        return len(self.buf) - self.pos

    def feed(self, data: bytes) -> None:
        """Append ``data`` (bytes read from the socket) to the buffer."""
        buf = self.buf
        self.buf = buf[self.pos :] + data if len(buf) > self.pos else data
        self.pos = 0

    def exact_buffer(self, size: int) -> bytearray:
        """A new ``size``-byte buffer starting with the :attr:`unread` bytes; fill the rest, then
        :meth:`load` it."""
        big = bytearray(size)
        big[: self.unread] = self.buf[self.pos :]
        return big

    def load(self, buffer: bytearray) -> None:
        """Replace the buffer with ``buffer`` (from :meth:`exact_buffer`, filled)."""
        self.buf = buffer
        self.pos = 0

    def take_ping(self) -> Optional[bytes]:
        """The payload of the latest unanswered ping (once), or None."""
        payload, self.ping = self.ping, None
        return payload

    # ------------------------------------------------------------------ frames

    def parse(self, out: List[Any]) -> int:
        """Append every complete message in the buffer to ``out`` (``str``; an
        :class:`UndecodableMessage` for a binary message that is not UTF-8) and return how many
        bytes, from the current position, are needed to make progress.

        Raises :class:`FrameViolation` or :class:`CloseReceived`; the messages before it are in
        ``out`` already. The reader is not used after either."""
        buf = self.buf
        pos = self.pos
        end = len(buf)
        append = out.append
        limit = self.limit
        kind = self._kind
        try:
            while True:
                avail = end - pos
                if avail < 2:
                    return 2
                b1 = buf[pos]
                length = buf[pos + 1]
                # hot path: a whole, unmasked text message of up to 65535 bytes
                if b1 == 0x81 and length <= 126 and not kind:
                    if length == 126:
                        if avail < 4:
                            return 4
                        length = (buf[pos + 2] << 8) | buf[pos + 3]
                        start = pos + 4
                    else:
                        start = pos + 2
                    if length > limit:
                        raise FrameViolation(CLOSE_MESSAGE_TOO_BIG, self._too_large(length))
                    stop = start + length
                    if stop > end:
                        return stop - pos
                    try:
                        append(buf[start:stop].decode("utf-8"))
                    except UnicodeDecodeError:
                        raise FrameViolation(CLOSE_INVALID_PAYLOAD, "invalid UTF-8 in a text message") from None
                    pos = stop
                    continue

                # general path
                if length & 0x80:
                    raise FrameViolation(CLOSE_PROTOCOL_ERROR, "the server sent a masked frame")
                if b1 & 0x70:
                    raise FrameViolation(CLOSE_PROTOCOL_ERROR, "the server set reserved bits (RSV) in a frame")
                opcode = b1 & 0x0F
                fin = bool(b1 & 0x80)
                header = 2
                if length == 126:
                    if avail < 4:
                        return 4
                    length = (buf[pos + 2] << 8) | buf[pos + 3]
                    header = 4
                elif length == 127:
                    if avail < 10:
                        return 10
                    length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                    header = 10
                    if length >> 63:
                        raise FrameViolation(CLOSE_PROTOCOL_ERROR, "frame length has its most significant bit set")
                if opcode >= OP_CLOSE:
                    _check_control(opcode, fin, length)
                else:
                    if opcode > OP_BINARY:
                        raise FrameViolation(CLOSE_PROTOCOL_ERROR, f"unknown data opcode {opcode}")
                    if opcode == OP_CONTINUATION:
                        if not kind:
                            raise FrameViolation(
                                CLOSE_PROTOCOL_ERROR, "continuation frame without a message to continue"
                            )
                        total = self._size + length
                    elif kind:
                        raise FrameViolation(CLOSE_PROTOCOL_ERROR, "new message before the fragmented one ended")
                    else:
                        total = length
                    if total > limit:
                        raise FrameViolation(CLOSE_MESSAGE_TOO_BIG, self._too_large(total))
                start = pos + header
                stop = start + length
                if stop > end:
                    return stop - pos
                pos = stop
                if opcode in (OP_TEXT, OP_BINARY):
                    if fin:
                        append(_whole(buf, start, stop, opcode))
                    else:
                        self._begin(buf, start, stop, opcode)
                        kind = opcode
                elif opcode == OP_CONTINUATION:
                    self._size += length
                    self._add(buf, start, stop, fin)
                    if fin:
                        append(self._finish())
                        kind = 0
                elif opcode == OP_PING:
                    self.ping = bytes(buf[start:stop])
                elif opcode == OP_CLOSE:
                    _close(bytes(buf[start:stop]))
                # OP_PONG (solicited or not): nothing to do; any bytes are liveness to the caller
        finally:
            self.pos = pos
            if pos >= end and pos:
                self.buf = b""
                self.pos = 0

    def _too_large(self, size: int) -> str:
        return f"message of {size} bytes is over max_message_size ({self.limit} bytes)"

    def _begin(self, buf: Buffer, start: int, stop: int, opcode: int) -> None:
        self._kind = opcode
        self._parts = []
        self._size = stop - start
        self._decoder = _Utf8Decoder(errors="strict")
        self._bad = False
        self._add(buf, start, stop, False)

    def _add(self, buf: Buffer, start: int, stop: int, final: bool) -> None:
        decoder = self._decoder
        if decoder is None:  # a binary message already found not to be UTF-8
            return
        with memoryview(buf) as view:
            part = view[start:stop]
            try:
                self._parts.append(decoder.decode(part, final))
            except UnicodeDecodeError:
                if self._kind == OP_TEXT:
                    raise FrameViolation(CLOSE_INVALID_PAYLOAD, "invalid UTF-8 in a text message") from None
                self._bad = True
                self._parts = []
                self._decoder = None
            finally:
                part.release()

    def _finish(self) -> str:
        parts, size, bad = self._parts, self._size, self._bad
        self._kind = 0
        self._parts = []
        self._size = 0
        self._decoder = None
        self._bad = False
        return UndecodableMessage(size) if bad else "".join(parts)


def _check_control(opcode: int, fin: bool, length: int) -> None:
    if opcode > OP_PONG:
        raise FrameViolation(CLOSE_PROTOCOL_ERROR, f"unknown control opcode {opcode}")
    if not fin:
        raise FrameViolation(CLOSE_PROTOCOL_ERROR, "fragmented control frame")
    if length > MAX_CONTROL_PAYLOAD:
        raise FrameViolation(CLOSE_PROTOCOL_ERROR, f"control frame longer than {MAX_CONTROL_PAYLOAD} bytes")


def _whole(buf: Buffer, start: int, stop: int, opcode: int) -> str:
    """The text of a whole (unfragmented) data message."""
    try:
        if stop - start <= _SLICE_DECODE:
            return buf[start:stop].decode("utf-8")
        with memoryview(buf) as view:
            part = view[start:stop]
            try:
                return str(part, "utf-8")
            finally:
                part.release()
    except UnicodeDecodeError:
        if opcode == OP_TEXT:
            raise FrameViolation(CLOSE_INVALID_PAYLOAD, "invalid UTF-8 in a text message") from None
        return UndecodableMessage(stop - start)


def _close(payload: bytes) -> None:
    """Validate a close frame's payload and raise :class:`CloseReceived` (or a violation)."""
    if not payload:
        raise CloseReceived(None, "")
    if len(payload) == 1:
        raise FrameViolation(CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload")
    code = (payload[0] << 8) | payload[1]
    if code not in RECEIVABLE_CLOSE_CODES and not 3000 <= code <= 4999:
        raise FrameViolation(CLOSE_PROTOCOL_ERROR, f"invalid close code {code} from the server")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameViolation(CLOSE_INVALID_PAYLOAD, "invalid UTF-8 in the close reason") from None
    raise CloseReceived(code, reason)
