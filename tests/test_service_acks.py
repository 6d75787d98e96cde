"""The client against a backend that acknowledges messages (docs/protocol.rst, Acknowledgements)."""

from __future__ import annotations

import threading
from typing import List

from timings import FAST

from magk_client import RealtimeMessage, RealtimeService
from magk_client.testing import Backend


def test_ack_messages_never_reach_catch_all_subscribers(backend: Backend) -> None:
    """``ack`` is the client's own business, like ``pong``: only a subscription naming it sees it."""
    seen: List[str] = []
    named: List[RealtimeMessage] = []
    got_named = threading.Event()

    def on_named(message: RealtimeMessage) -> None:
        named.append(message)
        got_named.set()

    service = RealtimeService(**dict(FAST, websocket_url=backend.websocket_url, event_source_url=None))
    service.subscribe(None, lambda m: seen.append(str(m.type)))
    service.subscribe(["ack"], on_named)
    with service:
        service.connect(timeout=10)
        assert service.send_message({"type": "client_note", "data": {"n": 1}})
        assert got_named.wait(10), "the backend acknowledged nothing"
        backend.wait_for_processed([named[0].data["ids"][0]], timeout=10)
    assert "ack" not in seen
