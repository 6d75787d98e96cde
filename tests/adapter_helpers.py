"""Helpers shared by the adapter tests (test_adapter*.py)."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional

from timings import FAST

from magk_client import RealtimeAdapter
from magk_client.testing import Backend
from magk_client.testing.raw import Conn, Handler, RawServer, Request, reply, sse

TRANSPORTS = ("websocket", "eventsource")


def make_adapter(
    backend_url: str, transport: str = "websocket", connection: Optional[Dict[str, Any]] = None, **overrides: Any
) -> RealtimeAdapter:
    options = dict(FAST, preferred_type=transport)
    options.update(connection or {})
    overrides.setdefault("enable_health_check", False)
    overrides.setdefault("retry_delay_ms", 20)
    return RealtimeAdapter(backend_base_url=backend_url, connection_config=options, **overrides)


def adapter_threads() -> List[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("magk-adapter"))


def sdk_threads() -> List[str]:
    return sorted(
        t.name
        for t in threading.enumerate()
        if t.name.startswith(("magk-adapter", "magk-reader", "magk-supervisor", "magk-dispatcher"))
    )


def eventually(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Wait until ``predicate()`` holds, re-checking every 10 ms (for client-side counters that have
    no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def route_of(backend: Backend, request_id: str) -> str:
    """How a command reached the backend, from its command log: ``ws`` (a WebSocket envelope),
    ``commands`` (``POST /commands``), ``messages`` (an envelope on ``POST /messages``), ``mixed``, or
    ``none``."""
    routes = {c.route for c in backend.command_log if c.request_id == request_id}
    if not routes:
        return "none"
    return routes.pop() if len(routes) == 1 else "mixed"


class HealthServer:
    """A raw server for what the reference backend cannot do: ``GET /health`` answered by ``health``
    (exact bytes, or a handler that never answers); an SSE stream held open; anything else 404."""

    def __init__(self, health: Handler) -> None:
        self.health = health
        self.raw = RawServer([self._dispatch])
        self.url = f"http://127.0.0.1:{self.raw.port}"

    def _dispatch(self, conn: Conn, req: Request) -> None:
        if req.path.startswith("/events/"):
            sse([b": hello\n\n"], finish="hold")(conn, req)
        elif req.path == "/health":
            self.health(conn, req)
        else:
            reply(404, b"")(conn, req)

    def __enter__(self) -> HealthServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.close()
