"""The WHATWG event-stream rules S1-S17 (docs/sse.rst), one test per rule.

Each rule is shown over a real socket: a raw HTTP server on 127.0.0.1 sends the exact
framing, and the SSE transport parses it. Chunk-exact cases (a CRLF or a BOM split
across reads) are also fed straight to the pure decoder, and Hypothesis checks that
events do not depend on how the bytes are chunked and agree with a reference parser.
"""

from __future__ import annotations

import threading
import time
from typing import List, Optional, Sequence, Tuple

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from magk_client.errors import (
    MagkConnectionError,
    MagkTimeoutError,
    ProtocolError,
    ServerError,
    TransportClosed,
)
from magk_client.testing.raw import RawServer, Step, sse
from magk_client.transports.base import SSEEvent, TransportOptions
from magk_client.transports.sse import SSETransport
from magk_client.transports.sse_stream import SSEDecoder

pytestmark = pytest.mark.timeout(30)

Ev = Tuple[str, str, Optional[str]]


def stream(
    steps: Sequence[Step], *, chunked: bool = False, last_event_id: Optional[str] = None, **kw: object
) -> Tuple[List[SSEEvent], SSETransport, RawServer]:
    """Serve ``steps`` once, read the stream to its end; all items (dispatch or not)."""
    srv = RawServer([sse(steps, chunked=chunked, **kw)])  # type: ignore[arg-type]
    t = SSETransport(TransportOptions(url=srv.url(), read_timeout=5.0))
    items: List[SSEEvent] = []
    try:
        t.open(last_event_id=last_event_id)
        with pytest.raises(TransportClosed) as ei:
            while True:
                batch = t.receive()
                assert batch, "receive() must never return an empty list"
                items.extend(batch)  # type: ignore[arg-type]
        assert not ei.value.terminal  # S3: an end of body is reconnectable
    finally:
        t.close()
        srv.close()
    return items, t, srv


def events(steps: Sequence[Step], **kw: object) -> List[Ev]:
    items, _, _ = stream(steps, **kw)
    return [(e.data, e.event, e.id) for e in items if e.dispatch]


def decode(chunks: Sequence[bytes]) -> List[Ev]:
    d = SSEDecoder()
    out: List[SSEEvent] = []
    for c in chunks:
        out += d.feed(c)
    out += d.finish()
    return [(e.data, e.event, e.id) for e in out if e.dispatch]


# --- S1 / S2: response validation ------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "ctype", "exc", "terminal"),
    [
        (204, "text/event-stream", TransportClosed, True),
        (205, "text/event-stream", ProtocolError, True),
        (210, "text/event-stream", ProtocolError, True),
        (299, "text/event-stream", ProtocolError, True),
        (404, "text/event-stream", ProtocolError, True),
        (410, "text/event-stream", ProtocolError, True),
        # The SDK deliberately retries 5xx (docs/sse.rst, "Where the SDK differs from a browser").
        (503, "text/event-stream", ServerError, False),
        (200, "text/x-bogus", ProtocolError, True),
        (200, "text/html", ProtocolError, True),
        (200, None, ProtocolError, True),
    ],
)
def test_s1_non_200_or_wrong_content_type_fails_the_connection(
    status: int, ctype: Optional[str], exc: type, terminal: bool
) -> None:
    with RawServer([sse([b"data: x\n\n"], status=status, content_type=ctype)]) as srv:
        t = SSETransport(TransportOptions(url=srv.url(), read_timeout=5.0))
        with pytest.raises(MagkConnectionError) as ei:
            t.open()
        assert type(ei.value) is exc
        assert ei.value.terminal is terminal
        assert ei.value.status == status
        assert len(srv.requests) == 1  # no retry inside the transport
        t.close()


@pytest.mark.parametrize("ctype", ["text/event-stream; charset=utf-8", "Text/Event-Stream ;charset=UTF-8"])
def test_s1_content_type_parameters_are_allowed(ctype: str) -> None:
    assert events([b"data: ok\n\n"], content_type=ctype) == [("ok", "message", None)]


def test_s2_204_means_stop_reconnecting() -> None:
    with RawServer([sse([], status=204)]) as srv:
        t = SSETransport(TransportOptions(url=srv.url()))
        with pytest.raises(TransportClosed) as ei:
            t.open()
        assert ei.value.terminal and ei.value.status == 204
        assert "do not reconnect" in str(ei.value)


# --- S3 / S4: end of body, reconnection time --------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
def test_s3_clean_end_of_body_is_reconnectable(chunked: bool) -> None:
    items, t, _ = stream([b"id: 1\ndata: a\n\n"], chunked=chunked)
    assert [(e.data, e.id) for e in items] == [("a", "1")]
    assert t.last_event_id == "1"  # what the reconnect sends


def test_s4_reconnection_time_is_reported_for_the_next_attempt() -> None:
    # The transport reports the server's reconnection time; the service waits at least that.
    items, t, _ = stream([b"retry: 3000\ndata: a\n\n"])
    assert t.retry_ms == 3000
    assert [e.data for e in items] == ["a"]


# --- S5: retry ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"12x", None),
        (b"-1", None),
        (b"1.5", None),
        (b"0x10", None),
        (b"", None),
        (b" 5", None),
        (b"0500", 500),
        (b"0", 0),
        (b"7", 7),
    ],
)
def test_s5_retry_only_if_all_ascii_digits(value: bytes, expected: Optional[int]) -> None:
    items, t, _ = stream([b"retry: " + value + b"\n\ndata: after\n\n"])
    assert t.retry_ms == expected
    assert [e.data for e in items if e.dispatch] == ["after"]


def test_s5_invalid_retry_keeps_the_previous_value() -> None:
    _, t, _ = stream([b"retry: 250\n\nretry: 1.5\n\nretry: \xd9\xa3\n\n"])  # U+0663 ARABIC-INDIC THREE
    assert t.retry_ms == 250


# --- S6 / S7 / S8: last event id ---------------------------------------------------------


@pytest.mark.parametrize("value", [b"a\x00b", b"\x00\x00", b"x\x00", b"\x00x", b" \x00"])
def test_s6_id_with_nul_is_ignored(value: bytes) -> None:
    got = events([b"id: good\ndata: 1\n\nid: " + value + b"\ndata: 2\n\n"])
    assert got == [("1", "message", "good"), ("2", "message", "good")]


def test_s7_last_event_id_persists_and_id_only_block_updates_it() -> None:
    items, t, _ = stream([b"id: 1\ndata: a\n\ndata: b\n\nid: 7\n\n"])
    assert [(e.data, e.id, e.dispatch) for e in items] == [
        ("a", "1", True),
        ("b", "1", True),  # inherited, per the standard
        ("", "7", False),  # no callback, but the service learns the resume id
    ]
    assert t.last_event_id == "7"
    # ... and the next connection sends it
    with RawServer([sse([])]) as srv:
        t2 = SSETransport(TransportOptions(url=srv.url()))
        t2.open(last_event_id=t.last_event_id)
        assert srv.wait_requests(1)[0].headers["last-event-id"] == "7"
        t2.close()


def test_s7_empty_id_resets_and_the_header_is_then_omitted() -> None:
    items, t, _ = stream([b"id: 3\ndata: a\n\nid:\n\n"])
    assert [(e.id, e.dispatch) for e in items] == [("3", True), (None, False)]
    assert t.last_event_id is None
    with RawServer([sse([])]) as srv:
        t2 = SSETransport(TransportOptions(url=srv.url()))
        t2.open(last_event_id=t.last_event_id)
        assert "last-event-id" not in srv.wait_requests(1)[0].headers
        t2.close()


def test_s7_the_resumed_id_is_inherited_by_events_without_id() -> None:
    assert events([b"data: x\n\n"], last_event_id="41") == [("x", "message", "41")]


@pytest.mark.parametrize(("lei", "expected"), [(None, None), ("", None), ("e-42", "e-42"), ("é-☃", "é-☃")])
def test_s8_last_event_id_header_only_if_non_empty(lei: Optional[str], expected: Optional[str]) -> None:
    with RawServer([sse([])]) as srv:
        t = SSETransport(TransportOptions(url=srv.url()))
        t.open(last_event_id=lei)
        req = srv.wait_requests(1)[0]
        assert req.headers.get("last-event-id") == expected  # the server decodes as UTF-8
        t.close()


# --- S9: UTF-8 and BOM -------------------------------------------------------------------

BOM = b"\xef\xbb\xbf"


def test_s9_one_leading_bom_is_ignored() -> None:
    assert events([BOM + b"data:1\n\n"]) == [("1", "message", None)]


def test_s9_double_bom_loses_the_first_event() -> None:
    assert events([BOM + BOM + b"data:1\n\ndata:2\n\n"]) == [("2", "message", None)]


def test_s9_bom_is_only_stripped_at_the_start() -> None:
    assert events([b"data:1\n\n" + BOM + b"data:2\n\n"]) == [("1", "message", None)]


@pytest.mark.parametrize("split", [1, 2, 3])
def test_s9_bom_split_across_reads(split: int) -> None:
    raw = BOM + b"data:1\n\n"
    assert decode([raw[:split], raw[split:]]) == [("1", "message", None)]


def test_s9_invalid_utf8_is_replaced_not_fatal() -> None:
    got = events([b"data: a\xffb\n\n", b"data: \xe2\x82\n\n", b"data: ok \xe2\x82\xac\n\n"])
    assert got == [("a\ufffdb", "message", None), ("\ufffd", "message", None), ("ok \u20ac", "message", None)]


def test_s9_multibyte_character_split_across_chunks() -> None:
    assert events([b"data: \xe2", b"\x82", b"\xac\n\n"], chunked=True) == [("\u20ac", "message", None)]


# --- S10: line terminators ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"data:a\n\r\ndata:b\n\n", ["a", "b"]),
        (b"data:a\r\n\r\ndata:b\r\n\r\n", ["a", "b"]),
        (b"data:a\r\rdata:b\r\r", ["a", "b"]),
        (b"data:a\rdata:b\n\r\n", ["a\nb"]),
        (b"data:a\r\n\rdata:b\n\n", ["a", "b"]),
        (b"data:a\r\ndata:b\rdata:c\n\n", ["a\nb\nc"]),
    ],
)
@pytest.mark.parametrize("chunked", [False, True])
def test_s10_cr_lf_and_crlf_freely_mixed(raw: bytes, expected: List[str], chunked: bool) -> None:
    got = events([raw], chunked=chunked)
    assert [d for d, _, _ in got] == expected


def test_s10_crlf_split_across_chunks_is_one_terminator() -> None:
    # Over the socket (chunk boundaries may merge; the result must be the same) ...
    assert events([b"data:a\r", b"\ndata:b\r", b"\n\r", b"\n"], chunked=True) == [("a\nb", "message", None)]
    # ... and chunk-exact through the decoder: a CR held at a chunk end is not a second line end.
    assert decode([b"data:a\r", b"\ndata:b\r", b"\n\r", b"\n"]) == [("a\nb", "message", None)]
    assert decode([b"data:a\r", b"\r"]) == [("a", "message", None)]  # CR CR = line end + blank line
    assert decode([b"data:a\n\r"]) == [("a", "message", None)]  # CR at EOF ends its line


def test_s10_an_event_ending_in_a_lone_cr_is_dispatched_at_once() -> None:
    # CR-only line ends: every event ends in CR CR. The second CR is a line end at once; it must
    # not wait for the next bytes to show whether an LF follows (issue 8 item 19).
    d = SSEDecoder()
    assert [e.data for e in d.feed(b"data: event 1\r\r")] == ["event 1"]
    # The LF that does follow a CR at the end of a read is the second half of that CRLF, not a
    # blank line of its own: no empty event, no merge with the next event.
    assert d.feed(b"\ndata: event 2\r") == []
    assert [e.data for e in d.feed(b"\n\r\n")] == ["event 2"]
    assert [e.data for e in d.feed(b"data: 3\r")] == []
    assert [e.data for e in d.feed(b"\r")] == ["3"]


@pytest.mark.parametrize("chunked", [False, True], ids=["close-delimited", "chunked"])
def test_s10_cr_only_events_arrive_while_the_stream_stays_open(chunked: bool) -> None:
    # The stream is NOT ended: each event must arrive on its own, while the server waits for
    # the client to have it before sending the next one.
    got_first = threading.Event()
    srv = RawServer(
        [sse([b"id: 1\rdata: event 1\r\r", lambda: got_first.wait(5), b"data: event 2\r\r"], chunked=chunked, finish="hold")]
    )
    t = SSETransport(TransportOptions(url=srv.url(), read_timeout=2.0))
    try:
        t.open()
        first = t.receive()
        got_first.set()
        assert [(e.data, e.id) for e in first] == [("event 1", "1")]
        assert [(e.data, e.id) for e in t.receive()] == [("event 2", "1")]
    finally:
        got_first.set()
        t.close()
        srv.close()


# --- S11: comments and blank lines -------------------------------------------------------


def test_s11_comments_never_reach_the_user_but_count_as_liveness() -> None:
    srv = RawServer([sse([b": ping\n", b":\n", b": another\n\n", b"data: x\n\n"], chunked=True, finish="hold")])
    t = SSETransport(TransportOptions(url=srv.url(), read_timeout=5.0))
    try:
        t.open()
        before = t.last_activity
        batch = t.receive()
        assert [(e.data, e.dispatch) for e in batch] == [("x", True)]  # type: ignore[union-attr]
        assert t.last_activity > before
    finally:
        t.close()
        srv.close()


# --- S12 - S15: fields --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"data:  x\n\n", [" x"]),
        (b"data: x\n\n", ["x"]),
        (b"data:x\n\n", ["x"]),
        (b"data:a:b\n\n", ["a:b"]),
        (b"data: a: b\n\n", ["a: b"]),
    ],
)
def test_s12_split_at_first_colon_and_remove_one_space(raw: bytes, expected: List[str]) -> None:
    assert [d for d, _, _ in events([raw])] == expected


def test_s13_line_without_colon_is_a_field_name_with_empty_value() -> None:
    assert events([b"data\ndata\n\n"]) == [("\n", "message", None)]
    assert events([b"data\n\n"]) == [("", "message", None)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"data:\n\n", [""]),
        (b"event: x\n\n", []),
        (b"id: 1\nevent: x\n\n", []),
        (b"data: a\ndata: b\n\n", ["a\nb"]),
        (b"data: a\ndata:\n\n", ["a\n"]),
        (b"\n\n\ndata: a\n\n\n\n", ["a"]),
    ],
)
def test_s14_data_lines_joined_empty_buffer_not_dispatched(raw: bytes, expected: List[str]) -> None:
    assert [d for d, _, _ in events([raw])] == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"event: update\ndata: 1\n\n", [("1", "update")]),
        (b"event:\ndata: 1\n\n", [("1", "message")]),
        (b"event: a\nevent: b\ndata: 1\n\n", [("1", "b")]),
        (b"event: a\ndata: 1\n\ndata: 2\n\n", [("1", "a"), ("2", "message")]),  # type resets
        (b"Data: x\n\n", []),
        (b"DATA: x\ndata: y\n\n", [("y", "message")]),
        (b"Event: z\ndata: y\n\n", [("y", "message")]),
        (b"foo: bar\ndata: y\nbaz\n\n", [("y", "message")]),
        (b" data: x\n\n", []),
    ],
)
def test_s15_event_type_unknown_fields_case_sensitive(raw: bytes, expected: List[Tuple[str, str]]) -> None:
    assert [(d, e) for d, e, _ in events([raw])] == expected


# --- S16: end of stream mid-event --------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("tail", [b"data: partial", b"data: partial\n", b"id: 9\ndata: p\n"])
def test_s16_event_cut_by_end_of_stream_is_discarded(chunked: bool, tail: bytes) -> None:
    items, t, _ = stream([b"id: 1\ndata: whole\n\n", tail], chunked=chunked)
    assert [(e.data, e.id) for e in items] == [("whole", "1")]
    assert t.last_event_id == "1"  # the id of a discarded event is not taken either


# --- S17: keep-alive vs read timeout ------------------------------------------------------


def test_s17_keepalive_comments_keep_a_stream_alive_and_silence_times_out() -> None:
    ticks = [b": keep-alive\n"] * 6
    paced: List[Step] = []
    for tick in ticks:  # a server's keep-alive schedule: one comment every 0.1 s
        paced += [tick, lambda: time.sleep(0.1)]
    srv = RawServer([sse([*paced, b"data: late\n\n"], chunked=True, finish="hold")])
    t = SSETransport(TransportOptions(url=srv.url(), read_timeout=0.4))
    try:
        t.open()
        start = time.monotonic()
        # 0.6 s of comments then an event: longer than the read timeout in total, never
        # silent for longer than it.
        assert [e.data for e in t.receive()] == ["late"]  # type: ignore[union-attr]
        assert time.monotonic() - start >= 0.5
        # Then the server goes silent: detected after read_timeout.
        with pytest.raises(MagkTimeoutError):
            t.receive()
    finally:
        t.close()
        srv.close()


# --- chunking invariance and a reference parser (docs/faults.rst row 21) ---------------------------


def reference(raw: bytes) -> List[Tuple[str, str, Optional[str], bool]]:
    """A direct transcription of HTML 9.2.6 (with the SDK's id-only report)."""
    text = raw.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines: List[str] = []
    pos = 0
    for i, ch in enumerate(text):
        if ch == "\r" or ch == "\n":
            if ch == "\n" and i > 0 and text[i - 1] == "\r":
                pos = i + 1
                continue
            lines.append(text[pos:i])
            pos = i + 1
    out: List[Tuple[str, str, Optional[str], bool]] = []
    data: List[str] = []
    etype = ""
    last_id = ""
    reported = ""
    for line in lines:
        if line == "":
            if not data:
                etype = ""
                if last_id != reported:
                    out.append(("", "message", last_id or None, False))
                    reported = last_id
                continue
            out.append(("\n".join(data), etype or "message", last_id or None, True))
            reported = last_id
            data, etype = [], ""
            continue
        if line.startswith(":"):
            continue
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            etype = value
        elif name == "id":
            if "\x00" not in value:
                last_id = value
    return out


def decode_all(chunks: Sequence[bytes]) -> List[Tuple[str, str, Optional[str], bool]]:
    d = SSEDecoder()
    out: List[SSEEvent] = []
    for c in chunks:
        out += d.feed(c)
    out += d.finish()
    return [(e.data, e.event, e.id, e.dispatch) for e in out]


_pieces = st.sampled_from(
    [
        b"data",
        b"data:",
        b"data: ",
        b"id",
        b"id:",
        b"id: ",
        b"event",
        b"event:",
        b"retry:",
        b"Data:",
        b":",
        b" ",
        b"x",
        b"7",
        b"\x00",
        b"\r",
        b"\n",
        b"\r\n",
        b"\n\n",
        b"\xef\xbb\xbf",
        b"\xe2\x82\xac",
        b"\xff",
        b"\xe2",
        b"abc",
    ]
)
_streams = st.lists(_pieces, max_size=40).map(b"".join)


def _split(raw: bytes, cuts: List[int]) -> List[bytes]:
    points = sorted({c % (len(raw) + 1) for c in cuts})
    out, prev = [], 0
    for p in points:
        out.append(raw[prev:p])
        prev = p
    out.append(raw[prev:])
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_streams, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_s21_events_invariant_under_any_chunking(raw: bytes, cuts: List[int]) -> None:
    whole = decode_all([raw])
    assert decode_all(_split(raw, cuts)) == whole
    assert decode_all([raw[i : i + 1] for i in range(len(raw))]) == whole


@settings(max_examples=400, deadline=None)
@given(raw=_streams)
def test_s21_decoder_agrees_with_a_reference_transcription_of_the_standard(raw: bytes) -> None:
    assert decode_all([raw]) == reference(raw)


def feed_only(chunks: Sequence[bytes]) -> List[Tuple[str, str, Optional[str], bool]]:
    """What the decoder hands over while the stream is still open (no finish())."""
    d = SSEDecoder()
    out: List[SSEEvent] = []
    for c in chunks:
        out += d.feed(c)
    return [(e.data, e.event, e.id, e.dispatch) for e in out]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_streams, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
@example(raw=b"data: x\r\r", cuts=[])
@example(raw=b"id: 1\rdata: a\r\rdata: b\r\n\r", cuts=[11])
def test_s21_every_complete_event_is_handed_over_before_the_stream_ends(raw: bytes, cuts: List[int]) -> None:
    # The reference dispatches what the bytes complete (a CR is a line end as soon as it is
    # read); an open stream must not hold any of it back, however it is chunked.
    expected = reference(raw)
    assert feed_only([raw]) == expected
    assert feed_only(_split(raw, cuts)) == expected
    assert feed_only([raw[i : i + 1] for i in range(len(raw))]) == expected


# Blocks close to the canonical ``id: <x>`` + ``data: <json>`` shape (the decoder's canonical
# path), with the variations that must send a batch down the full path instead.
_canonical_block = st.one_of(
    st.tuples(st.sampled_from([b"id: ", b"id:", b"id:  "]), st.sampled_from([b"e-1", b"7", b"a:b", b"\xe2\x82\xac", b"", b"id:5", b"id: 5", b" x"]))
    .map(lambda t: t[0] + t[1] + b"\ndata: {}"),
    st.sampled_from(
        [
            b"id\ndata: x",  # id without colon: an empty id
            b"id: 5\ndata",  # data without colon
            b"id: 5\ndata:",  # empty data
            b"data: x\nid: 9",  # id after data
            b"id: 5\nevent: custom",
            b"id: 5\n: comment",
            b"id: 5\nid: 6",
            b"id: a\x00b\ndata: z",
            b"id: 5\nretry: 10",
            b"ids: 5\ndata: x",
            b"id: 5\ndatum: x",
            b"data: only",
            b"id: only",
            b"",
        ]
    ),
)
_canonical_streams = st.lists(
    st.tuples(_canonical_block, st.sampled_from([b"\n\n", b"\r\n\r\n", b"\r\r", b"\n\n\n"])),
    max_size=12,
).map(lambda blocks: b"".join(block + end for block, end in blocks))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_canonical_streams, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=6))
def test_s21_canonical_batches_agree_with_the_reference(raw: bytes, cuts: List[int]) -> None:
    expected = reference(raw)
    assert decode_all([raw]) == expected
    assert decode_all(_split(raw, cuts)) == expected


@pytest.mark.parametrize("width", [0, 3, 150, 1500, 9000, 20000])
def test_canonical_batch_of_many_events_agrees_with_the_reference(width: int) -> None:
    # sseclient-py gets several data lines of a canonical batch as one event (split on LF
    # again): values with spaces, colons and non-ASCII, batches longer than a group, and lines
    # long enough that a group shrinks or goes back to one line per event.
    values = [b"", b" lead", b"a:b", b"\xe2\x82\xac", b"x" * width, b"{\"n\": 1}", b"  two", b"tail "]
    fields = [b"data: ", b"data:"]
    raw = b"".join(
        b"id: e-%d\n%s%s%d\n\n" % (i, fields[i % 2], values[i % len(values)], i) for i in range(131)
    )
    expected = reference(raw)
    assert len(expected) == 131
    assert decode_all([raw]) == expected
    assert decode_all(_split(raw, [len(raw) // 3, len(raw) // 2])) == expected


def test_canonical_batch_takes_ids_from_the_id_lines() -> None:
    raw = b"".join(b"id: e-%d\ndata: {\"n\": %d}\n\n" % (i, i) for i in range(50))
    d = SSEDecoder(last_event_id="e-0")
    events = d.feed(raw)
    assert [(e.data, e.event, e.id, e.dispatch) for e in events] == [
        (f'{{"n": {i}}}', "message", f"e-{i}", True) for i in range(50)
    ]
    assert d.last_event_id == "e-49"


def test_partial_event_survives_many_reads_once_complete() -> None:
    srv_steps: List[Step] = [b"data: " + b"x" * 100 + b"\n" for _ in range(50)] + [b"\n"]
    got = events(srv_steps, chunked=True)
    assert got == [("\n".join(["x" * 100] * 50), "message", None)]


def test_events_arrive_in_order_from_a_threaded_reader() -> None:
    # The service's shape: a reader thread loops on receive().
    n = 200
    body = b"".join(b"id: %d\ndata: %d\n\n" % (i, i) for i in range(n))
    srv = RawServer([sse([body[i : i + 97] for i in range(0, len(body), 97)], chunked=True)])
    t = SSETransport(TransportOptions(url=srv.url(), read_timeout=5.0))
    got: List[str] = []
    done = threading.Event()

    def reader() -> None:
        try:
            while True:
                got.extend(e.data for e in t.receive())  # type: ignore[union-attr]
        except TransportClosed:
            done.set()

    try:
        t.open()
        th = threading.Thread(target=reader)
        th.start()
        assert done.wait(10)
        th.join(5)
        assert got == [str(i) for i in range(n)]
        assert t.last_event_id == str(n - 1)
    finally:
        t.close()
        srv.close()


def decode_all_budget(raw: bytes, budget: int) -> List[Tuple[str, str, Optional[str], bool]]:
    d = SSEDecoder(quadratic_budget=budget)
    out = d.feed(raw) + d.finish()
    return [(e.data, e.event, e.id, e.dispatch) for e in out]


@settings(max_examples=300, deadline=None)
@given(raw=_streams, budget=st.sampled_from([0, 8, 64]))
def test_s21_big_block_path_agrees_with_the_sseclient_path(raw: bytes, budget: int) -> None:
    # Blocks past the budget are assembled without sseclient-py (its accumulation is quadratic).
    assert decode_all_budget(raw, budget) == reference(raw)


def test_event_of_many_short_lines_parses_in_linear_time() -> None:
    # 400 000 ``data`` lines (2 MB): sseclient-py's line-by-line accumulation would take
    # about a minute (measured 0.6 s at 40 000 lines, growing quadratically); docs/faults.rst row 18 wants the reader thread free.
    d = SSEDecoder(max_event_size=4 * 1024 * 1024)
    start = time.monotonic()
    events = d.feed(b"id: big\n" + b"data\n" * 400_000 + b"\n")
    assert time.monotonic() - start < 5.0
    assert [(len(e.data), e.id) for e in events] == [(399_999, "big")]


def test_a_batch_larger_than_the_event_limit_is_fine_when_each_event_fits() -> None:
    raw = b"".join(b"id: %d\ndata: {}\n\n" % i for i in range(1000))
    d = SSEDecoder(max_event_size=64)
    assert [e.id for e in d.feed(raw)] == [str(i) for i in range(1000)]
