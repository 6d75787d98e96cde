"""NodeExecutionStore: semantics, concurrency, de-duplication, ordering, listeners, tables.

Pure tests drive the store directly; the last tests feed it from a RealtimeService connected
to the reference Backend on 127.0.0.1 (a workflow and a node subscription both seeing each event).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

import pytest

from magk_client import (
    NODE_EVENT_TYPES,
    ApplyResult,
    ConfigError,
    ConnectionSnapshot,
    ConnectionState,
    MessageType,
    NodeExecutionState,
    NodeExecutionStore,
    NodeStatus,
    RealtimeMessage,
    RealtimeService,
    StoreConfig,
)
from magk_client.codec import decode
from magk_client.node_state import parse_timestamp
from magk_client.testing import Backend
from magk_client.testing.recorder import Recorder

DATA = Path(__file__).parent / "data"
T0 = "2026-11-26T10:00:00.000Z"
T1 = "2026-11-26T10:00:00.001Z"
T2 = "2026-11-26T10:00:00.002Z"
JOIN = 60.0  # generous bound on joining a worker thread

State = Optional[NodeExecutionState]


def msg(mtype: str, data: Dict[str, Any], *, id: str = "", ts: str = "", wf: Optional[str] = "wf-1", node: Optional[str] = "n-1") -> RealtimeMessage:
    return RealtimeMessage(mtype, id=id, timestamp=ts, workflow_id=wf, node_id=node, data=data)


def run_threads(targets: List[Any]) -> None:
    threads = [threading.Thread(target=t, name=f"test-store-{i}") for i, t in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert not [t.name for t in threads if t.is_alive()], "a worker thread did not finish"


# ---------------------------------------------------------------------------------- basics


def test_same_node_id_in_two_workflows_does_not_collide() -> None:
    store = NodeExecutionStore()
    store.update_node_status("wf-1", "load", "running")
    store.update_node_status("wf-2", "load", "completed")
    a, b = store.get_node_state("wf-1", "load"), store.get_node_state("wf-2", "load")
    assert a is not None and b is not None
    assert (a.status, b.status) == (NodeStatus.RUNNING, NodeStatus.COMPLETED)
    assert a.version == b.version == 1
    assert set(store.get_workflow_nodes("wf-1")) == {"load"}
    assert store.get_node_state("wf-3", "load") is None
    assert len(store) == 2


def test_actions_and_partial_update() -> None:
    store = NodeExecutionStore()
    assert store.update_node_state("wf", "n", status="running", progress={"current": 1, "total": 4}) is ApplyResult.APPLIED
    s = store.get_node_state("wf", "n")
    assert s is not None and s.version == 1 and s.status == "running" and s.percentage == 25.0
    store.update_node_progress("wf", "n", 50)
    store.update_node_metadata("wf", "n", {"rows": 10})
    store.update_node_metadata("wf", "n", {"ms": 5})
    store.update_node_error("wf", "n", "boom")
    s = store.get_node_state("wf", "n")
    assert s is not None
    assert s.version == 5 and s.status is NodeStatus.ERROR and s.error_message == "boom"
    assert s.percentage == 50.0 and dict(s.metadata) == {"rows": 10, "ms": 5}
    store.update_node_result("wf", "n", {"rowCount": 3})
    s = store.get_node_state("wf", "n")
    assert s is not None and s.status is NodeStatus.COMPLETED and s.result == {"rowCount": 3}
    store.update_node_state("wf", "n", metadata=None, progress=None)
    s = store.get_node_state("wf", "n")
    assert s is not None and s.version == 7 and dict(s.metadata) == {} and s.progress is None
    assert [x.node_id for x in store.get_nodes_by_status("completed")] == ["n"]
    assert store.get_nodes_by_status(NodeStatus.RUNNING) == ()
    with pytest.raises(ConfigError):
        store.update_node_state("wf", "n")
    with pytest.raises(ConfigError):
        store.update_node_status("", "n", "running")
    with pytest.raises(ConfigError):
        store.update_node_progress("wf", "n", ["not", "a", "mapping"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        store.update_node_status("wf", "n", "running", timestamp=5)  # type: ignore[arg-type]
    assert store.stats.applied == 7


def test_snapshots_are_immutable_and_isolated_from_inputs() -> None:
    store = NodeExecutionStore()
    progress: Dict[str, Any] = {"current": 1, "total": 2, "stages": [{"name": "a"}]}
    store.update_node_progress("wf", "n", progress)
    store.add_node_log("wf", "n", {"level": "info", "message": "x"})
    progress["current"] = 99
    progress["stages"][0]["name"] = "changed"
    s = store.get_node_state("wf", "n")
    assert s is not None and s.progress is not None
    assert s.progress["current"] == 1 and s.progress["stages"][0]["name"] == "a"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.status = "running"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.progress["current"] = 5  # type: ignore[index]
    with pytest.raises(TypeError):
        s.logs[0]["message"] = "y"  # type: ignore[index]
    assert isinstance(s.logs, tuple) and isinstance(s.progress["stages"], tuple)
    nodes = store.get_workflow_nodes("wf")
    with pytest.raises(TypeError):
        nodes["m"] = s  # type: ignore[index]
    store.update_node_status("wf", "n", "running")
    assert s.version == 2 and s.status is NodeStatus.IDLE  # the old snapshot did not move
    assert nodes["n"] is s
    copy = dataclasses.replace(s)
    assert copy == s and hash(copy) == hash(s) and copy != store.get_node_state("wf", "n")


def test_unknown_status_is_kept_as_string() -> None:
    store = NodeExecutionStore()
    store.update_node_status("wf", "n", "skipped")
    s = store.get_node_state("wf", "n")
    assert s is not None and s.status == "skipped" and not isinstance(s.status, NodeStatus)


# ---------------------------------------------------------------------------------- concurrency


def test_eight_writers_and_readers_versions_count_every_update_exactly_once() -> None:
    writers, readers, per_writer = 8, 8, 1200
    store = NodeExecutionStore(StoreConfig(max_logs_per_node=writers * per_writer))
    keys = [(wf, f"n-{i}") for wf in ("wf-a", "wf-b") for i in range(5)]
    barrier = threading.Barrier(writers + readers)
    writers_done = threading.Event()
    finished: List[int] = []
    problems: List[str] = []
    samples: List[Tuple[NodeExecutionState, Dict[str, Any]]] = []

    def plan(w: int, j: int) -> Tuple[Tuple[str, str], int]:
        return keys[(w * 7 + j) % len(keys)], j % 4

    def writer(w: int) -> None:
        barrier.wait(JOIN)
        for j in range(per_writer):
            (wf, node), kind = plan(w, j)
            if kind == 0:
                store.update_node_metadata(wf, node, {f"w{w}-{j}": j})
            elif kind == 1:
                store.add_node_log(wf, node, {"level": "info", "message": f"w{w}-{j}"})
            elif kind == 2:
                store.update_node_progress(wf, node, {"current": j, "total": per_writer})
            else:
                store.update_node_status(wf, node, ("running", "paused")[j % 2])
        with lock:
            finished.append(w)
            if len(finished) == writers:
                writers_done.set()

    def reader(r: int) -> None:
        barrier.wait(JOIN)
        last: Dict[Tuple[str, str], int] = {}
        polls = 0
        while not writers_done.is_set():
            polls += 1
            for key in keys:
                s = store.get_node_state(*key)
                if s is None:
                    continue
                if s.version < last.get(key, 0):
                    problems.append(f"reader {r}: {key} went back from {last[key]} to {s.version}")
                last[key] = s.version
                if len(s.logs) + len(s.metadata) > s.version:
                    problems.append(f"reader {r}: {key} holds more than its version counts")
                if polls % 50 == 0 and r == 0:
                    samples.append((s, s.to_dict()))
            wf_nodes = store.get_workflow_nodes("wf-a")
            if any(k[0] != "wf-a" or s.workflow_id != "wf-a" for k, s in ((("wf-a", n), s) for n, s in wf_nodes.items())):
                problems.append("get_workflow_nodes mixed workflows")
            store.get_nodes_by_status("running")

    lock = threading.Lock()
    run_threads([lambda w=w: writer(w) for w in range(writers)] + [lambda r=r: reader(r) for r in range(readers)])
    assert problems == []

    expected_version: Dict[Tuple[str, str], int] = {k: 0 for k in keys}
    expected_meta: Dict[Tuple[str, str], Set[str]] = {k: set() for k in keys}
    expected_logs: Dict[Tuple[str, str], Set[str]] = {k: set() for k in keys}
    for w in range(writers):
        for j in range(per_writer):
            key, kind = plan(w, j)
            expected_version[key] += 1
            if kind == 0:
                expected_meta[key].add(f"w{w}-{j}")
            elif kind == 1:
                expected_logs[key].add(f"w{w}-{j}")
    for key in keys:
        s = store.get_node_state(*key)
        assert s is not None
        assert s.version == expected_version[key], key
        assert set(s.metadata) == expected_meta[key], key  # no lost merge
        messages = [entry["message"] for entry in s.logs]
        assert set(messages) == expected_logs[key] and len(messages) == len(expected_logs[key]), key
        for w in range(writers):  # each writer's lines in its own order
            mine = [int(m.split("-")[1]) for m in messages if m.startswith(f"w{w}-")]
            assert mine == sorted(mine)
    assert sum(expected_version.values()) == writers * per_writer == store.stats.applied
    assert samples, "the reader took no samples"
    for snapshot, as_dict in samples:
        assert snapshot.to_dict() == as_dict  # snapshots taken mid-run never changed


def test_listeners_see_every_update_once_in_order_under_concurrent_writers() -> None:
    writers, per_writer = 8, 500
    store = NodeExecutionStore()
    seen: Dict[Tuple[str, str], List[int]] = {}

    def listener(new: State, old: State) -> None:
        assert new is not None
        seen.setdefault(new.key, []).append(new.version)
        if old is not None and old.version != new.version - 1:
            seen.setdefault(("bad", "old"), []).append(new.version)

    store.subscribe(listener)
    barrier = threading.Barrier(writers)

    def writer(w: int) -> None:
        barrier.wait(JOIN)
        for j in range(per_writer):
            store.update_node_progress(f"wf-{j % 2}", f"n-{(w + j) % 3}", {"current": j, "total": per_writer})

    run_threads([lambda w=w: writer(w) for w in range(writers)])
    assert ("bad", "old") not in seen
    assert sum(len(v) for v in seen.values()) == writers * per_writer
    for key, versions in seen.items():
        assert versions == list(range(1, len(versions) + 1)), key  # update order, none lost or doubled
        state = store.get_node_state(*key)
        assert state is not None and state.version == len(versions)


# ---------------------------------------------------------------------------------- server events


def test_golden_node_messages_apply() -> None:
    store = NodeExecutionStore()
    for name in ("node_status_update", "node_progress_update", "node_log", "node_metadata", "node_result"):
        assert store.apply_message(decode((DATA / f"{name}.json").read_text())) is ApplyResult.APPLIED, name
    s = store.get_node_state("wf-1", "n-1")
    assert s is not None
    assert s.status is NodeStatus.COMPLETED and s.version == 5
    assert s.progress is not None and s.progress["percentage"] == 33
    assert s.result is not None and s.result["rowCount"] == 100 and s.result["schema"]["fields"][0]["name"] == "id"
    assert s.metadata["rowsProcessed"] == 100 and s.logs[0]["message"] == "n-1 started"
    assert s.last_updated == T0
    assert store.apply_message(decode((DATA / "node_error.json").read_text())) is ApplyResult.APPLIED
    e = store.get_node_state("wf-1", "n-2")
    assert e is not None and e.status is NodeStatus.ERROR and e.error is not None and e.error["code"] == "UNKNOWN_ERROR"


def test_non_node_and_malformed_messages_are_ignored_and_counted() -> None:
    store = NodeExecutionStore()
    bad = [
        msg("workflow_event", {"type": "workflow_started"}, node=None),
        msg("heartbeat", {}),
        msg("node_status_update", {"status": "running"}, node=None),
        msg("node_status_update", {"status": "running"}, wf=None),
        msg("node_status_update", {"status": 7}),
        msg("node_progress_update", {"progress": "half"}),
        msg("node_log", {"logs": []}),
        msg("node_log", {"logs": ["not an object"]}),
        msg("mystery", {"status": "running"}),
    ]
    assert [store.apply_message(m) for m in bad] == [ApplyResult.IGNORED] * len(bad)
    assert len(store) == 0 and store.stats.messages_ignored == len(bad)


def test_each_event_id_is_applied_once() -> None:
    store = NodeExecutionStore()
    m = msg("node_progress_update", {"progress": {"current": 1, "total": 2}}, id="e-5", ts=T0)
    assert store.apply_message(m) is ApplyResult.APPLIED
    assert store.apply_message(m) is ApplyResult.DUPLICATE  # a workflow and a node subscription both saw it
    log = msg("node_log", {"logs": [{"level": "info", "message": "once"}]}, id="e-6", ts=T0)
    assert store.apply_message(log) is ApplyResult.APPLIED
    assert store.apply_message(log) is ApplyResult.DUPLICATE
    s = store.get_node_state("wf-1", "n-1")
    assert s is not None and s.version == 2 and len(s.logs) == 1
    assert store.stats.duplicates_ignored == 2
    no_id = msg("node_log", {"logs": [{"level": "info", "message": "anonymous"}]})
    assert store.apply_message(no_id) is ApplyResult.APPLIED
    assert store.apply_message(no_id) is ApplyResult.APPLIED  # without an id nothing can be de-duplicated


def test_dedup_memory_is_bounded_by_the_window() -> None:
    store = NodeExecutionStore(StoreConfig(dedup_window=2))
    for i in (1, 2, 3):
        assert store.apply_message(msg("node_status_update", {"status": "running"}, id=f"e-{i}")) is ApplyResult.APPLIED
    assert store.apply_message(msg("node_status_update", {"status": "running"}, id="e-3")) is ApplyResult.DUPLICATE
    # e-1 fell out of the 2-id window: remembered ids are bounded, so it is applied again
    assert store.apply_message(msg("node_status_update", {"status": "running"}, id="e-1")) is ApplyResult.APPLIED


def test_clears_keep_event_ids_so_a_replay_is_still_a_duplicate() -> None:
    store = NodeExecutionStore()
    m = msg("node_status_update", {"status": "running"}, id="e-1")
    store.apply_message(m)
    assert store.clear_all_states() == 1
    assert store.apply_message(m) is ApplyResult.DUPLICATE and len(store) == 0


# ---------------------------------------------------------------------------------- ordering rule


def test_strictly_older_state_update_is_ignored_and_counted() -> None:
    store = NodeExecutionStore()
    assert store.update_node_status("wf", "n", "completed", timestamp=T2) is ApplyResult.APPLIED
    assert store.update_node_status("wf", "n", "running", timestamp=T1) is ApplyResult.STALE
    assert store.update_node_progress("wf", "n", 10, timestamp=T0) is ApplyResult.STALE
    s = store.get_node_state("wf", "n")
    assert s is not None and s.status is NodeStatus.COMPLETED and s.version == 1 and s.progress is None
    assert store.stats.stale_ignored == 2
    # the same timestamp: stream order decides, the later arrival wins
    assert store.update_node_progress("wf", "n", 20, timestamp=T2) is ApplyResult.APPLIED
    assert store.update_node_progress("wf", "n", 30, timestamp=T2) is ApplyResult.APPLIED
    # no timestamp (or an unparsable one): stream order too, and the watermark does not move
    assert store.update_node_progress("wf", "n", 40) is ApplyResult.APPLIED
    assert store.update_node_progress("wf", "n", 50, timestamp="yesterday") is ApplyResult.APPLIED
    assert store.update_node_progress("wf", "n", 60, timestamp=T1) is ApplyResult.STALE
    s = store.get_node_state("wf", "n")
    assert s is not None and s.percentage == 50.0 and s.version == 5 and s.last_updated == T2


def test_ordering_is_per_node_and_compares_instants_not_text() -> None:
    store = NodeExecutionStore()
    store.update_node_status("wf", "a", "running", timestamp="2026-11-26T11:00:00.000+01:00")  # = 10:00Z
    # textually smaller but later in time (10:00:00.5Z) -> applied
    assert store.update_node_status("wf", "a", "completed", timestamp="2026-11-26T10:00:00.5Z") is ApplyResult.APPLIED
    assert store.update_node_status("wf", "a", "error", timestamp="2026-11-26T10:59:00+01:00") is ApplyResult.STALE
    # another node (same node id in another workflow included) has its own watermark
    assert store.update_node_status("wf", "b", "running", timestamp=T0) is ApplyResult.APPLIED
    assert store.update_node_status("wf-2", "a", "running", timestamp=T0) is ApplyResult.APPLIED
    assert parse_timestamp("2026-11-26T10:00:00.000Z") == parse_timestamp("2026-11-26T10:00:00+00:00")
    assert parse_timestamp("2026-11-26T10:00:00.0000001Z") == parse_timestamp(T0)
    assert parse_timestamp("") is None and parse_timestamp("nonsense") is None


def test_logs_are_append_only_exempt_from_and_invisible_to_the_ordering_rule() -> None:
    store = NodeExecutionStore()
    store.update_node_status("wf", "n", "running", timestamp=T1)
    assert store.add_node_log("wf", "n", "late line", timestamp=T0) is ApplyResult.APPLIED  # older, still appended
    assert store.add_node_log("wf", "n", "future line", timestamp=T2) is ApplyResult.APPLIED
    # the T2 log did not move the watermark: a T1 progress is not older than any state update
    assert store.update_node_progress("wf", "n", 10, timestamp=T1) is ApplyResult.APPLIED
    s = store.get_node_state("wf", "n")
    assert s is not None
    assert [e["message"] for e in s.logs] == ["late line", "future line"]
    assert s.last_updated == T2 and s.version == 4  # newest timestamp of any applied update


def test_apply_message_uses_the_server_timestamp() -> None:
    store = NodeExecutionStore()
    store.apply_message(msg("node_status_update", {"status": "completed"}, id="e-2", ts=T1))
    assert store.apply_message(msg("node_status_update", {"status": "running"}, id="e-1", ts=T0)) is ApplyResult.STALE
    s = store.get_node_state("wf-1", "n-1")
    assert s is not None and s.status is NodeStatus.COMPLETED


# ---------------------------------------------------------------------------------- restart, log cap


@pytest.mark.parametrize("finished", ["error", "completed"])
@pytest.mark.parametrize("again", ["running", "pending"])
def test_restart_clears_stale_error_and_result(finished: str, again: str) -> None:
    store = NodeExecutionStore()
    store.update_node_result("wf", "n", {"rowCount": 1})
    store.update_node_error("wf", "n", {"message": "boom"})
    store.update_node_status("wf", "n", finished)
    store.update_node_status("wf", "n", again)
    s = store.get_node_state("wf", "n")
    assert s is not None and s.status == again and s.error is None and s.result is None and s.version == 4


def test_no_clearing_without_a_restart() -> None:
    store = NodeExecutionStore()
    store.update_node_error("wf", "n", "boom")
    store.update_node_status("wf", "n", "paused")
    s = store.get_node_state("wf", "n")
    assert s is not None and s.error_message == "boom"  # paused is not a restart
    store.update_node_status("wf", "n", "error")
    store.update_node_state("wf", "n", status="running", error={"message": "still failing"})
    s = store.get_node_state("wf", "n")
    assert s is not None and s.error_message == "still failing"  # an explicit field wins over the clearing


def test_log_cap_keeps_the_newest_entries() -> None:
    store = NodeExecutionStore(StoreConfig(max_logs_per_node=3))
    for i in range(4):
        store.add_node_log("wf", "n", f"line {i}")
    m = msg("node_log", {"logs": [{"level": "info", "message": f"batch {i}"} for i in range(2)]}, node="n", wf="wf")
    assert store.apply_message(m) is ApplyResult.APPLIED
    s = store.get_node_state("wf", "n")
    assert s is not None
    assert [e["message"] for e in s.logs] == ["line 3", "batch 0", "batch 1"]
    assert s.logs_dropped == 3 and store.stats.logs_dropped == 3 and s.version == 5  # one batch = one update
    with pytest.raises(ConfigError):
        StoreConfig(max_logs_per_node=0)
    with pytest.raises(ConfigError):
        store.add_node_log("wf", "n", [])


# ---------------------------------------------------------------------------------- listeners


def test_listener_calls_back_into_the_store_without_deadlock() -> None:
    store = NodeExecutionStore()
    calls: List[Tuple[str, int, Optional[int]]] = []
    inside: Dict[str, Any] = {}

    def listener(new: State, old: State) -> None:
        assert new is not None
        calls.append((new.node_id, new.version, None if old is None else old.version))
        if new.node_id == "n-1" and new.version == 1:
            assert store.update_node_status("wf", "n-2", "running") is ApplyResult.APPLIED
            inside["n-2"] = store.get_node_state("wf", "n-2")
            # another thread can take the store's lock while this listener runs: it is not held
            other = threading.Thread(target=lambda: inside.setdefault("nodes", store.get_workflow_nodes("wf")), daemon=True)
            other.start()
            other.join(JOIN)
            inside["other_done"] = not other.is_alive()

    store.subscribe(listener)
    worker = threading.Thread(target=lambda: store.update_node_status("wf", "n-1", "running"), daemon=True)
    worker.start()
    worker.join(JOIN)
    assert not worker.is_alive(), "deadlock: a listener calling back into the store"
    assert inside["other_done"] and set(inside["nodes"]) == {"n-1", "n-2"}
    assert inside["n-2"] is not None and inside["n-2"].version == 1
    # the nested update is delivered after the listener returns, not inside it
    assert calls == [("n-1", 1, None), ("n-2", 1, None)]
    assert store.stats.listener_errors == 0


def test_listener_that_raises_is_logged_and_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    store = NodeExecutionStore()
    got: List[int] = []

    def bad(new: State, old: State) -> None:
        raise RuntimeError("listener bug")

    def bad_filter(state: NodeExecutionState) -> bool:
        raise ValueError("filter bug")

    store.subscribe(bad)
    store.subscribe(lambda new, old: got.append(-1), filter=bad_filter)
    store.subscribe(lambda new, old: got.append(new.version if new else 0))
    with caplog.at_level(logging.ERROR, logger="magk_client.store"):
        assert store.update_node_status("wf", "n", "running") is ApplyResult.APPLIED
        assert store.update_node_status("wf", "n", "completed") is ApplyResult.APPLIED
    assert got == [1, 2]
    assert store.stats.listener_errors == 4
    records = [r for r in caplog.records if r.name == "magk_client.store"]
    assert len(records) == 4 and any("listener bug" in r.exc_text for r in records if r.exc_text)
    s = store.get_node_state("wf", "n")
    assert s is not None and s.version == 2


def test_listener_scoping_filter_unsubscribe_and_clears() -> None:
    store = NodeExecutionStore()
    by_wf: List[Tuple[Optional[str], Optional[int]]] = []
    by_node: List[str] = []
    filtered: List[str] = []

    def by_wf_cb(new: State, old: State) -> None:
        by_wf.append((new.node_id if new else None, old.version if old else None))

    sub = store.subscribe(by_wf_cb, workflow_id="wf-1")
    store.subscribe(lambda new, old: by_node.append(new.workflow_id if new else "cleared"), node_id="n-1")
    store.subscribe(lambda new, old: filtered.append(str(new.status) if new else "-"), filter=lambda s: s.status == "error")
    store.update_node_status("wf-1", "n-1", "running")
    store.update_node_status("wf-2", "n-1", "error")
    store.update_node_status("wf-1", "n-2", "running")
    assert by_wf == [("n-1", None), ("n-2", None)]
    assert by_node == ["wf-1", "wf-2"]
    assert filtered == ["error"]
    assert store.clear_node_state("wf-1", "n-1") is True
    assert store.clear_node_state("wf-1", "n-1") is False
    assert by_wf[-1] == (None, 1) and by_node[-1] == "cleared"
    assert store.clear_workflow_states("wf-2") == 1 and by_node[-1] == "cleared"
    assert store.unsubscribe(sub) is True and store.unsubscribe(sub) is False
    store.update_node_status("wf-1", "n-2", "completed")
    assert len(by_wf) == 3
    # a cleared node starts again from version 1 and without a watermark
    store.update_node_status("wf-1", "n-1", "running", timestamp=T0)
    s = store.get_node_state("wf-1", "n-1")
    assert s is not None and s.version == 1
    assert store.clear_all_states() == 2 and len(store) == 0
    with pytest.raises(ConfigError):
        store.subscribe("not callable")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- connection, tables


def test_connection_state_snapshot() -> None:
    store = NodeExecutionStore()
    assert store.connection_state == ConnectionSnapshot() and not store.connection_state.is_connected
    snap = store.set_connection_state("reconnecting", reconnect_attempts=3, last_error="network: refused")
    assert store.connection_state is snap and snap.state is ConnectionState.RECONNECTING
    assert snap.reconnect_attempts == 3 and not snap.is_connected
    store.set_connection_state(ConnectionState.CONNECTED)
    assert store.connection_state.is_connected and store.connection_state.last_error is None
    assert snap.state is ConnectionState.RECONNECTING  # the old snapshot did not change
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.reconnect_attempts = 0  # type: ignore[misc]
    with pytest.raises(ConfigError):
        store.set_connection_state("sideways")
    with pytest.raises(ConfigError):
        store.set_connection_state("connected", reconnect_attempts=-1)


def test_to_records_are_plain_json_ready_dicts() -> None:
    store = NodeExecutionStore()
    store.update_node_state("wf-1", "n-1", status="running", progress={"current": 1, "total": 2, "stages": ["a"]})
    store.add_node_log("wf-1", "n-1", "hello")
    store.update_node_result("wf-2", "n-1", {"rowCount": 1})
    records = store.to_records()
    assert [(r["workflow_id"], r["node_id"]) for r in records] == [("wf-1", "n-1"), ("wf-2", "n-1")]
    first = records[0]
    assert type(first["status"]) is str and first["status"] == "running"
    assert type(first["progress"]) is dict and type(first["progress"]["stages"]) is list
    assert type(first["logs"]) is list and type(first["logs"][0]) is dict and type(first["metadata"]) is dict
    assert set(first) == {f.name for f in dataclasses.fields(NodeExecutionState)}
    json.dumps(records)  # plain values only
    first["progress"]["current"] = 99
    s = store.get_node_state("wf-1", "n-1")
    assert s is not None and s.progress is not None and s.progress["current"] == 1


HAS_PANDAS = importlib.util.find_spec("pandas") is not None


@pytest.mark.skipif(not HAS_PANDAS, reason="pandas is not installed (optional)")
def test_to_dataframe_with_pandas() -> None:
    store = NodeExecutionStore()
    store.update_node_status("wf-1", "n-1", "running")
    frame = store.to_dataframe()
    assert list(frame["node_id"]) == ["n-1"] and list(frame["status"]) == ["running"]


@pytest.mark.skipif(HAS_PANDAS, reason="pandas is installed")
def test_to_dataframe_without_pandas_says_what_to_do() -> None:
    with pytest.raises(ImportError, match="pip install pandas"):
        NodeExecutionStore().to_dataframe()


def test_repr_html_escapes_everything() -> None:
    store = NodeExecutionStore(StoreConfig(html_max_rows=2))
    evil = '<script>alert("x")</script>'
    store.update_node_error(evil, "n&1", {"message": evil})
    store.update_node_progress("wf", '"quoted"', {"current": 1, "total": 4})
    store.update_node_status("wf", "third", "running")
    store.set_connection_state("error", reconnect_attempts=2)
    page = store._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page and "n&amp;1" in page
    assert "&quot;quoted&quot;" in page and "25%" in page
    assert "1 more node" in page and "connection: error" in page and "3 node(s)" in page
    state = store.get_node_state(evil, "n&1")
    assert state is not None
    cell = state._repr_html_()
    assert "<script>" not in cell and cell.count("&lt;script&gt;") == 2 and "n&amp;1" in cell
    assert "NodeExecutionStore 3 node(s)" in repr(store)


# ---------------------------------------------------------------------------------- against the real Backend


@pytest.fixture()
def service(backend: Backend) -> Iterator[RealtimeService]:
    svc = RealtimeService(
        websocket_url=backend.websocket_url,
        event_source_url=backend.event_source_url,
        fallback_to_secondary=False,
        reconnect_interval_ms=20,
        heartbeat_interval_ms=2000,
        heartbeat_timeout_ms=1000,
    )
    try:
        yield svc
    finally:
        svc.disconnect()


def workflow_done(m: RealtimeMessage) -> bool:
    return m.type == MessageType.WORKFLOW_EVENT and m.data.get("type") in ("workflow_completed", "workflow_failed")


def test_store_fed_by_workflow_and_node_subscriptions_applies_each_event_once(
    backend: Backend, service: RealtimeService
) -> None:
    backend.add_workflow("wf-1", ["n-1", "n-2"], fail_node="n-2", progress_steps=2)
    backend.add_workflow("wf-2", ["n-1", "n-2"], progress_steps=2)
    store = NodeExecutionStore()
    events: Recorder[RealtimeMessage] = Recorder()
    done: Recorder[RealtimeMessage] = Recorder()
    service.subscribe(NODE_EVENT_TYPES, events)
    # the integration's pattern: a workflow subscription and a node subscription overlap on wf-1/n-1
    service.subscribe(NODE_EVENT_TYPES, store.apply_message, workflow_id="wf-1")
    service.subscribe(NODE_EVENT_TYPES, store.apply_message, workflow_id="wf-1", node_id="n-1")
    service.subscribe(NODE_EVENT_TYPES, store.apply_message, workflow_id="wf-2")
    service.subscribe(MessageType.WORKFLOW_EVENT, done, filter=workflow_done)
    service.connect(timeout=10)
    backend.execute_command("start_workflow", "wf-1")
    backend.execute_command("start_workflow", "wf-2")
    done.wait_count(2, timeout=30)  # the dispatcher applied every node event before these

    per_node: Dict[Tuple[str, str], int] = {}
    for m in events.items:
        assert m.workflow_id is not None and m.node_id is not None
        per_node[(m.workflow_id, m.node_id)] = per_node.get((m.workflow_id, m.node_id), 0) + 1
    for (wf, node), count in per_node.items():
        s = store.get_node_state(wf, node)
        assert s is not None and s.version == count, (wf, node)
    assert store.stats.duplicates_ignored == per_node[("wf-1", "n-1")]
    assert store.stats.stale_ignored == 0
    failed, ok = store.get_node_state("wf-1", "n-2"), store.get_node_state("wf-2", "n-2")
    assert failed is not None and failed.status is NodeStatus.ERROR and failed.error_message
    assert ok is not None and ok.status is NodeStatus.COMPLETED and ok.error is None and ok.result is not None

    # restart the failed node with the fault removed: the stale error must not survive the re-run
    backend.execute_command("update_config", "wf-1", data={"failNode": None})
    backend.execute_command("restart_node", "wf-1", node_id="n-2")
    done.wait_count(3, timeout=30)
    rerun = store.get_node_state("wf-1", "n-2")
    assert rerun is not None and rerun.status is NodeStatus.COMPLETED
    assert rerun.error is None and rerun.result is not None
    assert rerun.version == sum(1 for m in events.items if (m.workflow_id, m.node_id) == ("wf-1", "n-2"))
