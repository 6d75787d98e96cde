"""``magk-client watch WORKFLOW_ID``: a live table of the workflow's nodes until the workflow ends.

The SDK's dispatcher thread feeds a :class:`~magk_client.store.NodeExecutionStore` (node events)
and a :class:`WorkflowTracker` (workflow events); the main thread redraws from the store's
snapshots at most ``--refresh-rate`` times a second, and only when something changed, so the cost
of the terminal does not grow with the event rate (benchmarks/bench_watch.py). Not a terminal (or
``--plain``): one line per node status change instead.

It shows what happens from the moment it connects (earlier events are not replayed), so start it
before, or while, the workflow runs. When ``workflow_started`` lists the workflow's nodes (the
reference backend's does), they are shown as ``pending`` from the start.

Exit status: 0 when the workflow completes, 1 when it fails or is stopped, when ``--timeout``
passes first, or when the connection is lost.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from typing import Any, Iterator, List, Optional, Union

from ..events import NODE_EVENT_TYPES, WorkflowEvent
from ..node_state import NodeExecutionState
from ..store import NodeExecutionStore
from ._common import (
    CliError,
    ConnectionWatch,
    add_connection_arguments,
    add_output_arguments,
    build_adapter,
    connect,
    make_console,
    positive_float,
    positive_int,
    session,
)
from .views import node_lines, status_line, summary_line

__all__ = ["MAX_REFRESH_RATE", "WorkflowTracker", "add_arguments", "run"]

#: the most redraws a second ``--refresh-rate`` may ask for
MAX_REFRESH_RATE = 10.0
_ENDS = {"workflow_completed": "completed", "workflow_failed": "failed", "workflow_stopped": "stopped"}
_STATES = {"workflow_started": "running", "workflow_paused": "paused", "workflow_resumed": "running"}


def _rate(text: str) -> float:
    value = positive_float(text)
    if value > MAX_REFRESH_RATE:
        raise argparse.ArgumentTypeError(f"at most {MAX_REFRESH_RATE:g} redraws a second, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workflow_id", metavar="WORKFLOW_ID", help="the workflow to watch")
    parser.add_argument(
        "--refresh-rate",
        type=_rate,
        default=4.0,
        metavar="HZ",
        help=f"redraws a second at most (default 4, at most {MAX_REFRESH_RATE:g})",
    )
    parser.add_argument(
        "--timeout", type=positive_float, default=None, metavar="SECONDS", help="give up after this long (exit 1)"
    )
    parser.add_argument(
        "--max-rows", type=positive_int, default=None, metavar="N", help="table rows (default: what fits)"
    )
    add_output_arguments(parser)
    add_connection_arguments(parser)


Line = Union[str, NodeExecutionState]


class WorkflowTracker:
    """The workflow's own state from its events (callbacks on the dispatcher thread; the main
    thread reads ``status``, ``outcome`` and ``ended``). With ``lines``, node status changes and
    workflow events are also queued for plain output."""

    def __init__(
        self,
        workflow_id: str,
        store: NodeExecutionStore,
        lines: Optional[queue.SimpleQueue[Line]] = None,
    ) -> None:
        self.workflow_id = workflow_id
        self.store = store
        self.status = "waiting"
        self.outcome: Optional[str] = None
        self.ended = threading.Event()
        self._lines = lines

    def on_workflow_event(self, event: WorkflowEvent) -> None:
        kind = event.type
        if kind == "workflow_started":
            self._seed(event)
        if kind in _STATES:
            self.status = _STATES[kind]
        elif kind in _ENDS:
            self.status = self.outcome = _ENDS[kind]
        else:
            return
        if self._lines is not None:
            self._lines.put(f"-- workflow {self.workflow_id} {self.status}")
        if self.outcome is not None:
            self.ended.set()

    def _seed(self, event: WorkflowEvent) -> None:
        """A new run: its nodes (when ``workflow_started`` lists them, as the reference backend's
        does) start as ``pending``, so nodes that never run still show up."""
        nodes = event.data.get("nodes")
        if event.data.get("restartedNode") is not None or not isinstance(nodes, list):
            return
        for node in nodes:
            if isinstance(node, str) and node:
                self.store.update_node_status(self.workflow_id, node, "pending")

    def on_node_change(self, new: Optional[NodeExecutionState], old: Optional[NodeExecutionState]) -> None:
        if self._lines is not None and new is not None and (old is None or new.status != old.status):
            self._lines.put(new)


def run(args: argparse.Namespace) -> int:
    workflow_id: str = args.workflow_id
    console = make_console(args)
    lines: queue.SimpleQueue[Line] = queue.SimpleQueue()  # filled on the dispatcher thread
    store = NodeExecutionStore()
    tracker = WorkflowTracker(workflow_id, store, lines if console is None else None)
    adapter = build_adapter(args)
    with session(adapter):
        conn = ConnectionWatch(adapter, lambda text: lines.put("-- " + text))
        adapter.service.subscribe(NODE_EVENT_TYPES, store.apply_message, workflow_id=workflow_id)
        adapter.subscribe_to_workflow(workflow_id, tracker.on_workflow_event)
        if console is None:
            store.subscribe(tracker.on_node_change, workflow_id=workflow_id)
        connect(adapter, args)
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        interval = 1.0 / args.refresh_rate
        if console is None:
            _plain_loop(tracker, conn, lines, interval, deadline)
        else:
            _live_loop(console, store, tracker, conn, lines, interval, deadline, args.max_rows)
        states = list(store.get_workflow_nodes(workflow_id).values())
    return _finish(console, tracker, conn, states, args)


def _ticks(
    tracker: WorkflowTracker,
    conn: ConnectionWatch,
    lines: queue.SimpleQueue[Line],
    interval: float,
    deadline: Optional[float],
) -> Iterator[List[Line]]:
    """Every ``interval`` seconds (sooner when the workflow ends) the lines queued since; the last
    tick is the one on which the workflow ended, the connection was lost or ``deadline`` passed."""
    while True:
        ended = tracker.ended.wait(interval)
        batch: List[Line] = []
        while True:
            try:
                batch.append(lines.get_nowait())
            except queue.Empty:
                break
        yield batch
        if ended or conn.lost.is_set() or (deadline is not None and time.monotonic() >= deadline):
            return


def _plain_loop(
    tracker: WorkflowTracker,
    conn: ConnectionWatch,
    lines: queue.SimpleQueue[Line],
    interval: float,
    deadline: Optional[float],
) -> None:
    """Print queued lines at most ``1/interval`` times a second until the end (main thread)."""
    out = sys.stdout
    for batch in _ticks(tracker, conn, lines, interval, deadline):
        for item in batch:
            out.write((item if isinstance(item, str) else status_line(item)) + "\n")
        out.flush()


def _live_loop(
    console: Any,
    store: NodeExecutionStore,
    tracker: WorkflowTracker,
    conn: ConnectionWatch,
    notes: queue.SimpleQueue[Line],
    interval: float,
    deadline: Optional[float],
    max_rows: Optional[int],
) -> None:
    """Redraw a rich ``Live`` table, only when the store or the workflow changed (main thread)."""
    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    workflow_id = tracker.workflow_id
    rows = max_rows if max_rows is not None else max(5, console.size.height - 4)
    drawn: Any = None

    def render() -> Any:
        states = list(store.get_workflow_nodes(workflow_id).values())
        head = Text(summary_line(workflow_id, tracker.status, states), style="bold")
        return Group(head, node_lines(states, max_rows=rows))

    with Live(render(), console=console, auto_refresh=False, vertical_overflow="crop") as live:
        for batch in _ticks(tracker, conn, notes, interval, deadline):
            for note in batch:
                live.console.print(Text(str(note), style="dim"))
            seen = (store.stats.applied, tracker.status)
            if seen != drawn:
                drawn = seen
                live.update(render(), refresh=True)


def _finish(
    console: Any, tracker: WorkflowTracker, conn: ConnectionWatch, states: List[NodeExecutionState], args: Any
) -> int:
    workflow_id = tracker.workflow_id
    if tracker.outcome is None:
        if conn.lost.is_set():
            raise CliError(f"lost the connection while watching {workflow_id}: {conn.error}")
        raise CliError(f"workflow {workflow_id} did not end within {args.timeout:g} s (it is {tracker.status})")
    if console is None:
        print(summary_line(workflow_id, tracker.outcome, states), flush=True)
    else:
        style = "bold green" if tracker.outcome == "completed" else "bold red"
        console.print(f"[{style}]workflow {workflow_id} {tracker.outcome}[/]", highlight=False)
    return 0 if tracker.outcome == "completed" else 1
