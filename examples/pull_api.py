"""The pull API, for scripts and notebooks: iterate over messages instead of writing callbacks."""

from __future__ import annotations

from magk_client import RealtimeService
from magk_client.testing import Backend

with Backend(pace=0.01) as backend:
    with RealtimeService(websocket_url=backend.websocket_url, event_source_url=backend.event_source_url) as service:
        with service.messages(["node_progress_update", "workflow_event"], timeout=10) as stream:
            backend.execute_command("start_workflow", "wf-1")
            for message in stream:
                if message.type == "node_progress_update":
                    progress = message.data["progress"]
                    print(f"{message.node_id}: {progress['current']}/{progress['total']}")
                elif message.data.get("type") == "workflow_completed":
                    print("done")
                    break
