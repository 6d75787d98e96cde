"""Tests of magk_client.delivery.DeliveryTracker (exactly-once across replays)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from magk_client.delivery import DeliveryTracker
from magk_client.errors import ConfigError


def test_duplicates_within_window_are_dropped() -> None:
    d = DeliveryTracker(window=10)
    assert [d.accept(str(i)) for i in range(5)] == [True] * 5
    # a replay after reconnect overlaps ids 2..4, then continues
    assert [d.accept(str(i)) for i in range(2, 8)] == [False, False, False, True, True, True]
    assert d.duplicates == 3
    assert d.accepted == 8
    assert d.last_event_id == "7"


def test_ids_outside_window_are_accepted_again() -> None:
    d = DeliveryTracker(window=3)
    for i in "abcd":
        assert d.accept(i)
    assert len(d) == 3
    assert not d.seen("a")
    assert d.accept("a") is True  # fell out of the window
    assert d.accept("c") is False  # still inside
    assert d.duplicates == 1


def test_messages_without_id_always_accepted_and_change_nothing() -> None:
    d = DeliveryTracker(window=2)
    d.accept("e1")
    for _ in range(5):
        assert d.accept(None) is True
        assert d.accept("") is True
    assert d.last_event_id == "e1"
    assert len(d) == 1 and d.duplicates == 0 and d.accepted == 1
    assert d.accept("e1") is False


def test_duplicate_does_not_move_last_event_id_back() -> None:
    d = DeliveryTracker(window=100)
    d.accept("1")
    d.accept("2")
    d.accept("1")
    assert d.last_event_id == "2"


def test_set_last_event_id() -> None:
    d = DeliveryTracker(window=5)
    d.set_last_event_id("7")  # SSE id-only block
    assert d.last_event_id == "7"
    assert d.accept("7") is True  # setting the resume point is not accepting an event
    d.set_last_event_id("")  # SSE "id:" with empty value resets
    assert d.last_event_id is None
    d.set_last_event_id(None)
    assert d.last_event_id is None
    assert d.accept("7") is False  # the window is untouched by set_last_event_id


def test_clear_forgets() -> None:
    d = DeliveryTracker(window=5)
    d.accept("x")
    d.clear()
    assert d.last_event_id is None and len(d) == 0
    assert d.accept("x") is True


@pytest.mark.parametrize("window", [0, -1, True, 2.5, None])
def test_window_validated(window: object) -> None:
    with pytest.raises(ConfigError):
        DeliveryTracker(window)  # type: ignore[arg-type]


def test_memory_stays_bounded() -> None:
    d = DeliveryTracker(window=1000)
    for i in range(200_000):
        d.accept(str(i))
    assert len(d) == 1000 and len(d._seen) == 1000
    assert d.seen("199999") and not d.seen("198999")


@settings(max_examples=100, deadline=None)
@given(
    ids=st.lists(st.one_of(st.none(), st.sampled_from([""] + [f"e{i}" for i in range(12)])), max_size=80),
    window=st.integers(min_value=1, max_value=8),
)
def test_matches_reference_model(ids: list[str | None], window: int) -> None:
    d = DeliveryTracker(window)
    recent: list[str] = []  # the last `window` accepted ids
    last = None
    dups = 0
    for event_id in ids:
        expected = not event_id or event_id not in recent
        assert d.accept(event_id) is expected
        if event_id and expected:
            recent = ([*recent, event_id])[-window:]
            last = event_id
        elif event_id:
            dups += 1
        assert d.last_event_id == last
    assert d.duplicates == dups
