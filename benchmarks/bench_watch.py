"""``magk-client watch``: the CPU the terminal costs while a 1,000-node workflow runs.

In one process, a ``NodeExecutionStore`` holding one workflow of N nodes (default 1,000) in a mix of
states (a third completed with results, 20 running with progress, 5 in error, the rest pending), and
a rich ``Console`` writing terminal output (``force_terminal``, 120x50) to /dev/null. Each figure is
the CPU time of the drawing thread (``time.thread_time``):

    (a) watch view          one redraw as ``watch`` does it, through ``Live.update(..., refresh=True)``:
                            the summary line and the rows that fit the terminal (``select_rows``:
                            errors, running, paused first) as one rich ``Text`` (``node_lines``)
    (b) all rows, Text      the same with all N nodes (the ``Live`` crops them to the terminal)
    (c) rows that fit,      the rows of (a) as a rich ``Table`` (``node_table``, used for the demo's
        Table               final summary): what a live ``Table`` would cost
    (d) all rows, Table     a naive live table of every node (at most 5 frames: it is slow)
    (e) the watch loop      ``watch``'s own drawing loop (``_live_loop``) at ``--rate`` redraws a
                            second for ``--duration`` seconds while a writer thread applies
                            ``--events-per-second`` node events to the store (so every frame has
                            something new to draw); CPU of the drawing thread / wall time

(a)-(d): median and p90 over ``--frames`` frames, and the median as a share of one core at
``--rate`` frames a second (frame time x rate). The target: the terminal's refresh under 10 % of
one core for a 1,000-node workflow.

    python benchmarks/bench_watch.py [--quick] [--nodes 1000] [--rate 4] [--frames 40]
                                     [--duration 10] [--events-per-second 2000]
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import threading
import time
from typing import Any, Callable, List, Optional

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from magk_client import NodeExecutionStore, RealtimeMessage
from magk_client.cli.views import node_lines, node_table, summary_line
from magk_client.cli.watch import WorkflowTracker, _live_loop

WORKFLOW = "big"


def build_store(nodes: int) -> NodeExecutionStore:
    store = NodeExecutionStore()
    for i in range(nodes):
        node = f"node-{i:04d}"
        if i < nodes // 3:
            store.update_node_state(
                WORKFLOW, node, status="completed",
                progress={"current": 3, "total": 3, "percentage": 100, "message": f"{node}: step 3 of 3"},
                result={"rowCount": 100 * (i + 1)},
            )
        elif i < nodes // 3 + 20:
            store.update_node_state(
                WORKFLOW, node, status="running",
                progress={"current": 1, "total": 3, "percentage": 33, "message": f"{node}: step 1 of 3"},
            )
        elif i < nodes // 3 + 25:
            store.update_node_error(WORKFLOW, node, {"message": f"{node} failed", "code": "TIMEOUT"})
        else:
            store.update_node_status(WORKFLOW, node, "pending")
    return store


def null_console(width: int, height: int) -> Console:
    sink = open(os.devnull, "w")  # closed with the process
    return Console(file=sink, force_terminal=True, width=width, height=height, color_system="truecolor")


def frame_times(console: Console, render: Callable[[], Any], frames: int) -> List[float]:
    """CPU seconds of each ``Live.update(render(), refresh=True)``."""
    out: List[float] = []
    with Live(render(), console=console, auto_refresh=False, vertical_overflow="crop") as live:
        for _ in range(frames):
            start = time.thread_time()
            live.update(render(), refresh=True)
            out.append(time.thread_time() - start)
    return out


def renderer(store: NodeExecutionStore, max_rows: Optional[int], table: bool) -> Callable[[], Any]:
    def render() -> Any:
        states = list(store.get_workflow_nodes(WORKFLOW).values())
        head = Text(summary_line(WORKFLOW, "running", states), style="bold")
        body = node_table(states, max_rows=max_rows) if table else node_lines(states, max_rows=max_rows)
        return Group(head, body)

    return render


class _Conn:
    lost = threading.Event()


def watch_loop_share(
    store: NodeExecutionStore, nodes: int, rate: float, duration: float, events_per_second: float, height: int
) -> tuple[float, float, int]:
    """(CPU share of one core of the drawing thread, events applied per second, frames)."""
    console = null_console(120, height)
    tracker = WorkflowTracker(WORKFLOW, store)
    tracker.status = "running"
    stop = threading.Event()
    applied = [0]

    def writer() -> None:
        interval = 1.0 / events_per_second
        i = 0
        next_at = time.monotonic()
        while not stop.is_set():
            node = f"node-{(nodes // 3 + i % 20):04d}"
            pct = (i // 20) % 100
            store.apply_message(RealtimeMessage(
                type="node_progress_update", id=f"w-{i}", workflow_id=WORKFLOW, node_id=node,
                data={"progress": {"current": pct, "total": 100, "percentage": pct}},
            ))
            i += 1
            applied[0] = i
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                stop.wait(delay)

    thread = threading.Thread(target=writer, name="bench-writer")
    thread.start()
    frames = [0]
    real_update = Live.update

    def counting_update(self: Live, *args: Any, **kwargs: Any) -> None:
        frames[0] += 1
        real_update(self, *args, **kwargs)

    Live.update = counting_update  # type: ignore[method-assign]
    try:
        wall0, cpu0 = time.monotonic(), time.thread_time()
        _live_loop(console, store, tracker, _Conn(), queue.SimpleQueue(), 1.0 / rate, time.monotonic() + duration, None)
        wall, cpu = time.monotonic() - wall0, time.thread_time() - cpu0
    finally:
        Live.update = real_update  # type: ignore[method-assign]
        stop.set()
        thread.join()
    return cpu / wall, applied[0] / wall, frames[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames, a shorter loop")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=4.0, help="redraws a second (watch's default: 4)")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--events-per-second", type=float, default=2000.0)
    parser.add_argument("--height", type=int, default=50, help="terminal rows")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.duration = 10, 3.0
    store = build_store(args.nodes)
    console = null_console(120, args.height)
    rows = max(5, args.height - 4)  # what watch shows on such a terminal
    print(f"{args.nodes} nodes, a {120}x{args.height} terminal ({rows} rows shown), {args.rate:g} redraws/s")
    cases = (
        ("(a) watch view", rows, False, args.frames),
        ("(b) all rows, Text", None, False, args.frames),
        ("(c) rows that fit, Table", rows, True, args.frames),
        ("(d) all rows, Table", None, True, min(5, args.frames)),
    )
    for label, max_rows, table, frames in cases:
        times = frame_times(console, renderer(store, max_rows, table), frames)
        median = statistics.median(times)
        p90 = sorted(times)[int(0.9 * (len(times) - 1))]
        print(
            f"{label:<26} median {median * 1000:7.2f} ms  p90 {p90 * 1000:7.2f} ms CPU"
            f"  -> {median * args.rate * 100:5.1f} % of a core at {args.rate:g}/s"
        )
    share, eps, frames = watch_loop_share(
        store, args.nodes, args.rate, args.duration, args.events_per_second, args.height
    )
    print(
        f"{'(e) the watch loop':<26} {share * 100:5.1f} % of a core for drawing ({frames} frames in "
        f"{args.duration:g} s, {eps:,.0f} events/s applied by another thread)"
    )


if __name__ == "__main__":
    main()
