"""``magk-client demo``: the SDK end to end against the embedded reference backend.

It starts a backend on 127.0.0.1, connects a :class:`RealtimeService`, runs a
workflow and shows its events live; halfway through it breaks the connection
(a reset with no close frame), then refuses WebSocket upgrades so the client
falls back to Server-Sent Events, and at the end checks against the backend's
own log that every event arrived exactly once and in order.

Needs the ``server`` extra (aiohttp). Output goes to the stream it is given.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional, TextIO

from .models import ConnectionState, MessageType, RealtimeMessage
from .service import RealtimeService

__all__ = ["run_demo"]


def _bar(fraction: float, width: int = 20) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "#" * filled + "." * (width - filled)


class _Printer:
    """Formats events for a terminal (runs on the dispatcher thread)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.events: List[RealtimeMessage] = []
        self.done = threading.Event()
        self.half = threading.Event()
        self.lock = threading.Lock()
        self.service: Optional[RealtimeService] = None

    def write(self, text: str) -> None:
        with self.lock:
            self.out.write(text + "\n")
            self.out.flush()

    def on_message(self, message: RealtimeMessage) -> None:
        if not message.id:
            return
        self.events.append(message)
        data = message.data
        node = message.node_id or ""
        kind = message.type
        if kind is MessageType.WORKFLOW_EVENT:
            self.write(f"  [{message.id:>6}] workflow {message.workflow_id}: {data.get('type')}")
            if data.get("type") in ("workflow_completed", "workflow_failed", "workflow_stopped"):
                self.done.set()
        elif kind is MessageType.NODE_STATUS_UPDATE:
            self.write(f"  [{message.id:>6}]   node {node:<8} {data.get('status')}")
            if data.get("status") == "completed" and node.endswith("2"):
                self.half.set()
        elif kind is MessageType.NODE_PROGRESS_UPDATE:
            progress = data.get("progress") or {}
            total = progress.get("total") or 1
            fraction = float(progress.get("current", 0)) / float(total)
            self.write(f"  [{message.id:>6}]   node {node:<8} [{_bar(fraction)}] {fraction:5.0%}")
        elif kind is MessageType.NODE_RESULT:
            result = data.get("result") or {}
            self.write(f"  [{message.id:>6}]   node {node:<8} result: {result.get('rowCount')} rows")

    def on_state(self, state: ConnectionState, error: Optional[BaseException]) -> None:
        reason = f" ({type(error).__name__}: {error})" if error is not None else ""
        if state is ConnectionState.CONNECTED and self.service is not None:
            reason = f" over {self.service.connection_type}"
        self.write(f"  -- connection {state.value}{reason}")


def run_demo(out: TextIO, *, nodes: int = 6, pace: float = 0.04, timeout: float = 60.0) -> int:
    """Run the demo; returns a process exit code (0: every event exactly once, in order)."""
    try:
        from .testing import Backend
    except ImportError:  # pragma: no cover - depends on the install
        out.write("the demo needs the reference backend: pip install 'magk-client[server]'\n")
        return 2
    node_names = [f"node-{i}" for i in range(1, nodes + 1)]
    printer = _Printer(out)
    with Backend(pace=pace, heartbeat_interval=1.0, workflows={"demo": node_names}) as backend:
        printer.write(f"reference backend on {backend.base_url}")
        service = RealtimeService(
            websocket_url=backend.websocket_url,
            event_source_url=backend.event_source_url,
            reconnect_interval_ms=100,
            max_reconnect_interval_ms=1000,
            heartbeat_interval_ms=1000,
            heartbeat_timeout_ms=500,
            preferred_retry_interval_ms=700,
            min_stable_connection_ms=500,
        )
        printer.service = service
        service.on_connection_state_change(printer.on_state)
        service.subscribe(None, printer.on_message, workflow_id="demo")
        with service:
            printer.write(f"connected over {service.connection_type}; starting workflow 'demo'")
            command: Dict[str, Any] = {
                "command": "start_workflow",
                "workflowId": "demo",
                "requestId": "demo-start-1",
            }
            service.send_message(
                {"id": "demo-start-1", "type": "workflow_event", "workflowId": "demo",
                 "data": {"type": "command", "command": command}}
            )
            if printer.half.wait(timeout / 2):
                printer.write("  !! fault: the backend resets every connection, and refuses WebSocket for a while")
                backend.refuse_websocket(503)
                backend.drop_connections()
                time.sleep(0.5)  # demo pacing only: let the client run on SSE for a moment
                backend.refuse_websocket(None)
            finished = printer.done.wait(timeout)
            health = service.get_connection_health()
        logged = [e["id"] for e in backend.logged_events() if e.get("workflowId") == "demo"]
    received = [m.id for m in printer.events]
    exact = received == logged
    printer.write("")
    printer.write(f"workflow finished: {finished}")
    printer.write(
        f"events: {len(received)} received, {len(logged)} sent by the backend; "
        f"duplicates dropped: {health.duplicates_dropped}; reconnects: {health.total_reconnects}; "
        f"transport switches: {health.transport_switches}"
    )
    printer.write("every event exactly once, in order: " + ("yes" if exact else "NO"))
    return 0 if finished and exact else 1
