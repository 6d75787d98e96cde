"""Connect to a MAGK backend, print a workflow's events, and show the connection health.

Runs against the embedded reference backend (``pip install "magk-client[server]"``);
pass a base URL to use a real backend instead: ``python basic_connect.py http://localhost:8000``.
"""

from __future__ import annotations

import sys

from magk_client import RealtimeAdapterConfig, RealtimeMessage, RealtimeService
from magk_client.testing import Backend


def show(message: RealtimeMessage) -> None:
    # Runs on the SDK's dispatcher thread, in the order the server sent the events.
    print(f"{message.id:>6} {message.type:<22} {message.node_id or '':<6} {message.data}")


def main(base_url: str) -> None:
    urls = RealtimeAdapterConfig(backend_base_url=base_url)
    with RealtimeService(websocket_url=urls.websocket_url, event_source_url=urls.event_source_url) as service:
        service.subscribe(["workflow_event", "node_status_update", "node_result"], show)
        # Subscribe before starting, so the end of the workflow cannot be missed.
        done = service.messages("workflow_event", timeout=30)
        service.send_message(
            {"id": "req-1", "type": "workflow_event", "workflowId": "wf-1",
             "data": {"type": "command", "command": {"command": "start_workflow", "workflowId": "wf-1",
                                                     "requestId": "req-1"}}}
        )
        with done:
            next(m for m in done if m.data.get("type") in ("workflow_completed", "workflow_failed"))
        print(service.get_connection_health())


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with Backend(pace=0.01) as backend:
            main(backend.base_url)
