"""Node monitoring (the seed's NodeMonitorExample): the updates of one node, with typed payloads
(``message.payload``: NodeProgress, NodeLogs, NodeMetadata, NodeResult, NodeError), and the node's
state in a NodeExecutionStore.

    python examples/node_monitor.py [--url http://localhost:8000] [--workflow wf-1] [--node n-2]
"""

from __future__ import annotations

import threading

from _backend import arguments, backend_url

from magk_client import (
    NodeEvent,
    NodeExecutionState,
    NodeExecutionStore,
    NodeLogs,
    NodeMetadata,
    NodeProgress,
    NodeResult,
    RealtimeAdapter,
)


def describe(event: NodeEvent) -> str:
    payload = event.message.payload if event.message is not None else None
    if isinstance(payload, NodeProgress):
        return f"progress {payload.current}/{payload.total} ({payload.percentage}%) {payload.message or ''}"
    if isinstance(payload, NodeLogs):
        return "; ".join(f"[{log.level}] {log.message}" for log in payload.logs)
    if isinstance(payload, NodeMetadata):
        return f"metadata: {payload.rows_processed} rows in {payload.execution_time} ms"
    if isinstance(payload, NodeResult):
        return f"result: {payload.row_count} rows"
    if event.status:
        return f"status {event.status}"
    return event.type


def main() -> None:
    args = arguments(__doc__.splitlines()[0], node=True)
    node = args.node
    with backend_url(args.url) as url:
        store = NodeExecutionStore()
        done = threading.Event()

        def on_node(event: NodeEvent) -> None:
            # The dispatcher thread: this node's updates only, in server order.
            print(f"  {event.type:<22} {describe(event)}")
            store.apply_message(event.message)  # type: ignore[arg-type]

        def on_state(new: NodeExecutionState, old: object) -> None:
            if new is not None and str(new.status) in ("completed", "error"):
                done.set()

        with RealtimeAdapter(backend_base_url=url, auth_token=args.token) as adapter:
            adapter.subscribe_to_node(node, args.workflow, on_node)
            store.subscribe(on_state, workflow_id=args.workflow, node_id=node)
            adapter.start_workflow(args.workflow)
            if not done.wait(60):
                raise SystemExit(f"node {node} did not finish within 60 s")
        state = store.get_node_state(args.workflow, node)
        assert state is not None
        print(f"{node}: {state.status}, {state.percentage:.0f}%, {len(state.logs)} log line(s), "
              f"{state.version} updates applied, last at {state.last_updated}")


if __name__ == "__main__":
    main()
