"""``magk-client demo``: the SDK end to end against the embedded reference backend.

It starts a backend on 127.0.0.1, connects a :class:`~magk_client.adapter.RealtimeAdapter`, feeds
a :class:`~magk_client.store.NodeExecutionStore` from it and starts a workflow with
``adapter.start_workflow``. Halfway through, the backend resets every connection (no close frame)
and refuses the preferred transport for a while, so the client falls back to the other one
(WebSocket -> SSE, or SSE -> WebSocket with ``transport="sse"``) and later returns. At the end it
checks against the backend's own log that every event arrived exactly once and in order.

On a terminal (a rich ``console`` given) each node has a live progress bar and the end is a
summary table; otherwise plain lines go to ``out``. Threads: the SDK's dispatcher thread only
records (ids, the store, events, notes on a queue); this function's thread draws, at most
:data:`REFRESH_RATE` times a second. Needs the ``server`` extra (aiohttp); rich for live output.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

from .cli._common import no_interrupts
from .cli.views import node_percentage, node_table, plain_table, status_line
from .events import WorkflowEvent
from .models import ConnectionState, ConnectionType, RealtimeMessage
from .node_state import NodeExecutionState
from .store import NodeExecutionStore

__all__ = ["REFRESH_RATE", "run_demo"]

#: redraws a second, at most
REFRESH_RATE = 8.0
#: how long the backend refuses the preferred transport after the reset
REFUSAL_SECONDS = 0.5
WORKFLOW = "demo"
_ENDS = ("workflow_completed", "workflow_failed", "workflow_stopped")


class _PlainView:
    """Plain lines: a line per node status or progress change, then a text table."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._shown: Dict[str, Tuple[str, Optional[float]]] = {}

    def __enter__(self) -> _PlainView:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def note(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def update(self, states: Sequence[NodeExecutionState]) -> None:
        for state in states:
            key = (str(state.status), node_percentage(state))
            if self._shown.get(state.node_id) != key:
                self._shown[state.node_id] = key
                self.note("    " + status_line(state))

    def finish(self, states: Sequence[NodeExecutionState], lines: List[str]) -> None:
        self.note("")
        for line in plain_table(states):
            self.note("  " + line)
        for line in lines:
            self.note(line)


class _RichView:
    """A rich ``Progress``: one bar per node, notes printed above the bars; a table at the end."""

    def __init__(self, console: Any, nodes: Sequence[str]) -> None:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        self.console = console
        self.progress = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            auto_refresh=False,  # this thread redraws, at REFRESH_RATE at most: no refresh thread
        )
        self.tasks = {node: self.progress.add_task(node, total=100.0, status="pending") for node in nodes}

    def __enter__(self) -> _RichView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def note(self, text: str) -> None:
        self.progress.console.print(text, highlight=False)

    def update(self, states: Sequence[NodeExecutionState]) -> None:
        from .cli.views import STATUS_STYLES

        for state in states:
            task = self.tasks.get(state.node_id)
            if task is None:
                continue
            status = str(state.status)
            style = STATUS_STYLES.get(status, "")
            self.progress.update(
                task, completed=node_percentage(state) or 0.0, status=f"[{style}]{status}[/]" if style else status
            )
        self.progress.refresh()

    def finish(self, states: Sequence[NodeExecutionState], lines: List[str]) -> None:
        self.console.print(node_table(states, title=f"workflow {WORKFLOW}"))
        for line in lines:
            self.console.print(line, highlight=False)


class _Recorder:
    """The demo's callbacks (dispatcher thread): event ids in arrival order, the store, the
    moments that matter, and notes for the drawing thread."""

    def __init__(self, store: NodeExecutionStore, half_node: str) -> None:
        self.store = store
        self.half_node = half_node
        self.ids: List[str] = []
        self.notes: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.half = threading.Event()
        self.done = threading.Event()
        self.outcome = ""
        self.service: Any = None

    def on_message(self, message: RealtimeMessage) -> None:
        if message.id:
            self.ids.append(message.id)
        self.store.apply_message(message)
        if message.node_id == self.half_node and message.data.get("status") == "completed":
            self.half.set()

    def on_workflow(self, event: WorkflowEvent) -> None:
        if event.type.startswith("workflow_"):
            self.notes.put(f"  workflow {event.workflow_id}: {event.type}")
        if event.type in _ENDS:
            self.outcome = event.type
            self.done.set()

    def on_state(self, state: ConnectionState, error: Optional[BaseException]) -> None:
        self.store.set_connection_state(state, last_error=None if error is None else type(error).__name__)
        reason = f" ({type(error).__name__}: {error})" if error is not None else ""
        if state is ConnectionState.CONNECTED and self.service is not None:
            reason = f" over {self.service.connection_type}"
        self.notes.put(f"  -- connection {state.value}{reason}")


def run_demo(
    out: TextIO,
    *,
    nodes: int = 6,
    pace: float = 0.04,
    timeout: float = 60.0,
    transport: str = "websocket",
    console: Any = None,
) -> int:
    """Run the demo; returns a process exit code (0: the workflow completed and every event
    arrived exactly once, in order). ``console``: a rich Console for live output, else plain lines."""
    try:
        from .testing import Backend
    except ImportError:  # pragma: no cover - depends on the install
        out.write("the demo needs the reference backend: pip install 'magk-client[server]'\n")
        return 2
    from .adapter import RealtimeAdapter

    node_names = [f"node-{i}" for i in range(1, nodes + 1)]
    preferred = ConnectionType.EVENTSOURCE if transport in ("sse", "eventsource") else ConnectionType.WEBSOCKET
    store = NodeExecutionStore()
    rec = _Recorder(store, node_names[(nodes - 1) // 2])
    view: Any = _RichView(console, node_names) if console is not None else _PlainView(out)
    with Backend(pace=pace, heartbeat_interval=1.0, workflows={WORKFLOW: node_names}) as backend, view:
        view.note(f"reference backend on {backend.base_url}")
        adapter = RealtimeAdapter(
            backend_base_url=backend.base_url,
            enable_health_check=False,
            connection_config={
                "preferred_type": preferred,
                "reconnect_interval_ms": 100,
                "max_reconnect_interval_ms": 1000,
                "heartbeat_interval_ms": 1000,
                "heartbeat_timeout_ms": 500,
                "preferred_retry_interval_ms": 700,
                "min_stable_connection_ms": 500,
            },
        )
        try:
            rec.service = adapter.service
            adapter.service.on_connection_state_change(rec.on_state)
            adapter.service.subscribe(None, rec.on_message, workflow_id=WORKFLOW)
            adapter.subscribe_to_workflow(WORKFLOW, rec.on_workflow)
            adapter.connect(timeout)
            view.note(f"starting workflow '{WORKFLOW}' with adapter.start_workflow")
            adapter.start_workflow(WORKFLOW, timeout=timeout)
            _drive(view, rec, backend, preferred, time.monotonic() + timeout)
            health = adapter.service.get_connection_health()
        finally:
            with no_interrupts():  # a second Ctrl-C must not cut the clean-up short
                adapter.close()
        logged = [e["id"] for e in backend.logged_events() if e.get("workflowId") == WORKFLOW]
    exact = rec.ids == logged
    finished = rec.outcome == "workflow_completed"
    stats = store.stats
    view.finish(
        list(store.get_workflow_nodes(WORKFLOW).values()),
        [
            "",
            f"workflow finished: {finished}",
            f"events: {len(rec.ids)} received, {len(logged)} sent by the backend; "
            f"duplicates dropped: {health.duplicates_dropped}; reconnects: {health.total_reconnects}; "
            f"transport switches: {health.transport_switches}",
            f"store: {stats.applied} node updates applied to {stats.nodes} nodes, "
            f"{stats.duplicates_ignored} duplicates ignored",
            "every event exactly once, in order: " + ("yes" if exact else "NO"),
        ],
    )
    return 0 if finished and exact else 1


def _drive(view: Any, rec: _Recorder, backend: Any, preferred: ConnectionType, deadline: float) -> None:
    """Draw until the workflow ends; at the halfway node, reset the connections and refuse the
    preferred transport for :data:`REFUSAL_SECONDS` (this thread's clock, no sleeping)."""
    refuse = backend.refuse_websocket if preferred is ConnectionType.WEBSOCKET else backend.refuse_sse
    fault_at: Optional[float] = None
    lifted = False
    try:
        while True:
            ended = rec.done.wait(1.0 / REFRESH_RATE)
            now = time.monotonic()
            if rec.half.is_set() and fault_at is None:
                rec.notes.put(
                    f"  !! fault: the backend resets every connection and refuses {preferred} for a while"
                )
                refuse(503)
                backend.drop_connections()
                fault_at = now
            if fault_at is not None and not lifted and now - fault_at >= REFUSAL_SECONDS:
                refuse(None)
                lifted = True
            _show_notes(view, rec)
            view.update(list(rec.store.get_workflow_nodes(WORKFLOW).values()))
            if ended or now >= deadline:
                return
    finally:
        if fault_at is not None and not lifted:
            refuse(None)


def _show_notes(view: Any, rec: _Recorder) -> None:
    while True:
        try:
            view.note(rec.notes.get_nowait())
        except queue.Empty:
            return
