"""Exactly-once delivery across faults: while 2,000 events stream, the backend resets the
connection, then refuses WebSocket upgrades (the client falls back to SSE), then accepts them
again (the client returns to WebSocket). Every event still arrives once, in order.
"""

from __future__ import annotations

import threading
from typing import List, Optional

from magk_client import ConnectionState, ConnectionType, RealtimeMessage, RealtimeService
from magk_client.testing import Backend

TOTAL = 2000


def main() -> None:
    received: List[str] = []
    all_in = threading.Event()
    connected = {kind: threading.Event() for kind in ConnectionType}

    def on_event(message: RealtimeMessage) -> None:
        received.append(message.id)
        if len(received) == TOTAL:
            all_in.set()

    with Backend() as backend:
        service = RealtimeService(
            websocket_url=backend.websocket_url,
            event_source_url=backend.event_source_url,
            reconnect_interval_ms=20,
            preferred_retry_interval_ms=300,
        )

        def on_state(state: ConnectionState, error: Optional[BaseException]) -> None:
            kind = service.connection_type
            print(f"state: {state.value} over {kind}" + (f" ({type(error).__name__})" if error else ""))
            if state is ConnectionState.CONNECTED and kind is not None:
                connected[kind].set()

        def publish(start: int, stop: int) -> None:
            backend.publish_many({"type": "node_log", "data": {"i": i}} for i in range(start, stop))

        service.on_connection_state_change(on_state)
        service.subscribe("node_log", on_event)
        with service:
            publish(0, 500)
            connected[ConnectionType.WEBSOCKET].clear()
            backend.drop_connections()  # a reset with no close frame: reconnect and resume
            publish(500, 1000)
            connected[ConnectionType.WEBSOCKET].wait(10)
            backend.refuse_websocket(503)  # the client falls back to SSE...
            backend.drop_connections()
            publish(1000, 1500)
            connected[ConnectionType.EVENTSOURCE].wait(10)
            connected[ConnectionType.WEBSOCKET].clear()
            backend.refuse_websocket(None)  # ...and returns to WebSocket within 300 ms
            connected[ConnectionType.WEBSOCKET].wait(10)
            publish(1500, TOTAL)
            all_in.wait(30)
            health = service.get_connection_health()
        sent = [e["id"] for e in backend.logged_events()]
    print(f"received {len(received)} of {len(sent)}; in order and exactly once: {received == sent}")
    print(
        f"reconnects {health.total_reconnects}, switches {health.transport_switches}, "
        f"duplicates dropped {health.duplicates_dropped}"
    )


if __name__ == "__main__":
    main()
