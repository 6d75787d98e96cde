"""Pure tests of magk_client.acks (the window of unacknowledged messages), clock passed in."""

from __future__ import annotations

from typing import List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from magk_client.acks import Completion, OutboundWindow, Outcome, ack_feature, is_acknowledged_type
from magk_client.errors import ConfigError


def _window(max_size: int = 100, retention: float = 60.0, max_bytes: int | None = None) -> OutboundWindow:
    return OutboundWindow(max_size, retention, max_bytes, feature_wait=5.0)


def _ids(done: List[Completion]) -> List[str]:
    return [c.message_id for c in done]


def test_ack_feature_follows_the_protocols_order() -> None:
    assert ack_feature("subscription_ack", {"features": ["ack"]}) is True
    assert ack_feature("subscription_ack", {"features": ["other"]}) is False
    assert ack_feature("subscription_ack", {}) is False
    assert ack_feature("subscription_ack", {"features": "ack"}) is False  # not a list
    assert ack_feature("subscription_error", {"code": "resume_gap"}) is None  # the ack comes next
    assert ack_feature("node_status_update", {}) is False  # no subscription_ack at all
    assert ack_feature("heartbeat", {"ping": "x"}) is False


def test_commands_pings_and_pongs_are_not_acknowledged() -> None:
    assert is_acknowledged_type("client_note", {})
    assert is_acknowledged_type("workflow_event", {"type": "workflow_started"})
    assert not is_acknowledged_type("workflow_event", {"type": "command", "command": {}})
    assert not is_acknowledged_type("ping", {})
    assert not is_acknowledged_type("pong", {})


def test_acknowledged_messages_leave_the_window_and_complete_their_waiters() -> None:
    w = _window()
    w.connection_opened(1, 0.0)
    assert w.decide(1, True) == []
    assert w.record("a", "A", 1, 0.0, waiter="wa") == []
    assert w.record("b", "B", 1, 0.0) == []
    assert len(w) == 2 and w.size_bytes == 2
    done = w.ack(["a", "b", "zzz", 7])
    assert done == [Completion("a", Outcome.ACKNOWLEDGED, ("wa",))]  # only messages with waiters
    assert len(w) == 0 and w.size_bytes == 0
    assert w.acknowledged == 2 and w.unmatched_acks == 2
    assert not w.at_most_once


def test_after_a_break_the_unacknowledged_are_resent_in_order_with_the_same_id() -> None:
    w = _window()
    w.connection_opened(1, 0.0)
    w.decide(1, True)
    for mid in ("m1", "m2", "m3"):
        w.record(mid, f"text-{mid}", 1, 0.0)
    w.ack(["m2"])
    assert w.connection_lost(1, 1.0) == []
    assert w.pending_resend == 2
    w.connection_opened(2, 1.0)
    resend, expired = w.resends(1.0)
    assert resend == [("m1", "text-m1"), ("m3", "text-m3")] and expired == []
    for mid, text in resend:
        w.record(mid, text, 2, 1.0)
    assert w.resent == 2 and w.pending_resend == 0
    assert w.resends(1.0)[0] == []  # written on the live connection: not again
    w.decide(2, True)
    w.ack(["m1", "m3"])
    assert len(w) == 0 and w.acknowledged == 3


def test_without_acks_waiters_get_written_and_a_break_counts_the_unconfirmed() -> None:
    w = _window()
    w.connection_opened(1, 0.0)
    # written before the server said: kept, as it may yet acknowledge
    w.record("early", "E", 1, 0.0, waiter="we")
    assert len(w) == 1
    done = w.decide(1, False)
    assert done == [Completion("early", Outcome.WRITTEN, ("we",))]
    assert len(w) == 0 and w.at_most_once
    assert w.record("late", "L", 1, 0.5, waiter="wl") == [Completion("late", Outcome.WRITTEN, ("wl",))]
    assert w.has_room("x" * 10_000)  # nothing is kept: never full
    assert w.connection_lost(1, 1.0) == []
    assert w.unconfirmed == 2  # both may have been lost with the connection: counted, not resent
    w.connection_opened(2, 1.0)
    assert w.resends(1.0)[0] == []


def test_the_unconfirmed_tail_is_bounded_by_size_and_retention() -> None:
    w = _window(max_size=5, retention=10.0)
    w.connection_opened(1, 0.0)
    w.decide(1, False)
    for i in range(8):
        w.record(f"m{i}", "x", 1, float(i))
    w.connection_lost(1, 13.5)  # the newest 5 were written at 3..7; 3 is older than 10 s
    assert w.unconfirmed == 4


def test_undecided_at_a_break_follows_what_the_server_said_last() -> None:
    w = _window()
    w.connection_opened(1, 0.0)
    w.record("a", "A", 1, 0.0, waiter="wa")
    # never heard from any server: at most once, given up (written, not resent)
    assert w.connection_lost(1, 0.1) == [Completion("a", Outcome.WRITTEN, ("wa",))]
    assert w.unconfirmed == 1
    w.connection_opened(2, 0.2)
    w.decide(2, True)
    w.connection_lost(2, 0.3)
    w.connection_opened(3, 0.4)
    w.record("b", "B", 3, 0.4)
    # the last server acknowledged: kept for a resend
    assert w.connection_lost(3, 0.5) == []
    assert w.pending_resend == 1 and w.unconfirmed == 1


def test_a_decision_is_taken_once_per_connection_and_only_for_the_live_one() -> None:
    w = _window()
    w.connection_opened(1, 0.0)
    assert w.undecided(1) and w.support(1) is None
    assert w.feature_deadline() == 5.0
    w.decide(1, True)
    w.decide(1, False)  # ignored: the first decision stands
    assert w.support(1) is True and not w.undecided(1) and w.feature_deadline() is None
    w.decide(7, False)  # not the live connection
    assert w.server_acks is True
    w.connection_opened(2, 1.0)
    assert w.support(1) is None and w.undecided(2)


def test_flow_control_has_room_within_count_and_bytes() -> None:
    w = _window(max_size=2, max_bytes=10)
    w.connection_opened(1, 0.0)
    w.decide(1, True)
    assert w.has_room("x" * 50)  # an empty window takes any one message...
    w.record("a", "aaaa", 1, 0.0)
    assert w.has_room("bbbbbb") and not w.has_room("bbbbbbb")  # ...then bytes bound
    w.record("b", "bb", 1, 0.0)
    assert not w.has_room("c")  # count bound
    w.ack(["a"])
    assert w.has_room("c")


def test_over_the_bounds_the_oldest_is_dropped_and_its_waiter_told() -> None:
    w = _window(max_size=2)
    w.connection_opened(1, 0.0)
    w.decide(1, True)
    w.record("a", "A", 1, 0.0, waiter="wa")
    w.record("b", "B", 1, 0.0)
    done = w.record("c", "C", 1, 0.0)
    assert _ids(done) == ["a"] and done[0].outcome is Outcome.DROPPED and "full" in done[0].reason
    assert w.dropped == 1 and len(w) == 2


def test_a_message_larger_than_max_bytes_is_not_kept() -> None:
    w = _window(max_bytes=4)
    w.connection_opened(1, 0.0)
    w.decide(1, True)
    done = w.record("big", "xxxxx", 1, 0.0, waiter="w")
    assert done[0].outcome is Outcome.DROPPED and len(w) == 0 and w.dropped == 1


def test_retention_expires_unacknowledged_messages() -> None:
    w = _window(retention=10.0)
    w.connection_opened(1, 0.0)
    w.decide(1, True)
    w.record("old", "O", 1, 0.0, waiter="wo")
    w.record("new", "N", 1, 8.0)
    w.connection_lost(1, 9.0)
    resend, expired = w.resends(10.5)
    assert resend == [("new", "N")]
    assert expired == [Completion("old", Outcome.DROPPED, ("wo",), "unacknowledged past retention")]
    assert w.expired == 1


def test_refusals_are_final() -> None:
    w = _window()
    w.connection_opened(1, 0.0)
    w.decide(1, True)
    w.record("bad", "B", 1, 0.0, waiter="wb")
    done = w.refuse("bad", "message is not valid")
    assert done == [Completion("bad", Outcome.REFUSED, ("wb",), "message is not valid")]
    assert w.refuse("bad", "again") == [] and w.refused == 1
    w.connection_lost(1, 1.0)
    assert w.resends(1.0)[0] == []


def test_the_largest_message_of_a_connection_is_the_1009_suspect() -> None:
    w = _window()
    w.connection_opened(1, 0.0)
    w.decide(1, True)
    w.record("s", "x", 1, 0.0)
    w.record("l", "x" * 100, 1, 0.0)
    w.record("m", "x" * 10, 1, 0.0)
    assert w.largest_on(1) == "l"
    assert w.largest_on(2) is None


def test_queued_waiters_follow_the_message_into_the_window() -> None:
    w = _window()
    w.wait_queued("q", ["w1"])
    assert w.has_queued_waiters
    w.connection_opened(1, 0.0)
    w.decide(1, True)
    w.record("q", "Q", 1, 0.0)
    assert not w.has_queued_waiters
    assert w.ack(["q"]) == [Completion("q", Outcome.ACKNOWLEDGED, ("w1",))]
    w.wait_queued("gone", ["w2"])
    assert w.discard_queued("gone", Outcome.DROPPED, "queue full") == [
        Completion("gone", Outcome.DROPPED, ("w2",), "queue full")
    ]
    assert w.discard_queued("gone", Outcome.DROPPED, "x") == []


def test_a_failed_write_hands_its_waiters_back() -> None:
    w = _window()
    w.connection_opened(1, 0.0)
    w.record("a", "A", 1, 0.0, waiter="wa")
    assert w.unrecord("a") == ["wa"] and len(w) == 0
    assert w.unrecord("a") == []


def test_cancel_waiters_tells_every_waiter_and_keeps_the_messages() -> None:
    w = _window()
    w.connection_opened(1, 0.0)
    w.decide(1, True)
    w.record("a", "A", 1, 0.0, waiter="wa")
    w.wait_queued("q", ["wq"])
    done = w.cancel_waiters("disconnect()")
    assert {(c.message_id, c.outcome) for c in done} == {("a", Outcome.CANCELLED), ("q", Outcome.CANCELLED)}
    assert len(w) == 1 and w.ack(["a"]) == []  # kept, but nobody waits any more


def test_reusing_an_id_is_the_same_message() -> None:
    w = _window()
    w.connection_opened(1, 0.0)
    w.decide(1, True)
    w.record("a", "A", 1, 0.0, waiter="w1")
    w.record("a", "A", 1, 0.1, waiter="w2")
    assert len(w) == 1 and w.resent == 0
    assert w.ack(["a"]) == [Completion("a", Outcome.ACKNOWLEDGED, ("w1", "w2"))]


def test_resent_on_a_connection_without_acks_is_released() -> None:
    w = _window()
    w.connection_opened(1, 0.0)
    w.decide(1, True)
    w.record("a", "A", 1, 0.0, waiter="wa")
    w.connection_lost(1, 0.5)
    w.connection_opened(2, 0.5)
    w.decide(2, False)  # the server came back without acks
    (mid, text), = w.resends(0.5)[0]
    assert w.record(mid, text, 2, 0.6) == [Completion("a", Outcome.WRITTEN, ("wa",))]
    assert len(w) == 0 and w.resent == 1 and w.at_most_once


def test_reconfigure_drops_over_the_new_bounds() -> None:
    w = _window(max_size=5)
    w.connection_opened(1, 0.0)
    w.decide(1, True)
    for i in range(5):
        w.record(f"m{i}", "x", 1, 0.0, waiter=i)
    done = w.reconfigure(2, 60.0, None, 0.0)
    assert _ids(done) == ["m0", "m1", "m2"] and len(w) == 2 and w.dropped == 3


@pytest.mark.parametrize(
    "args", [(0, 1.0, None), (1, 0.0, None), (1, float("nan"), None), (1, 1.0, 0), (True, 1.0, None)]
)
def test_bad_bounds_are_config_errors(args: tuple) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError):
        OutboundWindow(*args)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("send"), st.integers(0, 30)),
            st.tuples(st.just("ack"), st.integers(0, 30)),
            st.tuples(st.just("drop"), st.just(0)),
        ),
        max_size=80,
    )
)
def test_every_sent_id_is_acknowledged_or_still_held_when_acks_are_on(ops: list) -> None:  # type: ignore[type-arg]
    """With acks and room, nothing is lost: each id sent is acknowledged once or still in the window,
    and after a break it is offered again."""
    w = OutboundWindow(1000, 1e9)
    conn = 1
    w.connection_opened(conn, 0.0)
    w.decide(conn, True)
    sent, acked = set(), set()
    for op, n in ops:
        mid = f"m{n}"
        if op == "send" and mid not in sent:
            w.record(mid, mid, conn, 0.0)
            sent.add(mid)
        elif op == "ack" and mid in sent and mid not in acked:
            w.ack([mid])
            acked.add(mid)
        elif op == "drop":
            w.connection_lost(conn, 0.0)
            conn += 1
            w.connection_opened(conn, 0.0)
            w.decide(conn, True)
            for rid, text in w.resends(0.0)[0]:
                w.record(rid, text, conn, 0.0)
    assert len(w) == len(sent - acked)
    assert w.acknowledged == len(acked) and w.unconfirmed == 0 and w.dropped == 0


def test_an_entry_whose_reply_decides_is_left_to_its_writer() -> None:
    """``POST /messages``: its 2xx (ack) or its failure (unrecord) decides, not the stream's fate."""
    w = _window()
    w.connection_opened(1, 0.0)
    w.decide(1, False)  # even a server that does not advertise acks answers the POST
    assert w.record("p", "P", 1, 0.0, waiter="wp", by_reply=True) == []
    assert len(w) == 1
    assert w.connection_lost(1, 0.5) == []  # the stream broke while the POST was in flight
    assert w.unconfirmed == 0 and w.pending_resend == 0
    assert w.ack(["p"]) == [Completion("p", Outcome.ACKNOWLEDGED, ("wp",))]
