"""FrameReader (magk_client.transports.ws_frames) without a socket: bytes in, messages out.

The socket-level behaviour (answers on the wire, close codes sent) is in
test_transport_websocket.py; here every rule is checked on the decoder alone, including that the
result does not depend on how the bytes are cut into reads.
"""

from __future__ import annotations

import json
import struct
from typing import Any, List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from magk_client.codec import InvalidMessage, decode
from magk_client.testing.raw import ws_frame
from magk_client.transports.ws_frames import (
    CLOSE_INVALID_PAYLOAD,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_PROTOCOL_ERROR,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    CloseReceived,
    FrameReader,
    FrameViolation,
    UndecodableMessage,
)


def run(data: bytes, limit: int = 1 << 24, chunk: int = 0) -> Tuple[List[Any], FrameReader, int]:
    """Feed ``data`` (all at once, or ``chunk`` bytes per read) and parse after each read."""
    reader = FrameReader(limit)
    out: List[Any] = []
    need = reader.parse(out)
    pieces = [data] if not chunk else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        reader.feed(piece)
        need = reader.parse(out)
    return out, reader, need


def test_every_length_form_and_the_bytes_needed() -> None:
    for size in (0, 1, 125, 126, 65535, 65536, 70000):
        payload = b"a" * size
        out, reader, need = run(ws_frame(OP_TEXT, payload) + ws_frame(OP_TEXT, b"next"))
        assert out == ["a" * size, "next"] and need == 2 and reader.unread == 0
    assert run(b"\x81")[2] == 2
    assert run(b"\x81\x7e\x01")[2] == 4  # 16-bit length incomplete
    assert run(b"\x82\x7f\x00\x00")[2] == 10  # 64-bit length incomplete (general path)
    assert run(ws_frame(OP_TEXT, b"x" * 300)[:50])[2] == 304  # the whole frame, from its start
    assert run(ws_frame(OP_BINARY, b"x" * 70000)[:20])[2] == 70010


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("size", [1, 100, 126, 65536])
def test_limit_is_checked_from_the_header_for_every_length_form(opcode: int, size: int) -> None:
    limit = size - 1
    assert run(ws_frame(opcode, b"x" * limit), limit=limit)[0] == ["x" * limit]  # at the limit: fine
    header = ws_frame(opcode, b"x" * size)[:-size]  # over it: refused before any payload arrived
    with pytest.raises(FrameViolation) as info:
        run(header, limit=limit)
    assert info.value.code == CLOSE_MESSAGE_TOO_BIG
    assert str(size) in str(info.value)


def test_limit_counts_a_fragmented_message_cumulatively() -> None:
    ok = ws_frame(OP_TEXT, b"a" * 60, fin=False) + ws_frame(OP_CONTINUATION, b"b" * 40)
    assert run(ok, limit=100)[0] == ["a" * 60 + "b" * 40]
    for first in (OP_TEXT, OP_BINARY):
        with pytest.raises(FrameViolation) as info:
            run(ws_frame(first, b"a" * 60, fin=False) + ws_frame(OP_CONTINUATION, b"b" * 41)[:2], limit=100)
        assert info.value.code == CLOSE_MESSAGE_TOO_BIG


VIOLATIONS = {
    "masked": (ws_frame(OP_TEXT, b"x", masked=True), CLOSE_PROTOCOL_ERROR),
    "rsv": (ws_frame(OP_TEXT, b"x", rsv=2), CLOSE_PROTOCOL_ERROR),
    "top length bit": (b"\x82\x7f" + b"\x80" + b"\0" * 7, CLOSE_PROTOCOL_ERROR),
    "unknown data opcode": (ws_frame(3, b"x"), CLOSE_PROTOCOL_ERROR),
    "unknown control opcode": (ws_frame(0xB), CLOSE_PROTOCOL_ERROR),
    "fragmented control": (ws_frame(OP_PING, b"p", fin=False), CLOSE_PROTOCOL_ERROR),
    "long control": (ws_frame(OP_PONG, b"p" * 126), CLOSE_PROTOCOL_ERROR),
    "lone continuation": (ws_frame(OP_CONTINUATION, b"x"), CLOSE_PROTOCOL_ERROR),
    "message inside fragments": (ws_frame(OP_BINARY, b"a", fin=False) + ws_frame(OP_TEXT, b"b"), CLOSE_PROTOCOL_ERROR),
    "text not utf-8": (ws_frame(OP_TEXT, b"\xff"), CLOSE_INVALID_PAYLOAD),
    "long text not utf-8": (ws_frame(OP_TEXT, b"\xc3" * 5000), CLOSE_INVALID_PAYLOAD),
    "text truncated at the end": (ws_frame(OP_TEXT, b"a", fin=False) + ws_frame(OP_CONTINUATION, b"\xe2\x82"),
                                  CLOSE_INVALID_PAYLOAD),
    "1-byte close": (ws_frame(OP_CLOSE, b"\x03"), CLOSE_PROTOCOL_ERROR),
    "close code 1005": (ws_frame(OP_CLOSE, struct.pack("!H", 1005)), CLOSE_PROTOCOL_ERROR),
    "close code 2999": (ws_frame(OP_CLOSE, struct.pack("!H", 2999)), CLOSE_PROTOCOL_ERROR),
    "close reason not utf-8": (ws_frame(OP_CLOSE, struct.pack("!H", 1000) + b"\xff"), CLOSE_INVALID_PAYLOAD),
}


@pytest.mark.parametrize("name", list(VIOLATIONS))
def test_violations_carry_their_close_code_after_the_messages_before(name: str) -> None:
    data, code = VIOLATIONS[name]
    reader = FrameReader(1 << 20)
    reader.feed(ws_frame(OP_TEXT, b"before") + data)
    out: List[Any] = []
    with pytest.raises(FrameViolation) as info:
        reader.parse(out)
    assert info.value.code == code
    assert out == ["before"]


def test_text_fragments_fail_fast_on_bad_utf8() -> None:
    """The bad fragment is refused before the message's last fragment arrives."""
    with pytest.raises(FrameViolation) as info:
        run(ws_frame(OP_TEXT, b"ab", fin=False) + ws_frame(OP_CONTINUATION, b"\xed\xa0\x80", fin=False))
    assert info.value.code == CLOSE_INVALID_PAYLOAD


def test_binary_not_utf8_is_an_undecodable_message_and_parsing_goes_on() -> None:
    word = "héllo ✓".encode()
    cut = word.index("é".encode()) + 1
    data = (
        ws_frame(OP_BINARY, b"\xfe" * 125)
        + ws_frame(OP_BINARY, b"\xfe" * 5000)  # decoded through a memoryview
        + ws_frame(OP_BINARY, b"\xff", fin=False)
        + ws_frame(OP_PING, b"p")
        + ws_frame(OP_CONTINUATION, b"valid but too late", fin=False)
        + ws_frame(OP_CONTINUATION, b"!")
        + ws_frame(OP_BINARY, b"ab", fin=False)
        + ws_frame(OP_CONTINUATION, b"\xe2\x82")  # truncated character at the end
        + ws_frame(OP_BINARY, word[:cut], fin=False)
        + ws_frame(OP_CONTINUATION, word[cut:])
        + ws_frame(OP_BINARY, b"")
        + ws_frame(OP_TEXT, b"after")
    )
    for chunk in (0, 1, 7):
        out, reader, _ = run(data, chunk=chunk)
        assert out[4:] == ["héllo ✓", "", "after"]
        assert [type(x) for x in out[:4]] == [UndecodableMessage] * 4
        assert [x.size for x in out[:4]] == [125, 5000, 1 + 18 + 1, 4]
        assert reader.take_ping() == b"p" and reader.take_ping() is None


def test_an_undecodable_message_is_never_json_and_the_codec_rejects_it() -> None:
    message = UndecodableMessage(12)
    assert isinstance(message, str) and message.size == 12 and "12 bytes" in message
    with pytest.raises(ValueError):
        json.loads(message)
    with pytest.raises(InvalidMessage):
        decode(message)


def test_binary_utf8_json_is_returned_like_text() -> None:
    envelope = b'{"type":"node_log","id":"e-1","data":{}}'
    out, _, _ = run(ws_frame(OP_BINARY, envelope) + ws_frame(OP_BINARY, envelope[:5], fin=False)
                    + ws_frame(OP_CONTINUATION, envelope[5:]))
    assert out == [envelope.decode()] * 2
    assert type(out[0]) is str and decode(out[0]).id == "e-1"


def test_ping_keeps_the_latest_payload_and_pongs_are_ignored() -> None:
    out, reader, _ = run(ws_frame(OP_PING, b"1") + ws_frame(OP_PONG, b"x") + ws_frame(OP_PING, b"2") + ws_frame(OP_TEXT, b"t"))
    assert out == ["t"]
    assert reader.ping == b"2"
    assert reader.take_ping() == b"2" and reader.ping is None


@pytest.mark.parametrize(("payload", "code", "reason"), [
    (b"", None, ""),
    (struct.pack("!H", 1000), 1000, ""),
    (struct.pack("!H", 4401) + "bye ✓ tok-SECRET".encode(), 4401, "bye ✓ tok-SECRET"),
])
def test_close_frames(payload: bytes, code: Optional[int], reason: str) -> None:
    with pytest.raises(CloseReceived) as info:
        run(ws_frame(OP_TEXT, b"last") + ws_frame(OP_CLOSE, payload))
    assert info.value.code == code and info.value.reason == reason
    assert "SECRET" not in str(info.value) and "SECRET" not in repr(info.value)  # reason kept out of args


def test_exact_buffer_keeps_the_unread_bytes() -> None:
    data = ws_frame(OP_TEXT, b"z" * 300_000)
    reader = FrameReader(1 << 20)
    reader.feed(data[:100])
    out: List[Any] = []
    need = reader.parse(out)
    assert need == len(data) and reader.unread == 100
    big = reader.exact_buffer(need)
    assert len(big) == need and big[:100] == data[:100]
    big[100:] = data[100:]
    reader.load(big)
    assert reader.parse(out) == 2 and out == ["z" * 300_000] and reader.unread == 0


_FRAMES = st.one_of(
    st.text(max_size=300).map(lambda s: ws_frame(OP_TEXT, s.encode())),
    st.binary(max_size=300).map(lambda b: ws_frame(OP_BINARY, b)),
    st.binary(max_size=125).map(lambda b: ws_frame(OP_PING, b)),
    st.lists(st.text(max_size=40), min_size=2, max_size=4).map(
        lambda parts: b"".join(
            ws_frame(OP_TEXT if i == 0 else OP_CONTINUATION, p.encode(), fin=i == len(parts) - 1)
            for i, p in enumerate(parts)
        )
    ),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_FRAMES, max_size=12), st.integers(min_value=1, max_value=64))
def test_result_does_not_depend_on_how_reads_cut_the_bytes(frames: List[bytes], chunk: int) -> None:
    data = b"".join(frames)
    whole, _, need = run(data)
    pieces, _, need_pieces = run(data, chunk=chunk)
    assert pieces == whole and [type(x) for x in pieces] == [type(x) for x in whole]
    assert need == need_pieces == 2
