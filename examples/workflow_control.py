"""Workflow control (the seed's WorkflowControlExample): a WorkflowController starts, pauses,
resumes, reconfigures and restarts a node; a refused command is a CommandError carrying the
backend's answer.

    python examples/workflow_control.py [--url http://localhost:8000] [--workflow wf-1]

Blocking calls (``controller.pause()``) wait for the backend's answer; ``controller.submit(...)``
returns a ``concurrent.futures.Future`` instead (the form to use inside callbacks).
"""

from __future__ import annotations

import queue
from typing import List

from _backend import arguments, backend_url

from magk_client import CommandError, RealtimeAdapter, WorkflowController, WorkflowEvent

ENDS = ("workflow_completed", "workflow_failed", "workflow_stopped")


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    with backend_url(args.url, pace=0.05) as url:
        events: queue.SimpleQueue[WorkflowEvent] = queue.SimpleQueue()
        nodes: List[str] = []

        def on_event(event: WorkflowEvent) -> None:
            if event.node_id and event.node_id not in nodes:
                nodes.append(event.node_id)
            events.put(event)  # the main thread reads them: no waiting in the dispatcher

        def wait_for(*kinds: str) -> WorkflowEvent:
            while True:
                event = events.get(timeout=60)
                if event.type in kinds:
                    print(f"  event: {event.type}")
                    return event

        with RealtimeAdapter(backend_base_url=url, auth_token=args.token) as adapter:
            controller = WorkflowController(adapter, args.workflow)
            controller.subscribe(on_event)

            print("start:", controller.start({"source": "workflow_control.py"}).data)
            print("pause:", controller.pause().data)
            wait_for("workflow_paused")
            try:
                controller.pause()  # already paused: the backend says no
            except CommandError as err:
                print(f"pause again: refused ({err.server_error})")
            print("resume:", controller.resume().data)
            wait_for("workflow_resumed")
            future = controller.submit("update_config", data={"note": "set while running"})
            print("update_config (a Future):", future.result(30).success)
            wait_for(*ENDS)

            first = nodes[0]
            print(f"restart_node {first}:", controller.restart_node(first).data)
            wait_for(*ENDS)
            controller.unsubscribe_all()


if __name__ == "__main__":
    main()
