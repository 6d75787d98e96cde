"""The pull API, for scripts and notebooks: iterate over messages instead of writing callbacks.

    python examples/pull_api.py [--url http://localhost:8000] [--workflow wf-1]
"""

from __future__ import annotations

from _backend import arguments, backend_url

from magk_client import RealtimeAdapter


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    with backend_url(args.url, pace=0.01) as url, RealtimeAdapter(
        backend_base_url=url, auth_token=args.token
    ) as adapter:
        # The stream subscribes when made, so nothing after this line is missed.
        with adapter.service.messages(
            ["node_progress_update", "workflow_event"], timeout=30, workflow_id=args.workflow
        ) as stream:
            adapter.start_workflow(args.workflow)
            for message in stream:
                if message.type == "node_progress_update":
                    progress = message.data["progress"]
                    print(f"{message.node_id}: {progress['current']}/{progress['total']}")
                elif message.data.get("type") in ("workflow_completed", "workflow_failed", "workflow_stopped"):
                    print(message.data["type"])
                    break
        print("done")


if __name__ == "__main__":
    main()
