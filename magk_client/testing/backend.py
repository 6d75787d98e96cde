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
endpoint).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import logging
import socket
import ssl
import struct
import threading
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import (
    Any,
    Awaitable,
    Callable,
    Deque,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from aiohttp import WSMsgType, web

from .engine import CommandError, Engine, iso_now
from .replay import LoggedEvent, ReplayLog

__all__ = [
    "Backend",
    "BAD_KINDS",
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

WS_PATH = "/ws/realtime"
SSE_PATH = "/events/realtime"
COMMANDS_PATH = "/commands"
MESSAGES_PATH = "/messages"
HEALTH_PATH = "/health"

DEFAULT_WORKFLOWS: Dict[str, List[str]] = {"wf-1": ["n-1", "n-2", "n-3"]}

#: Kinds of bad message :meth:`Backend.send_bad` can send.
BAD_KINDS = (
    "malformed_json",
    "non_object",
    "unknown_type",
    "wrong_field_types",
    "oversized",
    "deep_nesting",
    "huge_int",
    "nan",
    "binary",
    "invalid_utf8",
)

T = TypeVar("T")

_OP_TEXT = 0x1
_OP_BINARY = 0x2
#: Above this many bytes waiting in a connection's socket buffer its writer waits for the peer.
_HIGH_WATER = 1024 * 1024


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _sse_frame(text: str, event_id: Optional[str] = None) -> bytes:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    head = f"id: {event_id}\n" if event_id is not None else ""
    return (head + "".join(f"data: {line}\n" for line in lines) + "\n").encode("utf-8")


def _ws_frame(payload: bytes, opcode: int = _OP_TEXT) -> bytes:
    """One unmasked, unfragmented server-to-client WebSocket frame (RFC 6455 section 5.2).

    aiohttp does the handshake, reading, pings and the close handshake; only the data frames of the
    hot path are framed here so that a batch of them goes out in one ``transport.write``.
    """
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, n))
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return header + payload


def _text_frame(text: str) -> bytes:
    return _ws_frame(text.encode("utf-8"), _OP_TEXT)


@dataclass(frozen=True)
class ReceivedMessage:
    """One message a client sent: over ``"websocket"`` or ``"http"`` (``POST /messages``)."""

    transport: str
    connection_id: Optional[str]
    message: Any
    raw: str
    received_at: float


@dataclass
class ScriptedResponse:
    """An exact answer for the next SSE request (see :meth:`Backend.sse_script`)."""

    chunks: List[bytes]
    status: int = 200
    content_type: Optional[str] = "text/event-stream"
    headers: Dict[str, str] = field(default_factory=dict)
    chunked: bool = True
    chunk_delay: float = 0.0
    abort: bool = False
    hold_open: bool = False


class _CloseDelimitedResponse(web.StreamResponse):
    """A response with neither Content-Length nor chunked encoding: the body ends when the socket closes."""

    _length_check = False


class _BadPayload(ValueError):
    """A malformed command payload or message (HTTP 400)."""


@dataclass
class _Command:
    command: str
    workflow_id: str
    node_id: Optional[str]
    data: Optional[Dict[str, Any]]
    request_id: Optional[str]


class _Connection:
    """One live WebSocket or SSE connection; items are written in order by one writer."""

    def __init__(self, conn_id: str, transport: str, request: web.Request) -> None:
        self.id = conn_id
        self.transport = transport
        self.request = request
        self.ws: Optional[web.WebSocketResponse] = None
        self.sse: Optional[web.StreamResponse] = None
        self.items: Deque[Tuple[float, bytes]] = deque()  # (queued at, wire bytes)
        self.wakeup = asyncio.Event()
        self.close_request: Optional[Tuple[int, str]] = None
        self.done = asyncio.Event()
        self.sent = 0
        self.drop_after: Optional[int] = None
        self.writer_task: Optional[asyncio.Task[None]] = None

    def push(self, item: bytes) -> None:
        if self.close_request is None:
            self.items.append((time.monotonic(), item))
            self.wakeup.set()

    def request_close(self, code: int, reason: str) -> None:
        if self.close_request is None:
            self.close_request = (code, reason)
            self.items.clear()
            self.wakeup.set()

    def abort(self) -> None:
        transport = self.request.transport
        if transport is None or transport.is_closing():
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:  # RST instead of FIN: the peer sees an abrupt loss
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        transport.abort()


class Backend:
    """A real local MAGK backend on 127.0.0.1 (see the module docstring).

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

        self._log = ReplayLog(replay_size)
        self._engine = Engine(self._emit, lambda: self.pace, self._notify)
        for wid, nodes in (workflows if workflows is not None else DEFAULT_WORKFLOWS).items():
            self._engine.add_workflow(wid, nodes)

        self._cond = threading.Condition()
        self._received: List[ReceivedMessage] = []
        self._pongs: List[ReceivedMessage] = []
        self._connections_log: List[Dict[str, Any]] = []
        self._counters: Counter[str] = Counter()
        self._command_counts: Counter[str] = Counter()
        self._open: Dict[str, str] = {}  # connection id -> transport, mirrored under _cond
        self._event_waiters = 0
        self._published = 0

        self._responses: OrderedDict[str, Dict[str, Any]] = OrderedDict()
        self._conns: Dict[str, _Connection] = {}
        self._conn_ids = itertools.count(1)
        self._heartbeat_ids = itertools.count(1)
        self._generated_request_ids = itertools.count(1)

        # fault switches (plain attributes: read by the loop, set from any thread)
        self._refuse_ws: Optional[Tuple[int, Union[float, str, None]]] = None
        self._refuse_sse: Optional[Tuple[int, Union[float, str, None]]] = None
        self._silent = False
        self._delay = 0.0
        self._drop_after: Optional[int] = None
        self._accept_then_close: Optional[int] = None
        self._sse_scripts: Deque[ScriptedResponse] = deque()
        self._health: Dict[str, Any] = {"status": "healthy", "minimal": False, "services": {}}

        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stopping: Optional[asyncio.Future[int]] = None
        self._audible: Optional[asyncio.Event] = None
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
        thread = self._thread
        return thread is not None and thread.is_alive()

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
            if self.running:
                raise RuntimeError("backend is already running")
            started: concurrent.futures.Future[int] = concurrent.futures.Future()
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=self._thread_main, args=(loop, started), name="magk-backend-loop", daemon=True
            )
            self._loop = loop
            self._thread = thread
            thread.start()
            try:
                self.port = started.result(timeout)
            except BaseException:
                self._loop = None
                thread.join(timeout)
                self._thread = None
                raise
            logger.info("reference backend listening on %s", self.base_url)
            return self

    def stop(self, close_code: int = 1001, timeout: float = 10.0) -> None:
        """Close every connection (WebSocket close ``close_code``, SSE end of stream) and join the thread."""
        with self._lifecycle:
            loop, thread, stopping = self._loop, self._thread, self._stopping
            if thread is None or loop is None:
                return
            if stopping is not None and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(_set_result_once, stopping, close_code)
                except RuntimeError:  # loop already closed
                    pass
            thread.join(timeout)
            if thread.is_alive():
                logger.error("backend thread did not stop within %.1f s", timeout)
            self._thread = None
            self._loop = None
            self._stopping = None
            with self._cond:
                self._open.clear()
                self._cond.notify_all()
            logger.info("reference backend on port %d stopped", self.port)

    def restart(self, close_code: int = 1012, timeout: float = 10.0) -> None:
        """Stop (WebSocket close ``close_code``, 1012 "service restart") and start again on the same port.

        The replay log, the id counter, idempotency answers, the workflows and the fault switches are
        kept; a workflow that was running carries on from the start of the node it was in.
        """
        self.stop(close_code=close_code, timeout=timeout)
        self.start(timeout=timeout)

    def _thread_main(self, loop: asyncio.AbstractEventLoop, started: concurrent.futures.Future[int]) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main(started))
        except BaseException as exc:  # pragma: no cover - reported through ``started`` when possible
            if not started.done():
                started.set_exception(exc)
            logger.exception("backend loop crashed")
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    async def _main(self, started: concurrent.futures.Future[int]) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = loop.create_future()
        self._audible = asyncio.Event()
        if not self._silent:
            self._audible.set()
        app = web.Application(client_max_size=self.max_body_size)
        app.router.add_get(WS_PATH, self._handle_ws)
        app.router.add_get(SSE_PATH, self._handle_sse)
        app.router.add_post(COMMANDS_PATH, self._handle_commands)
        app.router.add_post(MESSAGES_PATH, self._handle_messages)
        app.router.add_get(HEALTH_PATH, self._handle_health)
        runner = web.AppRunner(
            app, handle_signals=False, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        try:
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.port, ssl_context=self.ssl_context, reuse_address=True)
            await site.start()
            port = int(runner.addresses[0][1])
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that called start()
            await runner.cleanup()
            started.set_exception(exc)
            return
        self._engine.attach()
        heartbeat = loop.create_task(self._heartbeat_loop()) if self.heartbeat_interval else None
        started.set_result(port)
        close_code = await self._stopping
        # -- shutdown
        if heartbeat is not None:
            heartbeat.cancel()
        self._engine.detach()
        conns = list(self._conns.values())
        for conn in conns:
            conn.request_close(close_code, "server shutdown" if close_code != 1012 else "server restart")
        if conns:
            await asyncio.wait(
                [loop.create_task(c.done.wait()) for c in conns], timeout=self.close_timeout + 0.5
            )
        for conn in list(self._conns.values()):
            conn.abort()
        await runner.cleanup()
        self._conns.clear()

    # ==============================================================================================
    # cross-thread plumbing

    def _call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run ``fn`` on the loop thread (directly when the backend is stopped) and return its result."""
        loop = self._loop
        if loop is None or self._stopping is None or not self.running:
            return fn()
        if threading.current_thread() is self._thread:
            return fn()
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                    fut.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return fut.result(timeout)

    def _submit(self, coro_fn: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
        loop = self._loop
        if loop is None or not self.running:
            raise RuntimeError("backend is not running")
        if threading.current_thread() is self._thread:
            raise RuntimeError("cannot wait for the backend loop from the backend loop")

        async def wrapper() -> T:
            return await coro_fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), loop).result(timeout)

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # ==============================================================================================
    # recording and waiting (thread-safe)

    @property
    def received_messages(self) -> List[ReceivedMessage]:
        """Client messages so far (pings and pongs excluded), oldest first: a snapshot."""
        with self._cond:
            return list(self._received)

    @property
    def pongs(self) -> List[ReceivedMessage]:
        """``pong`` messages clients sent (answers to server heartbeats): a snapshot."""
        with self._cond:
            return list(self._pongs)

    @property
    def connections_log(self) -> List[Dict[str, Any]]:
        """Every WebSocket handshake and SSE request: transport, headers, query, outcome, connection id."""
        with self._cond:
            return [dict(entry) for entry in self._connections_log]

    @property
    def counters(self) -> Dict[str, int]:
        """ws_attempts, ws_connects, sse_attempts, sse_connects, pings, pongs, commands, commands_replayed,
        bad_messages, http_requests, auth_failures, refused, dropped, ..."""
        with self._cond:
            return dict(self._counters)

    @property
    def command_counts(self) -> Dict[str, int]:
        """How many times each requestId was received (over any transport)."""
        with self._cond:
            return dict(self._command_counts)

    @property
    def ws_connects(self) -> int:
        with self._cond:
            return self._counters["ws_connects"]

    @property
    def sse_connects(self) -> int:
        with self._cond:
            return self._counters["sse_connects"]

    @property
    def open_connections(self) -> Dict[str, str]:
        """Connection id -> transport for the connections open now."""
        with self._cond:
            return dict(self._open)

    def clear_records(self) -> None:
        """Forget received messages, pongs, the connections log and all counters."""
        with self._cond:
            self._received.clear()
            self._pongs.clear()
            self._connections_log.clear()
            self._counters.clear()
            self._command_counts.clear()

    def wait_until(
        self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
    ) -> None:
        """Wait until ``predicate()`` is true; it is re-checked whenever the backend records something."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
                self._cond.wait(remaining)

    def wait_for_received(
        self,
        count_or_predicate: Union[int, Callable[[ReceivedMessage], bool]] = 1,
        timeout: float = 5.0,
    ) -> List[ReceivedMessage]:
        """Wait for ``n`` received messages (returns them all) or one matching the predicate (returns the
        matching ones)."""
        if callable(count_or_predicate):
            pred = count_or_predicate
            found: List[ReceivedMessage] = []

            def check() -> bool:
                found[:] = [m for m in self._received if pred(m)]
                return bool(found)

            self.wait_until(check, timeout, "a matching received message")
            return found
        n = count_or_predicate
        self.wait_until(lambda: len(self._received) >= n, timeout, f"{n} received messages")
        return self.received_messages

    def wait_for_connections(
        self, n: int = 1, timeout: float = 5.0, *, transport: Optional[str] = None, total: bool = False
    ) -> int:
        """Wait until ``n`` connections are open now (or, with ``total=True``, have been accepted in all);
        ``transport`` ``"websocket"`` or ``"sse"`` counts only that kind. Returns the count."""

        def count() -> int:
            if total:
                if transport is None:
                    return self._counters["ws_connects"] + self._counters["sse_connects"]
                return self._counters["ws_connects" if transport == "websocket" else "sse_connects"]
            return sum(1 for t in self._open.values() if transport is None or t == transport)

        self.wait_until(lambda: count() >= n, timeout, f"{n} connections")
        with self._cond:
            return count()

    def wait_for_disconnects(self, timeout: float = 5.0, *, transport: Optional[str] = None) -> None:
        """Wait until no connection (of that transport) is open."""
        self.wait_until(
            lambda: not any(transport is None or t == transport for t in self._open.values()),
            timeout,
            "all connections to close",
        )

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
        deadline = time.monotonic() + timeout
        with self._cond:
            self._event_waiters += 1
        try:
            while True:
                with self._cond:
                    seen = self._published
                for event in self.logged_events():
                    if predicate(event):
                        return event
                with self._cond:
                    while self._published == seen:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise TimeoutError(f"timed out after {timeout} s waiting for a matching event")
                        self._cond.wait(remaining)
        finally:
            with self._cond:
                self._event_waiters -= 1

    def _record(self, key: str, amount: int = 1) -> None:
        with self._cond:
            self._counters[key] += amount
            self._cond.notify_all()

    def _log_connection(
        self, transport: str, request: web.Request, outcome: str, conn_id: Optional[str]
    ) -> None:
        entry = {
            "transport": transport,
            "path": request.path,
            "query": dict(request.query),
            "headers": dict(request.headers),
            "last_event_id": request.headers.get("Last-Event-ID"),
            "authorization": request.headers.get("Authorization"),
            "outcome": outcome,
            "connection_id": conn_id,
            "time": time.monotonic(),
        }
        with self._cond:
            self._connections_log.append(entry)
            self._cond.notify_all()

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
        self._call(lambda: self._engine.add_workflow(workflow_id, list(nodes), fail_node, progress_steps))

    def workflow_ids(self) -> List[str]:
        return list(self._engine.workflows)

    def workflow_state(self, workflow_id: str) -> str:
        """``idle``, ``running``, ``paused``, ``completed``, ``failed`` or ``stopped``."""
        wf = self._engine.workflows.get(workflow_id)
        if wf is None:
            raise KeyError(workflow_id)
        return wf.state

    def workflow_snapshot(self, workflow_id: str) -> Dict[str, Any]:
        return self._call(self._engine.workflows[workflow_id].snapshot)

    def execute_command(
        self,
        command: str,
        workflow_id: str,
        node_id: Optional[str] = None,
        data: Optional[Dict[str, Any]] = None,
        request_id: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Run a command as if a client had sent it; returns the command response object."""
        cmd = _Command(command, workflow_id, node_id, data, request_id)
        return self._call(lambda: self._run_command(cmd, "python"))

    def logged_events(self) -> List[Dict[str, Any]]:
        """The events the replay log holds now, oldest first."""
        return self._call(lambda: [dict(e.message) for e in self._log.entries()])

    @property
    def last_event_id(self) -> Optional[str]:
        entries = self._call(lambda: self._log.entries()[-1:])
        return entries[0].id if entries else None

    def publish(self, message: Mapping[str, Any]) -> str:
        """Publish one event: gives it an id (``e-<n>``) and a timestamp when missing, logs it for replay
        and sends it to every connection. Returns its id."""
        msg = self._check_event(message)
        return self._call(lambda: self._publish_event(msg).id)

    def publish_many(self, messages: Iterable[Mapping[str, Any]]) -> List[str]:
        """Publish many events as fast as possible (in batches on the loop); returns their ids."""
        msgs = [self._check_event(m) for m in messages]
        if not self.running:
            return [self._publish_event(m).id for m in msgs]

        async def run() -> List[str]:
            ids: List[str] = []
            for start in range(0, len(msgs), 2000):
                ids.extend(self._publish_event(m).id for m in msgs[start : start + 2000])
                await asyncio.sleep(0)
            return ids

        return self._submit(run)

    def publish_raw(
        self,
        text: Union[str, bytes],
        *,
        sse_bytes: Optional[bytes] = None,
        transports: Iterable[str] = ("websocket", "sse"),
    ) -> None:
        """Send ``text`` as it is, not logged, to every connection: a WebSocket text frame (bytes: a
        binary frame); on SSE ``data:`` lines of it, or exactly ``sse_bytes`` when given."""
        kinds = set(transports)
        if isinstance(text, bytes):
            ws_item = _ws_frame(text, _OP_BINARY)
            sse_item = sse_bytes if sse_bytes is not None else _sse_frame(text.decode("utf-8", "replace"))
        else:
            ws_item = _text_frame(text)
            sse_item = sse_bytes if sse_bytes is not None else _sse_frame(text)
        self._call(
            lambda: self._broadcast(
                ws_item if "websocket" in kinds else None, sse_item if "sse" in kinds else None
            )
        )

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
        text: Union[str, bytes]
        sse: Optional[bytes] = None
        if kind == "malformed_json":
            text = '{"type": "node_log", "data": {"logs": ['
        elif kind == "non_object":
            text = "[1, 2, 3]"
        elif kind == "unknown_type":
            text = _dumps({"type": "mystery_message", "timestamp": iso_now(), "data": {"x": 1}, "version": 1})
        elif kind == "wrong_field_types":
            text = _dumps(
                {
                    "id": 42,
                    "type": "node_status_update",
                    "timestamp": 7,
                    "workflowId": ["wf-1"],
                    "data": "running",
                }
            )
        elif kind == "oversized":
            text = _dumps({"type": "node_log", "timestamp": iso_now(), "data": {"blob": "x" * size}})
        elif kind == "deep_nesting":
            text = '{"type": "node_log", "data": {"x": ' + "[" * depth + "]" * depth + "}}"
        elif kind == "huge_int":
            text = (
                '{"type": "node_progress_update", "data": {"progress": {"current": '
                + "9" * 5000
                + ', "total": 1}}}'
            )
        elif kind == "nan":
            text = '{"type": "node_progress_update", "data": {"progress": {"current": NaN, "total": 1}}}'
        elif kind == "binary":
            data = b"\x00\x01\x02\xffbinary"
            self._call(lambda: self._broadcast(_ws_frame(data, _OP_BINARY), None))
            return
        elif kind == "invalid_utf8":
            raw = b'{"type": "node_log", "data": {"bad": "\xff\xfe"}}'
            kinds = set(transports)
            self._call(
                lambda: self._broadcast(
                    _ws_frame(raw, _OP_TEXT) if "websocket" in kinds else None,
                    b"data: " + raw + b"\n\n" if "sse" in kinds else None,
                )
            )
            return
        else:
            raise ValueError(f"unknown kind {kind!r}; expected one of {BAD_KINDS}")
        self.publish_raw(text, sse_bytes=sse, transports=transports)

    # -- on the loop -----------------------------------------------------------------------------

    @staticmethod
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

    def _emit(self, msg_type: str, workflow_id: str, node_id: Optional[str], data: Dict[str, Any]) -> None:
        msg: Dict[str, Any] = {"type": msg_type, "timestamp": iso_now(), "workflowId": workflow_id}
        if node_id is not None:
            msg["nodeId"] = node_id
        msg["data"] = data
        msg["version"] = 1
        self._publish_event(msg)

    def _publish_event(self, msg: Dict[str, Any]) -> LoggedEvent:
        event_id = msg.get("id")
        if event_id is None:
            event_id = self._log.next_auto_id()
            msg = {"id": event_id, **msg}
        if "timestamp" not in msg:
            msg["timestamp"] = iso_now()
        text = _dumps(msg)
        entry = self._log.append(event_id, msg, text)
        if self._event_waiters:
            with self._cond:
                self._published += 1
                self._cond.notify_all()
        if self._conns and not self._silent:
            ws_item: Optional[bytes] = None
            sse_item: Optional[bytes] = None
            for conn in self._conns.values():
                if conn.transport == "websocket":
                    if ws_item is None:
                        ws_item = _text_frame(text)
                    conn.push(ws_item)
                else:
                    if sse_item is None:
                        sse_item = _sse_frame(text, event_id)
                    conn.push(sse_item)
        return entry

    def _broadcast(self, ws_item: Optional[bytes], sse_item: Optional[bytes]) -> None:
        if self._silent:
            return
        for conn in self._conns.values():
            if conn.transport == "websocket":
                if ws_item is not None:
                    conn.push(ws_item)
            elif sse_item is not None:
                conn.push(sse_item)

    def _control(
        self, msg_type: str, data: Dict[str, Any], workflow_id: Optional[str] = None
    ) -> Dict[str, Any]:
        msg: Dict[str, Any] = {"type": msg_type, "timestamp": iso_now()}
        if workflow_id is not None:
            msg["workflowId"] = workflow_id
        msg["data"] = data
        return msg

    def _send_control(self, conn: _Connection, msg: Dict[str, Any]) -> None:
        """Send a message that is not an event (no id, not logged) to one connection."""
        if self._silent:
            return
        text = _dumps(msg)
        conn.push(_text_frame(text) if conn.transport == "websocket" else _sse_frame(text))

    async def _heartbeat_loop(self) -> None:
        interval = self.heartbeat_interval
        assert interval is not None
        while True:
            await asyncio.sleep(interval)
            if self._silent:
                continue
            for conn in list(self._conns.values()):
                if conn.transport == "websocket":
                    self._send_control(
                        conn, self._control("heartbeat", {"ping": f"hb-{next(self._heartbeat_ids)}"})
                    )
                else:
                    conn.push(b": ping\n\n")

    # ==============================================================================================
    # faults (thread-safe)

    def drop_connections(self) -> int:
        """Abort every WebSocket and SSE connection at the TCP level (RST, no close frame).

        Returns how many."""

        def run() -> int:
            conns = list(self._conns.values())
            for conn in conns:
                conn.abort()
            return len(conns)

        n = self._call(run)
        self._record("dropped", n)
        return n

    def close_connections(self, code: int = 1000, reason: str = "") -> int:
        """Close every WebSocket with ``code`` and end every SSE stream cleanly. Returns how many."""

        def run() -> int:
            conns = list(self._conns.values())
            for conn in conns:
                conn.request_close(code, reason)
            return len(conns)

        return self._call(run)

    def refuse_websocket(self, status: Optional[int] = 503, retry_after: Union[float, str, None] = None) -> None:
        """Answer WebSocket upgrades with HTTP ``status`` (and ``Retry-After``) until called with None.

        ``retry_after``: seconds, or a string sent as it is (an HTTP date, a malformed value)."""
        self._refuse_ws = None if status is None else (status, retry_after)

    def refuse_sse(self, status: Optional[int] = 503, retry_after: Union[float, str, None] = None) -> None:
        """Answer SSE requests with HTTP ``status`` (and ``Retry-After``) until called with None.

        ``retry_after``: seconds, or a string sent as it is (an HTTP date, a malformed value)."""
        self._refuse_sse = None if status is None else (status, retry_after)

    def accept_then_close(self, enabled: bool = True, code: int = 1000) -> None:
        """Accept WebSocket upgrades, then close at once with ``code`` (counted in ws_connects)."""
        self._accept_then_close = code if enabled else None

    def go_silent(self, silent: bool = True) -> None:
        """Keep sockets open but send and answer nothing: no events, pongs, heartbeats, command answers
        (HTTP requests wait until the silence ends). Events still go into the replay log."""

        def run() -> None:
            self._silent = silent
            if silent:
                for conn in self._conns.values():
                    conn.items.clear()
            audible = self._audible
            if audible is not None:
                if silent:
                    audible.clear()
                else:
                    audible.set()

        self._call(run)

    def set_delay(self, seconds: float) -> None:
        """Delay every outbound message (and HTTP answer) by ``seconds``; order is kept."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        self._delay = seconds

    def drop_after(self, n_messages: Optional[int]) -> None:
        """Abort each connection (open now or opened later) after it has sent ``n_messages`` more
        messages; None turns it off."""

        def run() -> None:
            self._drop_after = n_messages
            for conn in self._conns.values():
                conn.drop_after = None if n_messages is None else conn.sent + n_messages

        self._call(run)

    def expire_replay_log(self) -> None:
        """Forget every logged event: any Last-Event-ID is then answered with ``resume_gap``."""
        self._call(self._log.expire)

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
            self._sse_scripts.append(script)

    def clear_sse_scripts(self) -> None:
        self._sse_scripts.clear()

    def set_health(self, status: str = "healthy", *, minimal: bool = False, **services: bool) -> None:
        """What ``/health`` reports: ``status``, service flags (``database=False``...), or with
        ``minimal=True`` only ``{"status", "service"}`` like real MAGK servers."""
        self._health = {"status": status, "minimal": minimal, "services": dict(services)}

    def reset_faults(self) -> None:
        """Turn every fault switch off."""
        self.refuse_websocket(None)
        self.refuse_sse(None)
        self.accept_then_close(False)
        self.set_delay(0.0)
        self.drop_after(None)
        self.clear_sse_scripts()
        self.go_silent(False)

    # ==============================================================================================
    # HTTP plumbing

    def _auth_error(self, request: web.Request) -> Optional[web.Response]:
        if self.token is not None:
            header = request.headers.get("Authorization")
            supplied: Optional[str] = None
            if header is not None:
                scheme, _, value = header.partition(" ")
                supplied = value.strip() if scheme.lower() == "bearer" else ""
            elif "token" in request.query:
                supplied = request.query["token"]
            if supplied is None:
                return self._deny(401, "missing bearer token", 'Bearer realm="magk"')
            if supplied != self.token:
                return self._deny(403, "invalid bearer token", None)
        if self.api_key is not None:
            key = request.headers.get("X-API-Key")
            if key is None:
                return self._deny(401, "missing X-API-Key", None)
            if key != self.api_key:
                return self._deny(403, "invalid X-API-Key", None)
        return None

    def _deny(self, status: int, message: str, challenge: Optional[str]) -> web.Response:
        self._record("auth_failures")
        headers = {"WWW-Authenticate": challenge} if challenge else None
        return web.json_response({"error": message}, status=status, headers=headers)

    @staticmethod
    def _refusal(refusal: Tuple[int, Union[float, str, None]], what: str) -> web.Response:
        status, retry_after = refusal
        headers: Optional[Dict[str, str]] = None
        if isinstance(retry_after, str):
            headers = {"Retry-After": retry_after}
        elif retry_after is not None:
            headers = {"Retry-After": str(int(retry_after) if float(retry_after).is_integer() else retry_after)}
        if status == 204:
            return web.Response(status=204, headers=headers)
        return web.json_response(
            {"error": f"{what} refused (fault injection)"}, status=status, headers=headers
        )

    async def _http_gate(self, request: web.Request) -> Optional[web.Response]:
        """Count, apply silence and delay, check auth: the common start of every plain HTTP endpoint."""
        self._record("http_requests")
        audible = self._audible
        if audible is not None and not audible.is_set():
            await audible.wait()
        if self._delay > 0:
            await asyncio.sleep(self._delay)
        return self._auth_error(request)

    async def _read_json(self, request: web.Request) -> Any:
        length = request.content_length
        if length is not None and length > self.max_body_size:
            raise web.HTTPRequestEntityTooLarge(max_size=self.max_body_size, actual_size=length)
        body = await request.read()
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise _BadPayload(f"body is not valid JSON: {exc.__class__.__name__}") from None

    def _error_response(self, exc: BaseException) -> web.Response:
        if isinstance(exc, web.HTTPRequestEntityTooLarge):
            self._record("too_large")
            return web.json_response({"error": f"body larger than {self.max_body_size} bytes"}, status=413)
        self._record("bad_messages")
        return web.json_response({"error": str(exc)}, status=400)

    # ==============================================================================================
    # endpoints

    async def _handle_health(self, request: web.Request) -> web.Response:
        self._record("http_requests")
        if not self.open_health:
            denied = self._auth_error(request)
            if denied is not None:
                return denied
        began = time.perf_counter()
        health = self._health
        if health["minimal"]:
            return web.json_response({"status": health["status"], "service": "magk-reference-backend"})
        services = {"database": True, "messaging": True, "workflows": True}
        services.update(health["services"])
        body = {
            "status": health["status"],
            "service": "magk-reference-backend",
            "services": services,
            "metrics": {
                "activeConnections": len(self._conns),
                "queueLength": sum(len(c.items) for c in self._conns.values()),
                "responseTime": round((time.perf_counter() - began) * 1000, 3),
            },
        }
        return web.json_response(body)

    async def _handle_commands(self, request: web.Request) -> web.Response:
        denied = await self._http_gate(request)
        if denied is not None:
            return denied
        try:
            cmd = self._parse_command(await self._read_json(request))
        except (_BadPayload, web.HTTPRequestEntityTooLarge) as exc:
            return self._error_response(exc)
        return web.json_response(self._run_command(cmd, "http"))

    async def _handle_messages(self, request: web.Request) -> web.Response:
        denied = await self._http_gate(request)
        if denied is not None:
            return denied
        try:
            body = await self._read_json(request)
            if not isinstance(body, dict):
                raise _BadPayload("a message must be a JSON object")
            if not isinstance(body.get("type"), str):
                raise _BadPayload("a message needs a string 'type'")
            raw = _dumps(body)
            self._record_received("http", request.headers.get("X-Connection-Id"), body, raw)
            cmd = self._command_in_envelope(body)
        except (_BadPayload, web.HTTPRequestEntityTooLarge) as exc:
            return self._error_response(exc)
        if cmd is None:
            if body["type"] == "ping":
                return web.json_response({"accepted": True, "response": self._pong_for(body)}, status=200)
            return web.json_response({"accepted": True}, status=202)
        response = self._run_command(cmd, "http")
        envelope = self._control(
            "workflow_event", {"type": "command_response", "response": response}, cmd.workflow_id
        )
        conn = self._conns.get(request.headers.get("X-Connection-Id", ""))
        if conn is not None:
            self._send_control(conn, envelope)
        return web.json_response({"accepted": True, "response": response}, status=200)

    # -- commands ----------------------------------------------------------------------------------

    @staticmethod
    def _parse_command(obj: Any, fallback_request_id: Optional[str] = None) -> _Command:
        if not isinstance(obj, dict):
            raise _BadPayload("a command payload must be a JSON object")
        command = obj.get("command")
        if not isinstance(command, str) or not command:
            raise _BadPayload("'command' must be a non-empty string")
        workflow_id = obj.get("workflowId")
        if not isinstance(workflow_id, str) or not workflow_id:
            raise _BadPayload("'workflowId' must be a non-empty string")
        node_id = obj.get("nodeId")
        if node_id is not None and not isinstance(node_id, str):
            raise _BadPayload("'nodeId' must be a string")
        data = obj.get("data")
        if data is not None and not isinstance(data, dict):
            raise _BadPayload("'data' must be an object")
        request_id = obj.get("requestId", fallback_request_id)
        if request_id is not None and (not isinstance(request_id, str) or not request_id):
            raise _BadPayload("'requestId' must be a non-empty string")
        return _Command(command, workflow_id, node_id, data, request_id)

    def _command_in_envelope(self, msg: Dict[str, Any]) -> Optional[_Command]:
        """The command a ``workflow_event`` envelope carries, None when it is no command envelope."""
        data = msg.get("data")
        if msg.get("type") != "workflow_event" or not isinstance(data, dict) or data.get("type") != "command":
            return None
        envelope_id = msg.get("id")
        return self._parse_command(data.get("command"), envelope_id if isinstance(envelope_id, str) else None)

    def _run_command(self, cmd: _Command, transport: str) -> Dict[str, Any]:
        if cmd.request_id is None:
            cmd.request_id = f"srv-{next(self._generated_request_ids)}"
        rid = cmd.request_id
        with self._cond:
            self._command_counts[rid] += 1
            self._counters["commands"] += 1
            self._cond.notify_all()
        stored = self._responses.get(rid)
        if stored is not None:
            self._record("commands_replayed")
            logger.debug("command %s repeated over %s: answering again without running it", rid, transport)
            return dict(stored)
        response: Dict[str, Any] = {"requestId": rid, "command": cmd.command}
        try:
            result = self._engine.execute(cmd.command, cmd.workflow_id, cmd.node_id, cmd.data)
        except CommandError as exc:
            response["success"] = False
            response["error"] = str(exc)
        else:
            response["success"] = True
            response["data"] = result
        self._responses[rid] = response
        while len(self._responses) > self.idempotency_size:
            self._responses.popitem(last=False)
        return dict(response)

    # -- WebSocket -----------------------------------------------------------------------------------

    def _record_received(self, transport: str, conn_id: Optional[str], message: Any, raw: str) -> None:
        item = ReceivedMessage(transport, conn_id, message, raw, time.monotonic())
        with self._cond:
            if isinstance(message, dict) and message.get("type") == "pong":
                self._pongs.append(item)
                self._counters["pongs"] += 1
            else:
                self._received.append(item)
            self._cond.notify_all()

    def _pong_for(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        data = msg.get("data")
        ping_id = data.get("pingId") if isinstance(data, dict) else None
        return self._control("pong", {"pingId": ping_id})

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        self._record("ws_attempts")
        denied = self._auth_error(request)
        if denied is not None:
            self._log_connection("websocket", request, f"http {denied.status}", None)
            return denied
        refusal = self._refuse_ws
        if refusal is not None:
            self._record("refused")
            self._log_connection("websocket", request, f"http {refusal[0]}", None)
            return self._refusal(refusal, "WebSocket upgrade")
        ws = web.WebSocketResponse(
            max_msg_size=self.max_body_size,
            autoping=True,
            compress=False,
            timeout=self.close_timeout,
            writer_limit=256 * 1024,
        )
        if not ws.can_prepare(request).ok:
            return web.json_response({"error": "expected a WebSocket upgrade"}, status=400)
        await ws.prepare(request)
        conn = _Connection(f"c-{next(self._conn_ids)}", "websocket", request)
        conn.ws = ws
        self._log_connection("websocket", request, "accepted", conn.id)
        close_code = self._accept_then_close
        if close_code is not None:
            self._record("ws_connects")
            await ws.close(code=close_code, message=b"accept_then_close")
            return ws
        self._attach(conn, request)
        conn.writer_task = asyncio.get_running_loop().create_task(self._write_loop(conn))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_ws_text(conn, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self._record("bad_messages")
                    self._send_control(
                        conn,
                        self._control(
                            "subscription_error",
                            {"code": "bad_message", "message": "binary frames are not accepted"},
                        ),
                    )
                elif msg.type == WSMsgType.ERROR:
                    logger.debug("connection %s: %s", conn.id, ws.exception())
                    break
        finally:
            if conn.writer_task is not None and conn.close_request is None:
                conn.writer_task.cancel()
            self._detach(conn)
        return ws

    def _on_ws_text(self, conn: _Connection, text: str) -> None:
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError):
            msg = None
            problem = "message is not valid JSON"
        else:
            problem = (
                ""
                if isinstance(msg, dict) and isinstance(msg.get("type"), str)
                else "message must be a JSON object with a string 'type'"
            )
        if problem:
            self._record("bad_messages")
            self._record_received("websocket", conn.id, msg, text)
            self._send_control(
                conn, self._control("subscription_error", {"code": "bad_message", "message": problem})
            )
            return
        assert isinstance(msg, dict)
        msg_type = msg["type"]
        if msg_type == "ping":
            self._record("pings")
            self._send_control(conn, self._pong_for(msg))
            return
        self._record_received("websocket", conn.id, msg, text)
        try:
            cmd = self._command_in_envelope(msg)
        except _BadPayload as exc:
            self._record("bad_messages")
            envelope_id = msg.get("id")
            response = {
                "requestId": envelope_id if isinstance(envelope_id, str) else None,
                "command": None,
                "success": False,
                "error": f"malformed command: {exc}",
            }
            wid = msg.get("workflowId")
            self._send_control(
                conn,
                self._control(
                    "workflow_event",
                    {"type": "command_response", "response": response},
                    wid if isinstance(wid, str) else None,
                ),
            )
            return
        if cmd is not None:
            response = self._run_command(cmd, "websocket")
            self._send_control(
                conn,
                self._control(
                    "workflow_event", {"type": "command_response", "response": response}, cmd.workflow_id
                ),
            )

    # -- connection registry -----------------------------------------------------------------------

    def _attach(self, conn: _Connection, request: web.Request) -> None:
        """Queue gap notice, ack and replay, and register for live events, with no await in between:
        nothing published meanwhile can be missed or sent twice."""
        last_id = request.headers.get("Last-Event-ID") or request.query.get("lastEventId") or None
        replay: List[LoggedEvent] = []
        if last_id is not None:
            gap, replay = self._log.after(last_id)
            if gap:
                self._record("resume_gaps")
                self._send_control(
                    conn, self._control("subscription_error", {"code": "resume_gap", "lastEventId": last_id})
                )
        if self.send_ack:
            self._send_control(
                conn,
                self._control(
                    "subscription_ack",
                    {
                        "connectionId": conn.id,
                        "replayed": len(replay),
                        # the stream position at attach time ("e-0": before the first event), so a client
                        # that has not received an event yet can still resume without a gap
                        "lastEventId": self._log.position,
                    },
                ),
            )
        if not self._silent:
            websocket = conn.transport == "websocket"
            for entry in replay:
                conn.push(_text_frame(entry.text) if websocket else _sse_frame(entry.text, entry.id))
        if self._drop_after is not None:
            conn.drop_after = self._drop_after
        self._conns[conn.id] = conn
        with self._cond:
            self._counters["ws_connects" if conn.transport == "websocket" else "sse_connects"] += 1
            self._counters["replayed"] += len(replay)
            self._open[conn.id] = conn.transport
            self._cond.notify_all()

    def _detach(self, conn: _Connection) -> None:
        self._conns.pop(conn.id, None)
        conn.done.set()
        with self._cond:
            self._open.pop(conn.id, None)
            self._cond.notify_all()

    async def _write_loop(self, conn: _Connection) -> None:
        """Write a connection's queued items in order, in batches; apply delay, silence and drop_after."""
        try:
            while conn.close_request is None:
                if not conn.items:
                    conn.wakeup.clear()
                    await conn.wakeup.wait()
                    continue
                delay = self._delay
                if delay > 0:
                    wait = conn.items[0][0] + delay - time.monotonic()
                    if wait > 0:
                        conn.wakeup.clear()
                        try:
                            await asyncio.wait_for(conn.wakeup.wait(), wait)
                        except asyncio.TimeoutError:
                            pass
                        continue
                    batch = [conn.items.popleft()[1]]
                else:
                    batch = [item for _, item in conn.items]
                    conn.items.clear()
                if self._silent:
                    continue
                if conn.drop_after is not None and conn.sent + len(batch) >= conn.drop_after:
                    batch = batch[: max(0, conn.drop_after - conn.sent)]
                    await self._write_batch(conn, batch)
                    conn.sent += len(batch)
                    self._record("dropped")
                    conn.abort()
                    return
                await self._write_batch(conn, batch)
                conn.sent += len(batch)
            code, reason = conn.close_request
            if conn.ws is not None:
                await conn.ws.close(code=code, message=reason.encode("utf-8"))
            elif conn.sse is not None:
                await conn.sse.write_eof()
        except (ConnectionError, RuntimeError, asyncio.TimeoutError) as exc:
            logger.debug("connection %s: write failed: %r", conn.id, exc)
            conn.abort()

    async def _write_batch(self, conn: _Connection, batch: List[bytes]) -> None:
        if not batch:
            return
        data = batch[0] if len(batch) == 1 else b"".join(batch)
        if conn.sse is not None:
            await conn.sse.write(data)
            return
        ws = conn.ws
        transport = conn.request.transport
        if ws is None or ws.closed or transport is None or transport.is_closing():
            raise ConnectionResetError("connection closed")
        transport.write(data)
        # flow control without awaiting a drain per message: wait only when the peer falls behind
        while transport.get_write_buffer_size() > _HIGH_WATER:
            if transport.is_closing():
                raise ConnectionResetError("connection closed")
            await asyncio.sleep(0.005)

    # -- SSE -----------------------------------------------------------------------------------------

    async def _handle_sse(self, request: web.Request) -> web.StreamResponse:
        self._record("sse_attempts")
        if self._sse_scripts:
            script = self._sse_scripts.popleft()
            self._log_connection("sse", request, f"scripted {script.status}", None)
            return await self._serve_script(request, script)
        denied = self._auth_error(request)
        if denied is not None:
            self._log_connection("sse", request, f"http {denied.status}", None)
            return denied
        refusal = self._refuse_sse
        if refusal is not None:
            self._record("refused")
            self._log_connection("sse", request, f"http {refusal[0]}", None)
            return self._refusal(refusal, "event stream")
        conn = _Connection(f"c-{next(self._conn_ids)}", "sse", request)
        resp = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                "X-Connection-Id": conn.id,
            },
        )
        await resp.prepare(request)
        conn.sse = resp
        self._log_connection("sse", request, "accepted", conn.id)
        if self.sse_retry_ms is not None and not self._silent:
            conn.push(f"retry: {int(self.sse_retry_ms)}\n\n".encode("ascii"))
        self._attach(conn, request)
        try:
            await self._write_loop(conn)
        finally:
            self._detach(conn)
        return resp

    async def _serve_script(self, request: web.Request, script: ScriptedResponse) -> web.StreamResponse:
        resp: web.StreamResponse
        if script.chunked:
            resp = web.StreamResponse(status=script.status)
        else:
            resp = _CloseDelimitedResponse(status=script.status)
            resp.force_close()
        for name, value in script.headers.items():
            resp.headers[name] = value
        if script.content_type is not None:
            resp.headers["Content-Type"] = script.content_type
        await resp.prepare(request)
        try:
            for i, chunk in enumerate(script.chunks):
                if i and script.chunk_delay > 0:
                    await asyncio.sleep(script.chunk_delay)
                if chunk:
                    await resp.write(chunk)
            if script.abort:
                transport = request.transport
                if transport is not None:
                    transport.abort()
                return resp
            if script.hold_open:
                stopping = self._stopping
                if stopping is not None:
                    await asyncio.shield(stopping)
            await resp.write_eof()
        except (ConnectionError, RuntimeError) as exc:
            logger.debug("scripted SSE response: %r", exc)
        return resp


def _set_result_once(fut: asyncio.Future[int], value: int) -> None:
    if not fut.done():
        fut.set_result(value)
