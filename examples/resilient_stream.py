"""Exactly-once delivery across faults: the backend resets connections and refuses
WebSocket upgrades while 2,000 events stream; every event still arrives once, in order.
"""

from __future__ import annotations

import threading

from magk_client import ConnectionState, RealtimeMessage, RealtimeService
from magk_client.testing import Backend

TOTAL = 2000


def main() -> None:
    received: list[str] = []
    all_in = threading.Event()

    def on_event(message: RealtimeMessage) -> None:
        received.append(message.id)
        if len(received) == TOTAL:
            all_in.set()

    back_on_websocket = threading.Event()
    service: RealtimeService | None = None

    def on_state(state: ConnectionState, error: BaseException | None) -> None:
        kind = service.connection_type.value if service and service.connection_type else ""
        print(f"state: {state.value} {kind}" + (f" ({type(error).__name__})" if error else ""))
        if service and state is ConnectionState.CONNECTED and service.get_connection_health().transport_switches >= 2:
            back_on_websocket.set()

    with Backend() as backend:
        service = RealtimeService(
            websocket_url=backend.websocket_url,
            event_source_url=backend.event_source_url,
            reconnect_interval_ms=20,
            preferred_retry_interval_ms=300,
        )
        service.on_connection_state_change(on_state)
        service.subscribe("node_log", on_event)
        with service:
            for start in range(0, TOTAL, 100):
                backend.publish_many({"type": "node_log", "data": {"i": i}} for i in range(start, start + 100))
                if start == 500:
                    backend.drop_connections()  # a reset with no close frame
                if start == 1000:
                    backend.refuse_websocket(503)  # the client falls back to SSE...
                    backend.drop_connections()
                if start == 1500:
                    backend.refuse_websocket(None)  # ...and comes back to WebSocket
            all_in.wait(30)
            back_on_websocket.wait(10)
            health = service.get_connection_health()
        sent = [e["id"] for e in backend.logged_events()]
    print(f"received {len(received)} of {len(sent)}; in order and exactly once: {received == sent}")
    print(f"reconnects {health.total_reconnects}, switches {health.transport_switches}, "
          f"duplicates dropped {health.duplicates_dropped}")


if __name__ == "__main__":
    main()
