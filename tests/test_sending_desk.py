"""Tests of magk_client.sending.OutboundDesk (the send path's decisions), clock passed in."""

from __future__ import annotations

import json
from concurrent.futures import Future
from typing import Any, Dict, List

import pytest

from magk_client.acks import Completion, Outcome
from magk_client.config import RealtimeConnectionConfig
from magk_client.errors import DeliveryError, MessageRefusedError
from magk_client.models import RealtimeMessage, SendResult
from magk_client.outbox import OfflineQueue
from magk_client.sending import OutboundDesk, identify, message_identity, resolve


def _text(mid: str, mtype: str = "client_note", **data: Any) -> str:
    return json.dumps({"type": mtype, "id": mid, "data": data})


def _desk(**cfg: Any) -> OutboundDesk:
    return OutboundDesk(RealtimeConnectionConfig(**cfg))


def _queue(*texts: str) -> OfflineQueue:
    q = OfflineQueue(1000, 300.0)
    for text in texts:
        q.put(text, 0.0)
    return q


def _acked(desk: OutboundDesk, conn: int = 1) -> None:
    desk.connection_opened(conn, 0.0)
    desk.on_inbound(conn, "subscription_ack", {"features": ["ack"]})


def test_identify_and_message_identity() -> None:
    assert identify(_text("m1")) == ("m1", True)
    assert identify(json.dumps({"type": "workflow_event", "id": "r1", "data": {"type": "command"}})) == ("r1", False)
    assert identify(json.dumps({"type": "x"})) == (None, True)
    assert identify("not json") == (None, False)
    assert identify("[1]") == (None, False)
    assert message_identity({"type": "ping", "id": "p"}) == ("p", False)
    assert message_identity({"type": "note", "id": "n", "data": 5}) == ("n", True)
    assert message_identity(RealtimeMessage(type="node_log", id="r")) == ("r", True)


def test_resolve_maps_outcomes_to_results_and_errors() -> None:
    futures: List[Future] = [Future() for _ in range(5)]  # type: ignore[type-arg]
    resolve(Completion("a", Outcome.ACKNOWLEDGED, ()), [futures[0]])
    resolve(Completion("b", Outcome.WRITTEN, ()), [futures[1]])
    resolve(Completion("c", Outcome.REFUSED, (), "bad"), [futures[2]])
    resolve(Completion("d", Outcome.DROPPED, (), "full"), [futures[3]])
    resolve(Completion("e", Outcome.CANCELLED, (), "disconnect()"), [futures[4]])
    assert futures[0].result() == SendResult("a", True)
    assert futures[1].result() == SendResult("b", False)
    with pytest.raises(MessageRefusedError, match="refused message c: bad"):
        futures[2].result()
    with pytest.raises(DeliveryError, match="given up") as dropped:
        futures[3].result()
    assert dropped.value.message_id == "d" and dropped.value.outcome == "dropped"
    with pytest.raises(DeliveryError, match="before disconnect\\(\\); it is kept"):
        futures[4].result()
    resolve(Completion("a", Outcome.REFUSED, ()), [futures[0]])  # already done: left alone
    assert futures[0].result() == SendResult("a", True)


def test_the_first_server_message_decides() -> None:
    desk = _desk()
    desk.connection_opened(1, 0.0)
    assert desk.undecided(1)
    assert desk.on_inbound(1, "subscription_error", {"code": "resume_gap"}) == []
    assert desk.undecided(1)
    desk.on_inbound(1, "subscription_ack", {"features": ["ack"]})
    assert not desk.undecided(1) and not desk.window.at_most_once
    desk.connection_opened(2, 0.0)
    desk.on_inbound(2, "node_status_update", {})
    assert desk.window.support(2) is False and desk.window.at_most_once


def test_no_word_within_the_connection_timeout_means_no_acks() -> None:
    desk = _desk(connection_timeout_ms=2000)
    desk.connection_opened(1, 10.0)
    desk.record("a", _text("a"), True, 1, 10.0, waiter="w")
    assert desk.feature_deadline() == 12.0
    assert desk.decide_overdue(1, 11.9) == [] and desk.undecided(1)
    assert desk.decide_overdue(1, 12.0) == [Completion("a", Outcome.WRITTEN, ("w",))]
    assert not desk.undecided(1)


def test_acks_refusals_and_the_http_ack() -> None:
    desk = _desk()
    _acked(desk)
    desk.record("a", _text("a"), True, 1, 0.0, waiter="wa")
    desk.record("b", _text("b"), True, 1, 0.0, waiter="wb")
    desk.record("c", _text("c"), True, 1, 0.0, waiter="wc")
    assert desk.on_ack({"ids": ["a"]}) == [Completion("a", Outcome.ACKNOWLEDGED, ("wa",))]
    assert desk.on_ack({"ids": "a"}) == []
    assert desk.on_refusal({"code": "bad_message", "id": "b", "message": "no"}) == [
        Completion("b", Outcome.REFUSED, ("wb",), "no")
    ]
    assert desk.on_refusal({"code": "resume_gap"}) == []
    assert desk.written("c", True, http=True) == [Completion("c", Outcome.ACKNOWLEDGED, ("wc",))]
    assert len(desk.window) == 0


def test_a_command_is_done_for_its_waiter_once_written() -> None:
    desk = _desk()
    _acked(desk)
    assert desk.record("r", "{}", False, 1, 0.0) == []
    assert len(desk.window) == 0
    assert desk.written("r", False, http=False, waiter="w") == [Completion("r", Outcome.WRITTEN, ("w",))]


def test_admit_needs_room_and_a_token_and_no_pending_resends() -> None:
    desk = _desk(max_messages_per_second=10, max_message_burst=2, max_queue_size=2)
    _acked(desk)
    assert desk.admit("x", True, 0.0) and desk.admit("x", True, 0.0)
    assert not desk.admit("x", True, 0.0)  # no token
    assert desk.rate_limit_waits == 1
    desk.record("a", _text("a"), True, 1, 0.0)
    desk.record("b", _text("b"), True, 1, 0.0)
    assert not desk.admit("x", True, 1.0)  # the window is full (no token taken)
    assert desk.admit("x", False, 1.0)  # a command needs no room
    assert desk.bucket is not None and desk.bucket.available(1.0) == pytest.approx(1.0)
    desk.connection_lost(1, 1.0)
    desk.connection_opened(2, 1.0)
    assert not desk.admit("x", False, 5.0)  # resends go first


def test_the_flush_resends_first_then_the_queue_in_order() -> None:
    desk = _desk()
    _acked(desk)
    desk.record("a", _text("a"), True, 1, 0.0)
    desk.record("b", _text("b"), True, 1, 0.0)
    desk.on_ack({"ids": ["b"]})
    desk.connection_lost(1, 1.0)
    queue = _queue(_text("q1"), json.dumps({"type": "workflow_event", "id": "r", "data": {"type": "command"}}))
    desk.connection_opened(2, 1.0)
    order = []
    while True:
        step, _ = desk.next_step(2, queue, 1.0)
        if step.text is None:
            assert step.wait is None
            break
        order.append((step.mid, step.acked, step.item is None))
    assert order == [("a", True, True), ("q1", True, False), ("r", False, False)]
    assert desk.window.resent == 1 and sorted(m for m in ("a", "q1") if m in desk.window) == ["a", "q1"]


def test_the_flush_waits_for_tokens_and_for_room() -> None:
    desk = _desk(max_messages_per_second=10, max_message_burst=1, max_queue_size=1)
    _acked(desk)
    queue = _queue(_text("q1"), _text("q2"))
    step, _ = desk.next_step(1, queue, 0.0)
    assert step.mid == "q1"
    step, _ = desk.next_step(1, queue, 0.0)
    assert step.room and step.wait == 300.0 and desk.window_waits == 1  # the window holds q1 (until it expires)
    desk.on_ack({"ids": ["q1"]})
    step, _ = desk.next_step(1, queue, 0.0)
    assert step.wait == pytest.approx(0.1)
    step, _ = desk.next_step(1, queue, 0.05)
    assert step.wait == pytest.approx(0.05)
    assert desk.rate_limit_waits == 1  # one message, one wait, however often it asks
    step, _ = desk.next_step(1, queue, 0.1)
    assert step.mid == "q2" and len(queue) == 0


def test_a_full_window_makes_room_when_its_oldest_entry_expires() -> None:
    """A message the server never acknowledges cannot block the queue past the retention."""
    desk = _desk(max_queue_size=1, queue_retention_ms=10_000)
    _acked(desk)
    desk.record("stuck", _text("stuck"), True, 1, 0.0, waiter="w")
    queue = _queue(_text("next"))
    step, _ = desk.next_step(1, queue, 5.0)
    assert step.room and step.wait == pytest.approx(5.0)
    step, done = desk.next_step(1, queue, 10.5)
    assert step.mid == "next"
    assert done == [Completion("stuck", Outcome.DROPPED, ("w",), "unacknowledged past retention")]
    assert desk.window.expired == 1


def test_a_failed_write_goes_back_to_the_queue_with_its_waiters() -> None:
    desk = _desk()
    _acked(desk)
    queue = _queue(_text("q1"), _text("q2"))
    step, _ = desk.next_step(1, queue, 0.0)
    desk.window.wait_queued("q1", ["w"])  # (normally taken over by record)
    assert desk.unsend(step.mid, step.text or "", queue, 0.0, step.item) == 0
    assert "q1" not in desk.window and queue.peek(0.0) == _text("q1")
    step, _ = desk.next_step(1, queue, 0.0)
    assert step.mid == "q1"
    assert desk.on_ack({"ids": ["q1"]}) == [Completion("q1", Outcome.ACKNOWLEDGED, ("w",))]


def test_queued_waiters_are_told_when_the_queue_drops_their_message() -> None:
    desk = _desk()
    queue = OfflineQueue(1, 300.0)
    queue.put(_text("old"), 0.0)
    desk.wait_queued("old", "w", queue)
    assert queue.discards == []
    queue.put(_text("new"), 0.0)  # drops "old"
    assert desk.queue_discards(queue) == [
        Completion("old", Outcome.DROPPED, ("w",), "the offline queue dropped it (bounds or retention)")
    ]
    assert queue.discards is None  # nobody waits any more: the queue stops collecting


def test_a_1009_refuses_the_largest_message_of_that_connection() -> None:
    desk = _desk()
    _acked(desk)
    desk.record("small", _text("small"), True, 1, 0.0)
    desk.record("big", _text("big", pad="x" * 1000), True, 1, 0.0, waiter="w")
    done = desk.connection_lost(1, 1.0, refused_size=True)
    assert done[0].outcome is Outcome.REFUSED and done[0].waiters == ("w",)
    desk.connection_opened(2, 1.0)
    step, _ = desk.next_step(2, _queue(), 1.0)
    assert step.mid == "small"


def test_reconfigure_turns_the_limit_on_and_off() -> None:
    desk = _desk()
    assert desk.bucket is None
    cfg: Dict[str, Any] = {"max_messages_per_second": 5.0}
    desk.reconfigure(RealtimeConnectionConfig(**cfg), 0.0)
    assert desk.bucket is not None and desk.bucket.rate == 5.0
    desk.reconfigure(RealtimeConnectionConfig(max_messages_per_second=7.0, max_message_burst=3), 0.0)
    assert desk.bucket.rate == 7.0 and desk.bucket.burst == 3
    desk.reconfigure(RealtimeConnectionConfig(), 0.0)
    assert desk.bucket is None


def test_cancel_tells_every_waiter() -> None:
    desk = _desk()
    _acked(desk)
    desk.record("a", _text("a"), True, 1, 0.0, waiter="wa")
    assert desk.cancel("disconnect()") == [Completion("a", Outcome.CANCELLED, ("wa",), "disconnect()")]
