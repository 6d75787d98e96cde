"""The terminal views of the CLI (pure functions of store snapshots) and the redraw bound of
``watch``'s live loop."""

from __future__ import annotations

import io
import queue
import threading
import time

from rich.console import Console

from magk_client import NodeExecutionStore, RealtimeMessage
from magk_client.cli.views import node_lines, node_table, plain_table, select_rows, status_line, summary_line
from magk_client.cli.watch import WorkflowTracker, _live_loop


def _store(n: int = 10) -> NodeExecutionStore:
    store = NodeExecutionStore()
    for i in range(n):
        store.update_node_status("wf", f"n-{i}", "pending")
    store.update_node_state("wf", "n-7", status="running", progress={"current": 1, "total": 4})
    store.update_node_error("wf", "n-8", {"message": "disk <full>"})
    store.update_node_state("wf", "n-0", status="completed", result={"rowCount": 12})
    return store


def _states(store: NodeExecutionStore) -> list:  # type: ignore[type-arg]
    return list(store.get_workflow_nodes("wf").values())


def test_select_rows_keeps_everything_in_order_when_it_fits() -> None:
    states = _states(_store())
    rows, hidden = select_rows(states, 10)
    assert rows == states and hidden == 0


def test_select_rows_shows_what_needs_attention_first_in_workflow_order() -> None:
    states = _states(_store())
    rows, hidden = select_rows(states, 3)
    assert [s.node_id for s in rows] == ["n-0", "n-7", "n-8"]  # error and running kept, then the first
    assert hidden == 7
    rows, hidden = select_rows(states, 1)
    assert [s.node_id for s in rows] == ["n-8"] and hidden == 9  # the error wins


def test_node_lines_and_table_show_each_node() -> None:
    states = _states(_store())
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=True, color_system=None)
    console.print(node_lines(states, max_rows=4))
    text = out.getvalue()
    assert text.splitlines()[0].split()[:3] == ["node", "status", "progress"]
    assert "disk <full>" in text and "25%" in text and "result: 12 rows" in text
    assert "... 6 more node(s)" in text
    out.truncate(0)
    console.print(node_table(states, title="wf"))
    assert "disk <full>" in out.getvalue() and "n-9" in out.getvalue()


def test_plain_views() -> None:
    states = _states(_store())
    lines = plain_table(states)
    assert lines[0].split() == ["node", "status", "progress", "logs", "version", "note"]
    assert lines[1].split()[:3] == ["n-0", "completed", "100%"]
    assert summary_line("wf", "running", states) == "wf running: 10 node(s); completed 1, error 1, pending 7, running 1"
    assert status_line(states[7]).split()[:4] == ["n-7", "running", "[#####...............]", "25%"]


def _frames(writes: bool, seconds: float, rate: float) -> int:
    """Run watch's live loop for ``seconds``; count the frames drawn (each ends with the hidden-rows line)."""
    store = _store(200)
    out = io.StringIO()
    console = Console(file=out, width=120, height=30, force_terminal=True, color_system=None)
    stop = threading.Event()

    class Conn:
        lost = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            store.apply_message(RealtimeMessage(
                type="node_progress_update", id=f"e-{i}", workflow_id="wf", node_id="n-7",
                data={"progress": {"current": i % 100, "total": 100}},
            ))
            stop.wait(0.001)

    thread = threading.Thread(target=writer, name="test-writer")
    if writes:
        thread.start()
    try:
        _live_loop(console, store, WorkflowTracker("wf", store), Conn(), queue.SimpleQueue(), 1.0 / rate,
                   time.monotonic() + seconds, 10)
    finally:
        stop.set()
        if writes:
            thread.join()
    return out.getvalue().count("more node(s)")


def test_watch_redraws_at_most_at_its_rate_and_only_on_change() -> None:
    rate, seconds = 4.0, 1.0
    busy = _frames(True, seconds, rate)
    # at most one frame per interval, plus Live's own first and last frames
    assert busy <= seconds * rate + 3
    idle = _frames(False, seconds, rate)
    assert idle <= 3  # nothing changed: no redraw after the first
