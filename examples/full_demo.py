"""The complete demonstration (the seed's RealtimeServiceDemo): backend health, the connection, a
workflow subscription, the node store, commands (start, pause, resume), and, on the embedded
backend, a broken connection in the middle of the run that the client survives without losing or
repeating an event.

    python examples/full_demo.py [--url http://localhost:8000] [--workflow wf-1]

``magk-client demo`` is the same idea with live progress bars.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, List, Optional

from _backend import arguments

from magk_client import (
    NODE_EVENT_TYPES,
    ConnectionState,
    NodeExecutionStore,
    RealtimeAdapter,
    RealtimeMessage,
    WorkflowController,
    WorkflowEvent,
)

ENDS = ("workflow_completed", "workflow_failed", "workflow_stopped")


def run(url: str, workflow: str, token: Optional[str], backend: Any = None) -> None:
    """``backend``: the embedded reference backend, to break the connection and to check delivery."""
    store = NodeExecutionStore()
    notes: queue.SimpleQueue[str] = queue.SimpleQueue()  # callbacks queue lines; this thread prints
    received: List[str] = []
    node_done = threading.Event()
    ended = threading.Event()

    def on_message(message: RealtimeMessage) -> None:  # the dispatcher thread, in server order
        received.append(message.id)
        store.apply_message(message)

    def on_workflow(event: WorkflowEvent) -> None:
        if event.type.startswith("workflow_"):
            notes.put(f"  workflow: {event.type}")
        if event.type == "node_completed":
            node_done.set()
        if event.type in ENDS:
            ended.set()

    def wait(event: threading.Event, seconds: float) -> bool:
        """Wait for ``event``, printing the callbacks' lines as they come (this thread)."""
        deadline = time.monotonic() + seconds
        while not event.wait(0.05) and time.monotonic() < deadline:
            show()
        show()
        return event.is_set()

    def show() -> None:
        while not notes.empty():
            print(notes.get())

    def on_state(state: ConnectionState, error: Optional[BaseException]) -> None:
        store.set_connection_state(state)
        notes.put(f"  connection: {state.value}" + (f" ({type(error).__name__})" if error else ""))

    adapter = RealtimeAdapter(
        backend_base_url=url,
        auth_token=token,
        connection_config={"reconnect_interval_ms": 100, "max_reconnect_interval_ms": 1000},
    )
    print("backend health:", adapter.get_backend_health().status)
    adapter.service.on_connection_state_change(on_state)
    adapter.service.subscribe([*NODE_EVENT_TYPES, "workflow_event"], on_message, workflow_id=workflow)
    controller = WorkflowController(adapter, workflow)
    controller.subscribe(on_workflow)
    with adapter:
        print("start:", controller.start().success)
        print("pause:", controller.pause().success, "/ resume:", controller.resume().success)
        if wait(node_done, 30) and backend is not None:
            notes.put("  !! the backend drops every connection (no close frame)")
            backend.drop_connections()
        if not wait(ended, 60):
            print("stop:", controller.stop().success)
        health = adapter.service.get_connection_health()
        status = adapter.get_status()
    show()
    print()
    for state in store.get_workflow_nodes(workflow).values():
        print(f"  {state.node_id:<6} {state.status!s:<10} {len(state.logs)} log line(s), version {state.version}")
    print(
        f"\nevents received: {len(received)}; reconnects: {health.total_reconnects}; "
        f"duplicates dropped: {health.duplicates_dropped}; commands answered: {status.commands.answered}"
    )
    if backend is not None:
        logged = [e["id"] for e in backend.logged_events() if e.get("workflowId") == workflow]
        print("every event exactly once, in order:", received == logged)


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    if args.url:
        run(args.url, args.workflow, args.token)
        return
    from magk_client.testing import Backend

    with Backend(pace=0.02) as backend:
        run(backend.base_url, args.workflow, args.token, backend)


if __name__ == "__main__":
    main()
