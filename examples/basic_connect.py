"""Basic connection (the seed's BasicRealtimeExample): connect, look at the status and the backend's
health, start a workflow, wait for its end, disconnect.

    python examples/basic_connect.py [--url http://localhost:8000] [--workflow wf-1]
"""

from __future__ import annotations

import threading

from _backend import arguments, backend_url

from magk_client import RealtimeAdapter, WorkflowEvent


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    with backend_url(args.url) as url:
        ended = threading.Event()

        def on_event(event: WorkflowEvent) -> None:
            # Runs on the SDK's dispatcher thread, in the order the server sent the events.
            print(f"  {event.type:<20} {event.node_id or ''}")
            if event.type in ("workflow_completed", "workflow_failed", "workflow_stopped"):
                ended.set()

        adapter = RealtimeAdapter(backend_base_url=url, auth_token=args.token)
        adapter.subscribe_to_workflow(args.workflow, on_event)  # before starting: nothing is missed
        with adapter:  # connect() ... close(): every SDK thread is joined on the way out
            status = adapter.get_status()
            print(f"connected: {status.connected} over {status.connection_type}")
            print(f"backend health: {adapter.get_backend_health().status}")
            answer = adapter.start_workflow(args.workflow)  # blocks until the backend answers
            print(f"start_workflow: success={answer.success} data={answer.data}")
            if not ended.wait(60):
                raise SystemExit("the workflow did not end within 60 s")
            health = adapter.service.get_connection_health()
            print(f"events: {health.messages_received} received, {health.duplicates_dropped} duplicates dropped")
        print(f"disconnected: {not adapter.is_connected}")


if __name__ == "__main__":
    main()
