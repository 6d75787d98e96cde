"""Tests of magk_client.router: matching, the type index, and copy-on-write under threads."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from magk_client.errors import ConfigError
from magk_client.models import MessageType, RealtimeMessage
from magk_client.router import Subscription, SubscriptionRouter


def _noop(message: RealtimeMessage) -> None:
    pass


def msg(type_: Any, workflow_id: str | None = None, node_id: str | None = None) -> RealtimeMessage:
    return RealtimeMessage(type=type_, workflow_id=workflow_id, node_id=node_id)


def test_type_index_and_order() -> None:
    r = SubscriptionRouter()
    a = r.add(MessageType.NODE_LOG, _noop)
    b = r.add(None, _noop)
    c = r.add(["node_log", MessageType.NODE_ERROR], _noop)
    d = r.add("node_error", _noop)
    assert len(r) == 4
    assert [s.id for s in r.match(msg(MessageType.NODE_LOG))] == [a, b, c]
    assert [s.id for s in r.match(msg("node_log"))] == [a, b, c]
    assert [s.id for s in r.match(msg(MessageType.NODE_ERROR))] == [b, c, d]
    # a type no subscription names goes to the wildcards only
    assert [s.id for s in r.match(msg(MessageType.PONG))] == [b]
    assert [s.id for s in r.match(msg("brand_new_type"))] == [b]


def test_ids_are_unique_and_prefixed() -> None:
    r = SubscriptionRouter()
    ids = {r.add(None, _noop) for _ in range(50)}
    assert len(ids) == 50 and all(i.startswith("sub-") for i in ids)


def test_empty_and_none_event_types_are_wildcards() -> None:
    r = SubscriptionRouter()
    r.add([], _noop)
    r.add(set(), _noop)
    r.add(None, _noop)
    assert all(s.event_types is None for s in r.subscriptions())
    assert len(r.match(msg("anything"))) == 3


def test_unknown_type_subscription_receives_unknown_messages() -> None:
    r = SubscriptionRouter()
    sid = r.add("custom_event", _noop)
    assert [s.id for s in r.match(msg("custom_event"))] == [sid]
    assert r.match(msg(MessageType.NODE_LOG)) == ()
    assert r.types() == frozenset({"custom_event"})


def test_workflow_and_node_scoping() -> None:
    r = SubscriptionRouter()
    any_wf = r.add("node_result", _noop)
    wf1 = r.add("node_result", _noop, workflow_id="wf-1")
    wf1_n2 = r.add(None, _noop, workflow_id="wf-1", node_id="n-2")
    node3 = r.add(None, _noop, node_id="n-3")
    assert [s.id for s in r.match(msg("node_result", "wf-1", "n-2"))] == [any_wf, wf1, wf1_n2]
    assert [s.id for s in r.match(msg("node_result", "wf-2", "n-2"))] == [any_wf]
    assert [s.id for s in r.match(msg("node_result", None, "n-3"))] == [any_wf, node3]
    assert [s.id for s in r.match(msg("node_log", "wf-1", "n-2"))] == [wf1_n2]
    assert [s.id for s in r.match(msg("node_log", "wf-9", "n-3"))] == [node3]
    assert r.match(msg("node_log")) == ()


def test_match_and_matches_do_not_call_filter_but_accepts_does() -> None:
    calls: list[str] = []

    def boom(message: RealtimeMessage) -> bool:
        calls.append(message.id)
        raise RuntimeError("filter bug")

    def only_big(message: RealtimeMessage) -> bool:
        return bool(message.data.get("big"))

    r = SubscriptionRouter()
    r.add(None, _noop, filter=boom)
    r.add(None, _noop, filter=only_big)
    m = RealtimeMessage(type="node_log", id="m1", data={"big": False})
    subs = r.match(m)
    assert len(subs) == 2 and all(s.matches(m) for s in subs)
    assert calls == []
    with pytest.raises(RuntimeError):
        subs[0].accepts(m)
    assert calls == ["m1"]
    assert subs[1].accepts(m) is False
    assert subs[1].accepts(RealtimeMessage(type="node_log", data={"big": 1})) is True


def test_subscription_matches_directly() -> None:
    s = Subscription("s", frozenset({"node_log"}), _noop, workflow_id="w")
    assert s.matches(msg(MessageType.NODE_LOG, "w"))
    assert not s.matches(msg(MessageType.NODE_LOG, "x"))
    assert not s.matches(msg("node_error", "w"))
    assert s.accepts(msg("node_error"))  # no filter


def test_remove_and_clear() -> None:
    r = SubscriptionRouter()
    a = r.add("node_log", _noop)
    b = r.add("node_log", _noop)
    assert r.remove(a) is True
    assert r.remove(a) is False
    assert r.remove("sub-nope") is False
    assert [s.id for s in r.match(msg("node_log"))] == [b]
    assert a not in r and b in r and r.get(b) is not None and r.get(a) is None
    r.add(None, _noop)
    assert r.clear() == 2
    assert len(r) == 0 and r.match(msg("node_log")) == ()


@pytest.mark.parametrize(
    ("event_types", "callback", "kwargs"),
    [
        (None, "not callable", {}),
        (None, _noop, {"filter": 3}),
        (None, _noop, {"workflow_id": 7}),
        (None, _noop, {"node_id": b"n"}),
        (42, _noop, {}),
        ([MessageType.PING, 5], _noop, {}),
    ],
)
def test_add_validates(event_types: Any, callback: Any, kwargs: dict[str, Any]) -> None:
    r = SubscriptionRouter()
    with pytest.raises(ConfigError):
        r.add(event_types, callback, **kwargs)
    assert len(r) == 0


def test_match_result_is_immutable_and_survives_later_changes() -> None:
    r = SubscriptionRouter()
    a = r.add(None, _noop)
    first = r.match(msg("x"))
    assert isinstance(first, tuple)
    r.remove(a)
    r.add("x", _noop)
    assert [s.id for s in first] == [a]
    assert len(r.match(msg("x"))) == 1


def test_concurrent_add_remove_while_matching() -> None:
    """8 writer threads subscribe/unsubscribe while a reader matches: no exception, consistent."""
    r = SubscriptionRouter()
    keeper = r.add(["node_log"], _noop)  # never removed: every match must contain it
    stop = threading.Event()
    errors: list[BaseException] = []
    matched = [0]

    def reader() -> None:
        try:
            types = ["node_log", MessageType.NODE_LOG]
            while not stop.is_set():
                for t in types:
                    subs = r.match(msg(t, "wf-1", "n-1"))
                    ids = [s.id for s in subs]
                    assert keeper in ids
                    assert len(ids) == len(set(ids))
                    # subscription order: ids increase
                    assert ids == sorted(ids, key=lambda i: int(i.split("-")[1]))
                    assert all(s.matches(msg(t, "wf-1", "n-1")) for s in subs)
                    matched[0] += 1
        except BaseException as exc:
            errors.append(exc)

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        mine: list[str] = []
        try:
            for _ in range(125):
                choice = rng.random()
                if choice < 0.6 or not mine:
                    kind = rng.choice([None, "node_log", ["node_log", "node_error"], "other"])
                    mine.append(r.add(kind, _noop, workflow_id=rng.choice([None, "wf-1", "wf-2"])))
                else:
                    assert r.remove(mine.pop(rng.randrange(len(mine)))) is True
            for sid in mine:
                assert r.remove(sid) is True
        except BaseException as exc:
            errors.append(exc)

    t_reader = threading.Thread(target=reader)
    t_reader.start()
    writers = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=10)
    stop.set()
    t_reader.join(timeout=10)
    assert not errors, errors
    assert matched[0] > 0
    assert [s.id for s in r.subscriptions()] == [keeper]
    assert [s.id for s in r.match(msg("node_log"))] == [keeper]


def test_private_types_reach_only_subscriptions_that_name_them() -> None:
    r = SubscriptionRouter(private_types=[MessageType.PING, "pong"])
    everything = r.add(None, _noop)
    pings = r.add(MessageType.PING, _noop)
    scoped = r.add(None, _noop, workflow_id="wf-1")
    assert [s.id for s in r.match(msg(MessageType.PING))] == [pings]
    assert r.match(msg("pong")) == ()
    assert r.match(msg(MessageType.PONG, "wf-1")) == ()
    assert [s.id for s in r.match(msg("node_log", "wf-1"))] == [everything, scoped]
    r.remove(pings)
    assert r.match(msg("ping")) == ()
    r.clear()
    assert r.match(msg("ping")) == () and r.types() == frozenset()
