"""Helpers shared by the adapter tests (test_adapter*.py)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from sse_raw_server import Conn, RawServer, Request, reply, sse

from magk_client import RealtimeAdapter
from magk_client.testing import Backend

#: fast reconnects, a slow heartbeat, no fallback (each test picks its transport)
FAST_CONNECTION: Dict[str, Any] = dict(
    fallback_to_secondary=False,
    reconnect_interval_ms=20,
    max_reconnect_interval_ms=200,
    heartbeat_interval_ms=5000,
    heartbeat_timeout_ms=2000,
    connection_timeout_ms=3000,
    message_timeout_ms=3000,
    min_stable_connection_ms=0,
    max_reconnect_attempts=1000,
    circuit_breaker_threshold=1000,
)
TRANSPORTS = ("websocket", "eventsource")


def make_adapter(
    backend_url: str, transport: str = "websocket", connection: Optional[Dict[str, Any]] = None, **overrides: Any
) -> RealtimeAdapter:
    options = dict(FAST_CONNECTION, preferred_type=transport)
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
    """How a command reached the backend: ``websocket`` (a received envelope with that id over the
    WebSocket), ``http`` (run, but received as no message: ``POST /commands``), or ``none``."""
    received = [m for m in backend.received_messages if isinstance(m.message, dict) and m.message.get("id") == request_id]
    if received:
        kinds = {m.transport for m in received}
        return kinds.pop() if len(kinds) == 1 else "mixed"
    return "http" if backend.command_counts.get(request_id) else "none"


class CommandsServer:
    """A raw server: SSE stream held open, ``POST /commands`` answered by ``posts`` in turn (the last
    one repeats), ``GET /health`` by ``health``."""

    def __init__(self, posts: List[Callable[[Conn, Request], None]], health: Any = None) -> None:
        self.posts = posts
        self.health = health or reply(200, b'{"status": "healthy"}', [("Content-Type", "application/json")])
        self.bodies: List[Dict[str, Any]] = []
        self.raw = RawServer([self._dispatch])
        self.url = f"http://127.0.0.1:{self.raw.port}"

    def _dispatch(self, conn: Conn, req: Request) -> None:
        if req.path.startswith("/events/"):
            sse([b": hello\n\n"], finish="hold")(conn, req)
        elif req.path == "/commands":
            self.bodies.append(json.loads(req.body))
            self.posts[min(len(self.bodies), len(self.posts)) - 1](conn, req)
        else:
            self.health(conn, req)

    def __enter__(self) -> CommandsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.close()


def answer_ok(conn: Conn, req: Request) -> None:
    payload = json.loads(req.body)
    body = json.dumps({"requestId": payload["requestId"], "command": payload["command"], "success": True,
                       "data": {"n": 1}}).encode()
    reply(200, body, [("Content-Type", "application/json")])(conn, req)


def close_without_answer(conn: Conn, req: Request) -> None:
    return None  # the server read the command; the socket closes with no reply
