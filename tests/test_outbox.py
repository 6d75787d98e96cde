"""Pure tests of magk_client.outbox.OfflineQueue with a hand-advanced clock."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from magk_client.errors import ConfigError, QueueFullError
from magk_client.outbox import OfflineQueue, QueuedItem


def test_fifo_drain_empties_the_queue() -> None:
    q = OfflineQueue(max_size=10, retention=60.0)
    for i in range(5):
        assert q.put(f"m{i}", float(i)) == 0
    assert len(q) == 5 and q.size_bytes == 10
    assert q.drain(5.0) == ["m0", "m1", "m2", "m3", "m4"]
    assert len(q) == 0 and q.size_bytes == 0 and not q
    assert q.drain(6.0) == []


def test_overflow_drops_oldest_and_counts_exactly() -> None:
    q = OfflineQueue(max_size=3, retention=60.0)
    results = [q.put(str(i), 0.0) for i in range(7)]
    assert results == [0, 0, 0, 1, 1, 1, 1]
    assert q.dropped == 4
    assert q.drain(0.0) == ["4", "5", "6"]


def test_one_million_puts_stay_bounded() -> None:
    """docs/faults.rst rows 11 and 32: 1e6 messages while down, max 1000: bounded, counter exact."""
    q = OfflineQueue(max_size=1000, retention=600.0, max_bytes=64 * 1024)
    msg = json.dumps({"type": "ping", "data": {"n": 0}})
    n = 1_000_000
    dropped = 0
    peak_len = peak_bytes = 0
    for i in range(n):
        dropped += q.put(msg, i * 1e-4)
        if i % 997 == 0:
            peak_len = max(peak_len, len(q))
            peak_bytes = max(peak_bytes, q.size_bytes)
    assert len(q) == 1000
    assert peak_len <= 1000 and peak_bytes <= 64 * 1024
    assert q.size_bytes == 1000 * len(msg) <= 64 * 1024
    assert dropped == q.dropped == n - 1000
    assert q.expired == 0


def test_byte_bound_drops_oldest_until_it_fits() -> None:
    q = OfflineQueue(max_size=100, retention=60.0, max_bytes=10)
    q.put("aaaa", 0.0)
    q.put("bbbb", 1.0)
    assert q.put("cccccc", 2.0) == 1  # 4 + 6 = 10 fits after dropping "aaaa"
    assert q.size_bytes == 10
    assert q.put("dddddddddd", 3.0) == 2
    assert q.drain(3.0) == ["dddddddddd"]
    assert q.dropped == 3


def test_byte_size_is_utf8() -> None:
    q = OfflineQueue(max_size=10, retention=60.0, max_bytes=8)
    q.put("é€", 0.0)  # 2 + 3 bytes
    assert q.size_bytes == 5
    with pytest.raises(QueueFullError):
        q.put("€€€", 0.0)  # 9 bytes
    q.put("\ud800", 0.0)  # a lone surrogate must not crash the size count
    assert q.size_bytes == 8


def test_single_item_over_max_bytes_is_refused_and_queue_untouched() -> None:
    q = OfflineQueue(max_size=10, retention=60.0, max_bytes=5)
    q.put("abc", 0.0)
    with pytest.raises(QueueFullError):
        q.put("x" * 6, 1.0)
    assert q.refused == 1 and q.dropped == 0
    assert q.drain(1.0) == ["abc"]


def test_retention_expiry_on_drain_put_and_expire() -> None:
    q = OfflineQueue(max_size=10, retention=10.0)
    q.put("old", 0.0)
    q.put("mid", 5.0)
    q.put("new", 9.0)
    assert q.next_expiry() == 10.0
    assert q.expire(10.0) == 0  # age == retention is still kept
    assert q.expire(10.5) == 1
    assert q.expired == 1 and len(q) == 2
    q.put("newest", 15.5)  # "mid" (age 10.5) is discarded on put, as expired not dropped
    assert q.expired == 2 and q.dropped == 0
    assert q.drain(19.0) == ["new", "newest"]
    q.put("a", 20.0)
    q.put("b", 25.0)
    assert q.drain(31.0) == ["b"]
    assert q.expired == 3
    assert q.next_expiry() is None


def test_requeue_front_keeps_order_before_newer_items() -> None:
    q = OfflineQueue(max_size=10, retention=60.0)
    for t in "abcd":
        q.put(t, 0.0)
    items = q.drain(1.0)
    sent, unsent = items[:1], items[1:]
    assert sent == ["a"]
    q.put("e", 2.0)  # queued while the flush was failing
    assert q.requeue_front(unsent, 3.0) == 0
    assert q.size_bytes == 4
    assert q.drain(3.0) == ["b", "c", "d", "e"]


def test_requeue_front_items_keep_their_retention() -> None:
    q = OfflineQueue(max_size=10, retention=10.0)
    q.put("a", 0.0)
    q.put("b", 8.0)
    items = q.drain_items(9.0)
    assert [i.text for i in items] == ["a", "b"]
    assert isinstance(items[0], QueuedItem) and items[0].enqueued_at == 0.0
    q.requeue_front(items, 11.0)  # "a" is 11 s old by now: discarded as expired
    assert q.expired == 1
    assert q.drain(12.0) == ["b"]


def test_requeue_front_str_stays_time_ordered() -> None:
    q = OfflineQueue(max_size=10, retention=10.0)
    q.put("x", 0.0)
    texts = q.drain(1.0)
    q.put("y", 2.0)
    q.requeue_front(texts, 5.0)
    # a bare str counts as queued at now, but no later than the item behind it
    assert q.next_expiry() == 12.0
    assert q.drain(12.5) == []
    assert q.expired == 2


def test_requeue_front_respects_bounds_dropping_oldest() -> None:
    q = OfflineQueue(max_size=3, retention=60.0)
    for t in "abc":
        q.put(t, 0.0)
    unsent = q.drain(0.0)
    q.put("d", 1.0)
    q.put("e", 1.0)
    assert q.requeue_front(unsent, 2.0) == 2
    assert q.dropped == 2
    assert q.drain(2.0) == ["c", "d", "e"]
    assert q.requeue_front([], 3.0) == 0


def test_clear_returns_count_and_is_not_a_drop() -> None:
    q = OfflineQueue(max_size=5, retention=1.0)
    q.put("a", 0.0)
    q.put("b", 0.0)
    assert q.clear() == 2
    assert len(q) == 0 and q.size_bytes == 0 and q.dropped == 0
    assert "size=0/5" in repr(q)


@pytest.mark.parametrize(
    "args",
    [(0, 1.0, None), (True, 1.0, None), (1, 0.0, None), (1, float("nan"), None), (1, 1.0, 0), (1, 1.0, 1.5)],
)
def test_rejects_bad_bounds(args: tuple[int, float, int | None]) -> None:
    with pytest.raises(ConfigError):
        OfflineQueue(*args)


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["put", "drain", "requeue", "advance"]), st.text(max_size=12)),
        max_size=60,
    ),
    max_size=st.integers(min_value=1, max_value=6),
    max_bytes=st.one_of(st.none(), st.integers(min_value=12 * 4, max_value=200)),
)
def test_model_bounds_and_order(ops: list[tuple[str, str]], max_size: int, max_bytes: int | None) -> None:
    """Against a simple model: bounds always hold, and what comes out is in put order."""
    q = OfflineQueue(max_size=max_size, retention=5.0, max_bytes=max_bytes)
    now, seq, delivered = 0.0, 0, 0
    last_out = -1
    for op, text in ops:
        if op == "put":
            q.put(f"{seq:04d}{text}", now)
            seq += 1
        elif op == "advance":
            now += 2.0
        else:
            out = q.drain(now)
            numbers = [int(t[:4]) for t in out]
            assert numbers == sorted(numbers)
            if op == "requeue":
                q.requeue_front(out, now)
            elif numbers:
                assert numbers[0] > last_out  # never out of order, never twice
                last_out = numbers[-1]
                delivered += len(out)
        assert len(q) <= max_size
        if max_bytes is not None:
            assert q.size_bytes <= max_bytes
        # every message put is accounted for exactly once
        assert seq == delivered + q.dropped + q.expired + len(q)
    rest = q.drain_items(now + 100.0)
    assert rest == [] and q.size_bytes == 0


def test_discards_list_collects_dropped_and_expired_texts() -> None:
    """With ``discards`` set, the service can tell who waits for a message the queue gave up."""
    q = OfflineQueue(max_size=2, retention=10.0)
    q.put("quiet", 0.0)
    q.put("kept-out", 0.0)  # nothing collected while discards is None
    q.discards = []
    q.put("a", 1.0)  # drops "quiet"
    q.put("b", 1.0)  # drops "kept-out"
    assert q.discards == ["quiet", "kept-out"]
    q.put("c", 20.0)  # "a" and "b" expired first
    assert q.discards[2:] == ["a", "b"]
    q.put("d", 20.0)
    assert q.drain_items(40.0) == [] and q.discards[4:] == ["c", "d"]  # expired at drain
    assert q.dropped == 2 and q.expired == 4


def test_peek_and_pop_go_one_message_at_a_time_past_expired_ones() -> None:
    q = OfflineQueue(max_size=5, retention=10.0)
    q.put("old", 0.0)
    q.put("a", 5.0)
    q.put("b", 6.0)
    assert q.peek(12.0) == "a" and len(q) == 2 and q.expired == 1
    item = q.pop(12.0)
    assert item == QueuedItem("a", 5.0, 1) and q.size_bytes == 1
    q.requeue_front([item], 12.0)  # a failed write puts it back, queue time kept
    assert [q.pop(12.0), q.pop(12.0), q.pop(12.0)] == [QueuedItem("a", 5.0, 1), QueuedItem("b", 6.0, 1), None]
    assert q.peek(12.0) is None
