"""Workflow monitoring (the seed's WorkflowMonitorExample): every event of one workflow as it
happens, and the node states a NodeExecutionStore built from them.

    python examples/workflow_monitor.py [--url http://localhost:8000] [--workflow wf-1]
"""

from __future__ import annotations

import threading

from _backend import arguments, backend_url

from magk_client import NODE_EVENT_TYPES, NodeExecutionStore, RealtimeAdapter, WorkflowEvent

ENDS = ("workflow_completed", "workflow_failed", "workflow_stopped")


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    with backend_url(args.url) as url:
        store = NodeExecutionStore()
        ended = threading.Event()

        def on_event(event: WorkflowEvent) -> None:
            # The dispatcher thread; events of one workflow, in server order, each once.
            detail = ""
            if event.type == "node_progress" and event.progress:
                detail = f"{event.progress.get('percentage')}%"
            elif event.status:
                detail = event.status
            print(f"{event.timestamp}  {event.type:<20} {event.node_id or '':<6} {detail}")
            if event.type in ENDS:
                ended.set()

        with RealtimeAdapter(backend_base_url=url, auth_token=args.token) as adapter:
            adapter.subscribe_to_workflow(args.workflow, on_event)
            # The store keeps each node's latest state; it takes the raw node messages.
            adapter.service.subscribe(NODE_EVENT_TYPES, store.apply_message, workflow_id=args.workflow)
            adapter.start_workflow(args.workflow)
            if not ended.wait(60):
                raise SystemExit("the workflow did not end within 60 s")
        print()
        for state in store.get_workflow_nodes(args.workflow).values():
            print(f"{state.node_id:<6} {state.status!s:<10} {state.percentage or 0:5.0f}%  "
                  f"{len(state.logs)} log line(s)  version {state.version}")


if __name__ == "__main__":
    main()
