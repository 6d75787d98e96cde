"""The reference MAGK backend: a real local server for the SDK's demo, its tests and its users' tests.

One aiohttp application, one port, one event loop in one background thread (``magk-backend-loop``):

=========================  =========================================================
``GET /ws/realtime``       WebSocket, both directions
``GET /events/realtime``   Server-Sent Events
``POST /commands``         a workflow command; the reply is the command response
``POST /messages``         a client envelope over HTTP (for SSE clients)
``GET /health``            backend health
=========================  =========================================================

Usage::

    with Backend(pace=0.0) as backend:
        ws = websocket.create_connection(backend.websocket_url)
        backend.execute_command("start_workflow", "wf-1")
        ...

Every public method may be called from any thread. See docs/protocol.rst for the wire decisions
(event ids ``e-1``, ``e-2``, ...; control messages carry no id; order of ack and replay; auth on every
endpoint). :class:`Backend` is the facade; the parts behind it live in ``magk_client.testing._backend``.

Commands, whatever brought them, are recorded one by one and can be faulted one by one::

    backend.command_log               # CommandRecord each: requestId, command, workflowId, route
                                      # ("ws", "commands", "messages", "python"), time, replay / fault
    backend.executions("req-1")       # how many times it actually ran (at most 1)
    backend.wait_for_command("req-1", count=2)
    backend.set_health("healthy", http_status=500)       # /health answers 500
    backend.faults.fail_commands(2, 503, retry_after=1)  # the next 2 POST /commands: 503, not run
    backend.faults.reset_commands(1)                     # the next POST /commands: RST after its body
    backend.faults.drop_command_answers(1, then_drop=True)  # WebSocket: no answer, then a drop
    backend.faults.delay_command_answers(1.5)            # answers only (not pongs, not events)

(see :class:`~magk_client.testing._backend.controls.FaultControls`).
"""

from __future__ import annotations

import logging
import ssl
import threading
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from ._backend.acks import ACK_FEATURE, MessageDesk
from ._backend.commands import Command, CommandDesk
from ._backend.controls import FaultControls
from ._backend.faults import BAD_KINDS, FaultSwitches, ScriptedResponse, bad_frames
from ._backend.http_routes import COMMANDS_PATH, HEALTH_PATH, MESSAGES_PATH
from ._backend.hub import Hub
from ._backend.loop import LoopThread
from ._backend.records import CommandRecord, ReceivedMessage, Records, RecordsView
from ._backend.server import Server
from ._backend.sse_route import SSE_PATH
from ._backend.wire import raw_frames
from ._backend.ws_route import WS_PATH
from .engine import Engine, iso_now
from .replay import ReplayLog

__all__ = [
    "Backend",
    "BAD_KINDS",
    "CommandRecord",
    "FaultControls",
    "ReceivedMessage",
    "ScriptedResponse",
    "WS_PATH",
    "SSE_PATH",
    "COMMANDS_PATH",
    "MESSAGES_PATH",
    "HEALTH_PATH",
    "iso_now",
]

logger = logging.getLogger("magk_client.testing.backend")

DEFAULT_WORKFLOWS: Dict[str, List[str]] = {"wf-1": ["n-1", "n-2", "n-3"]}


class Backend(RecordsView):
    """A real local MAGK backend on 127.0.0.1 (see the module docstring).

    What it saw (counters, received messages, handshakes, the ``command_log``) and the ``wait_*`` methods
    come from :class:`~magk_client.testing._backend.records.RecordsView`; the command-level fault controls
    are on :attr:`faults` (:class:`FaultControls`).

    Threads: every public method may be called from any thread. Requests, sessions, the engine and the
    heartbeat run on the ``magk-backend-loop`` thread; a method that touches connections or the replay
    log runs its work there and waits for it (directly in the caller's thread while stopped). The
    ``wait_*`` methods must not be called from the loop thread (from a request handler).

    Options:
        host, port: where to listen (port 0 picks a free port; :meth:`restart` keeps it).
        token: require ``Authorization: Bearer <token>`` (or ``?token=``) on every endpoint.
        api_key: require ``X-API-Key: <key>`` on every endpoint.
        heartbeat_interval: seconds between server ``heartbeat`` messages (WS) and ``: ping`` lines (SSE).
        pace: seconds between engine events (0: as fast as possible, still yielding to the loop).
        replay_size: how many events the replay log keeps.
        ssl_context: serve https/wss with it.
        workflows: workflow id -> node names (default: ``wf-1`` with ``n-1``..``n-3``).
        send_ack: send ``subscription_ack`` after each handshake.
        sse_retry_ms: when set, each SSE stream starts with ``retry: <ms>``.
        max_body_size: limit for HTTP bodies (413 above) and WebSocket messages (close 1009 above).
        open_health: serve ``/health`` without auth.
        close_timeout: how long a WebSocket close waits for the peer's close frame.
        idempotency_size: how many command responses are kept to answer a repeated ``requestId``.
        acks: acknowledge client message ids and process each id once (docs/protocol.rst,
            "Acknowledgements"); see :meth:`set_acks`.
        processed_ids_size: how many processed message ids are remembered to ignore a repeat.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: Optional[str] = None,
        api_key: Optional[str] = None,
        heartbeat_interval: Optional[float] = None,
        pace: float = 0.0,
        replay_size: int = 10000,
        ssl_context: Optional[ssl.SSLContext] = None,
        workflows: Optional[Mapping[str, Sequence[str]]] = None,
        send_ack: bool = True,
        sse_retry_ms: Optional[int] = None,
        max_body_size: int = 1024 * 1024,
        open_health: bool = False,
        close_timeout: float = 1.0,
        idempotency_size: int = 10000,
        acks: bool = True,
        processed_ids_size: int = 100000,
    ) -> None:
        if pace < 0:
            raise ValueError("pace must be >= 0")
        if heartbeat_interval is not None and heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be > 0")
        self.host = host
        self.port = port
        self.token = token
        self.api_key = api_key
        self.heartbeat_interval = heartbeat_interval
        self.pace = pace
        self.ssl_context = ssl_context
        self.send_ack = send_ack
        self.sse_retry_ms = sse_retry_ms
        self.max_body_size = max_body_size
        self.open_health = open_health
        self.close_timeout = close_timeout
        self.idempotency_size = idempotency_size
        self.acks = acks
        self.processed_ids_size = processed_ids_size

        self._records = Records()
        self._faults = FaultSwitches()
        self.faults = FaultControls(self._faults)
        self._hub = Hub(
            ReplayLog(replay_size),
            self._records,
            self._faults,
            lambda: self.send_ack,
            lambda: [ACK_FEATURE] if self.acks else [],
        )
        self._engine = Engine(self._hub.emit, lambda: self.pace, self._records.notify)
        for wid, nodes in (workflows if workflows is not None else DEFAULT_WORKFLOWS).items():
            self._engine.add_workflow(wid, nodes)
        self._desk = CommandDesk(self._engine, self._records, lambda: self.idempotency_size)
        messages = MessageDesk(self._records, lambda: self.acks, lambda: self.processed_ids_size)
        self._server = Server(self, self._records, self._faults, self._hub, self._desk, messages, self._engine)
        self._loop = LoopThread("magk-backend-loop")
        self._lifecycle = threading.Lock()

    # ==============================================================================================
    # lifecycle

    def __enter__(self) -> Backend:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Backend {self.base_url if self.port else self.host} {state}>"

    @property
    def running(self) -> bool:
        return self._loop.running

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self._url_host}:{self.port}"

    @property
    def websocket_url(self) -> str:
        ws = "wss" if self.ssl_context is not None else "ws"
        return f"{ws}://{self._url_host}:{self.port}{WS_PATH}"

    @property
    def event_source_url(self) -> str:
        return f"{self.base_url}{SSE_PATH}"

    @property
    def commands_url(self) -> str:
        return f"{self.base_url}{COMMANDS_PATH}"

    @property
    def messages_url(self) -> str:
        return f"{self.base_url}{MESSAGES_PATH}"

    @property
    def health_url(self) -> str:
        return f"{self.base_url}{HEALTH_PATH}"

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def start(self, timeout: float = 10.0) -> Backend:
        """Bind and serve in the background thread; returns once the port is listening."""
        with self._lifecycle:
            self.port = self._loop.start(self._server.serve, timeout)
            logger.info("reference backend listening on %s", self.base_url)
            return self

    def stop(self, close_code: int = 1001, timeout: float = 10.0) -> None:
        """Close every connection (WebSocket close ``close_code``, SSE end of stream) and join the thread."""
        with self._lifecycle:
            if not self._loop.stop(close_code, timeout):
                return
            self._records.all_closed()
            logger.info("reference backend on port %d stopped", self.port)

    def restart(self, close_code: int = 1012, timeout: float = 10.0) -> None:
        """Stop (WebSocket close ``close_code``, 1012 "service restart") and start again on the same port.

        The replay log, the id counter, idempotency answers, the workflows and the fault switches are
        kept; a workflow that was running carries on from the start of the node it was in.
        """
        self.stop(close_code=close_code, timeout=timeout)
        self.start(timeout=timeout)

    # ==============================================================================================
    # waiting (thread-safe; snapshots of the records and the other waits come from RecordsView)

    def wait_for_workflow(
        self, workflow_id: str, states: Union[str, Iterable[str]], timeout: float = 10.0
    ) -> str:
        """Wait until a workflow is in one of ``states``; returns the state."""
        wanted = {states} if isinstance(states, str) else set(states)
        self.wait_until(
            lambda: self.workflow_state(workflow_id) in wanted, timeout, f"{workflow_id} in {wanted}"
        )
        return self.workflow_state(workflow_id)

    def wait_for_event(self, predicate: Callable[[Dict[str, Any]], bool], timeout: float = 5.0) -> Dict[str, Any]:
        """Wait until the replay log holds an event matching ``predicate``; returns the first one."""
        return self._wait_for_logged(self.logged_events, predicate, timeout)

    # ==============================================================================================
    # workflows and events

    def add_workflow(
        self,
        workflow_id: str,
        nodes: Sequence[str],
        fail_node: Optional[str] = None,
        progress_steps: int = 3,
    ) -> None:
        """Define (or redefine) a workflow. Each node emits ``progress_steps + 5`` events; a long workflow
        (many nodes or many steps) makes thousands of events for load tests."""
        self._loop.call(lambda: self._engine.add_workflow(workflow_id, list(nodes), fail_node, progress_steps))

    def workflow_ids(self) -> List[str]:
        return list(self._engine.workflows)

    def workflow_state(self, workflow_id: str) -> str:
        """``idle``, ``running``, ``paused``, ``completed``, ``failed`` or ``stopped``."""
        wf = self._engine.workflows.get(workflow_id)
        if wf is None:
            raise KeyError(workflow_id)
        return wf.state

    def workflow_snapshot(self, workflow_id: str) -> Dict[str, Any]:
        return self._loop.call(self._engine.workflows[workflow_id].snapshot)

    def execute_command(
        self,
        command: str,
        workflow_id: str,
        node_id: Optional[str] = None,
        data: Optional[Dict[str, Any]] = None,
        request_id: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Run a command as if a client had sent it; returns the command response object."""
        cmd = Command(command, workflow_id, node_id, data, request_id)
        return self._loop.call(lambda: self._desk.run(cmd, "python"))

    def set_acks(self, enabled: bool) -> None:
        """Turn acknowledgements on or off (any thread). Off: ``subscription_ack`` no longer advertises
        them (from the next handshake), and client messages are neither acknowledged nor de-duplicated
        nor remembered; the ids processed before are kept for when they come back on."""
        self.acks = bool(enabled)

    def logged_events(self) -> List[Dict[str, Any]]:
        """The events the replay log holds now, oldest first."""
        return self._loop.call(lambda: [dict(e.message) for e in self._hub.log.entries()])

    @property
    def last_event_id(self) -> Optional[str]:
        entries = self._loop.call(lambda: self._hub.log.entries()[-1:])
        return entries[0].id if entries else None

    def publish(self, message: Mapping[str, Any]) -> str:
        """Publish one event: gives it an id (``e-<n>``) and a timestamp when missing, logs it for replay
        and sends it to every connection. Returns its id."""
        msg = _check_event(message)
        return self._loop.call(lambda: self._hub.publish(msg).id)

    def publish_many(self, messages: Iterable[Mapping[str, Any]]) -> List[str]:
        """Publish many events as fast as possible (in batches on the loop); returns their ids."""
        msgs = [_check_event(m) for m in messages]
        if not self.running:
            return [self._hub.publish(m).id for m in msgs]
        return self._loop.submit(lambda: self._hub.publish_all(msgs))

    def publish_raw(
        self,
        text: Union[str, bytes],
        *,
        sse_bytes: Optional[bytes] = None,
        transports: Iterable[str] = ("websocket", "sse"),
    ) -> None:
        """Send ``text`` as it is, not logged, to every connection: a WebSocket text frame (bytes: a
        binary frame); on SSE ``data:`` lines of it, or exactly ``sse_bytes`` when given."""
        self._broadcast(*raw_frames(text, sse_bytes), transports)

    def send_bad(
        self,
        kind: str,
        *,
        size: int = 2 * 1024 * 1024,
        depth: int = 100000,
        transports: Iterable[str] = ("websocket", "sse"),
    ) -> None:
        """Send one bad message of ``kind`` (see :data:`BAD_KINDS`) to every connection, not logged.

        ``oversized`` is a valid envelope of about ``size`` bytes; ``deep_nesting`` nests ``depth``
        arrays; ``huge_int`` carries a 5000-digit integer; ``nan`` a bare ``NaN``; ``binary`` is a binary
        WebSocket frame (SSE: skipped); ``invalid_utf8`` is a text frame / SSE line with invalid UTF-8.
        """
        ws_item, sse_item = bad_frames(kind, size, depth)
        self._broadcast(ws_item, sse_item, transports)

    def _broadcast(self, ws_item: bytes, sse_item: Optional[bytes], transports: Iterable[str]) -> None:
        kinds = set(transports)
        ws = ws_item if "websocket" in kinds else None
        sse = sse_item if "sse" in kinds else None
        self._loop.call(lambda: self._hub.broadcast(ws, sse))

    # ==============================================================================================
    # faults (thread-safe)

    def drop_connections(self) -> int:
        """Abort every WebSocket and SSE connection at the TCP level (RST, no close frame).

        Returns how many."""
        n = self._loop.call(self._hub.abort_all)
        self._records.count("dropped", n)
        return n

    def close_connections(self, code: int = 1000, reason: str = "") -> int:
        """Close every WebSocket with ``code`` and end every SSE stream cleanly. Returns how many."""
        return self._loop.call(lambda: self._hub.close_all(code, reason))

    def refuse_websocket(self, status: Optional[int] = 503, retry_after: Union[float, str, None] = None) -> None:
        """Answer WebSocket upgrades with HTTP ``status`` (and ``Retry-After``: seconds, or a string sent as
        it is) until called with None."""
        self._faults.refuse_ws = None if status is None else (status, retry_after)

    def refuse_sse(self, status: Optional[int] = 503, retry_after: Union[float, str, None] = None) -> None:
        """Answer SSE requests with HTTP ``status`` (and ``Retry-After``: seconds, or a string sent as it is)
        until called with None."""
        self._faults.refuse_sse = None if status is None else (status, retry_after)

    def accept_then_close(self, enabled: bool = True, code: int = 1000) -> None:
        """Accept WebSocket upgrades, then close at once with ``code`` (counted in ws_connects)."""
        self._faults.accept_then_close = code if enabled else None

    def go_silent(self, silent: bool = True) -> None:
        """Keep sockets open but send and answer nothing: no events, pongs, heartbeats, command answers
        (HTTP requests wait until the silence ends). Events still go into the replay log."""

        def run() -> None:
            self._faults.set_silent(silent)
            if silent:
                self._hub.clear_queues()

        self._loop.call(run)

    def set_delay(self, seconds: float) -> None:
        """Delay every outbound message (and HTTP answer) by ``seconds``; order is kept."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        self._faults.delay = seconds

    def drop_after(self, n_messages: Optional[int]) -> None:
        """Abort each connection (open now or opened later) after it has sent ``n_messages`` more
        messages; None turns it off."""
        self._loop.call(lambda: self._hub.set_drop_after(n_messages))

    def expire_replay_log(self) -> None:
        """Forget every logged event: any Last-Event-ID is then answered with ``resume_gap``."""
        self._loop.call(self._hub.log.expire)

    def sse_script(
        self,
        body: Union[bytes, Sequence[bytes]],
        *,
        status: int = 200,
        content_type: Optional[str] = "text/event-stream",
        headers: Optional[Mapping[str, str]] = None,
        chunked: bool = True,
        chunk_delay: float = 0.0,
        abort: bool = False,
        hold_open: bool = False,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` SSE requests with exactly this status, content type and body (bytes or
        chunks written one by one, ``chunk_delay`` apart), before auth and refusal checks.

        ``chunked=False`` sends a close-delimited body (no Content-Length, no chunked encoding).
        ``abort=True`` resets the connection after the last chunk instead of ending cleanly;
        ``hold_open=True`` keeps it open until the client leaves or the backend stops.
        Scripts queue up: each request takes the oldest.
        """
        chunks = [body] if isinstance(body, (bytes, bytearray)) else [bytes(c) for c in body]
        script = ScriptedResponse(
            chunks=[bytes(c) for c in chunks],
            status=status,
            content_type=content_type,
            headers=dict(headers or {}),
            chunked=chunked,
            chunk_delay=chunk_delay,
            abort=abort,
            hold_open=hold_open,
        )
        for _ in range(times):
            self._faults.sse_scripts.append(script)

    def clear_sse_scripts(self) -> None:
        self._faults.sse_scripts.clear()

    def set_health(
        self, status: str = "healthy", *, minimal: bool = False, http_status: int = 200, **services: bool
    ) -> None:
        """What ``/health`` reports: ``status``, service flags (``database=False``...), or with
        ``minimal=True`` only ``{"status", "service"}`` like real MAGK servers; with HTTP ``http_status``."""
        health = {"status": status, "minimal": minimal, "services": dict(services), "http_status": http_status}
        self._faults.health = health

    def reset_faults(self) -> None:
        """Turn every fault switch off."""
        self.refuse_websocket(None)
        self.refuse_sse(None)
        self.accept_then_close(False)
        self.set_delay(0.0)
        self.drop_after(None)
        self.clear_sse_scripts()
        self.faults.reset()
        self.go_silent(False)


def _check_event(message: Mapping[str, Any]) -> Dict[str, Any]:
    if not isinstance(message, Mapping):
        raise TypeError("an event must be a mapping")
    msg = dict(message)
    event_id = msg.get("id")
    if event_id is not None:
        if not isinstance(event_id, str) or not event_id or any(c in event_id for c in "\r\n\0"):
            raise ValueError("an event id must be a non-empty string without CR, LF or NUL")
    if not isinstance(msg.get("type"), str):
        raise ValueError("an event needs a string 'type'")
    return msg
