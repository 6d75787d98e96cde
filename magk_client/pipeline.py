"""The command pipeline's threads: a thin driver around :class:`~magk_client.commands.CommandTable`.

Who runs what:

caller's thread
    :meth:`CommandPipeline.submit` registers a command and, when the link is up, sends it at once:
    on the WebSocket through ``RealtimeService.send_message``; for ``POST /commands`` it hands the
    request to the HTTP pool.
``magk-adapter-N-commands`` (the driver)
    Wakes at the table's next deadline, or when kicked: fails commands whose time is up
    (:class:`~magk_client.errors.CommandTimeout`) and sends what is due (commands that waited for
    the link, resends after a lost answer or a failed ``POST``).
``magk-adapter-N-http-k`` (a small pool)
    Runs ``POST /commands`` and completes the command with the reply.
the service's dispatcher thread
    Delivers WebSocket answers (:meth:`on_answer`) and connection states (:meth:`on_state`) in
    stream order; a state change moves the table's link (a new epoch) and kicks the driver.

Futures are completed on the dispatcher, the driver, an HTTP pool thread, or the thread calling
``stop()`` -- never on the service's reader (a Future runs its done-callbacks in the completing
thread). The lock guards the table only; no callback, send or request runs under it.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .commands import (
    CommandStats,
    CommandTable,
    PendingCommand,
    Route,
    command_envelope,
    command_payload,
    new_request_id,
    parse_command_response,
)
from .errors import (
    AuthError,
    CommandError,
    CommandTimeout,
    MagkConnectionError,
    MagkError,
    NotConnectedError,
)
from .http_client import HttpClient
from .models import CommandResponse, ConnectionState, ConnectionType, RealtimeMessage

__all__ = ["COMMANDS_PATH", "CommandPipeline"]

logger = logging.getLogger("magk_client.adapter.commands")

COMMANDS_PATH = "/commands"
HTTP_WORKERS = 4
_RETRYABLE_STATUS = frozenset({408, 425, 429})

Sender = Callable[[Dict[str, Any]], bool]
Transform = Callable[[CommandResponse], CommandResponse]
Log = Callable[[str, Tuple[Any, ...]], None]


def _error(cmd: PendingCommand, text: str, cls: type[CommandError] = CommandError, **extra: Any) -> CommandError:
    """A command's failure, naming the command and carrying its request id."""
    return cls(text, request_id=cmd.request_id, **extra)


def _settle(fut: concurrent.futures.Future[CommandResponse], result: Any = None, error: Any = None) -> None:
    """Complete a future unless the user cancelled it (then the outcome is dropped)."""
    try:
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


class CommandPipeline:
    """Sends commands, correlates their answers, resends and times them out (see the module doc).

    ``send_ws(envelope)`` sends a WebSocket message (``RealtimeService.send_message``); ``http`` is
    the client for ``POST /commands``; ``transform`` applies the response transformers; ``log``
    logs a command line when ``log_messages`` is on.
    """

    def __init__(
        self,
        *,
        send_ws: Sender,
        connection_type: Callable[[], Optional[ConnectionType]],
        max_retries: int,
        retry_delay: float,
        default_timeout: float,
        name: str,
        transform: Transform,
        log: Optional[Log] = None,
    ) -> None:
        self._send_ws = send_ws
        self._connection_type = connection_type
        self._http: Optional[HttpClient] = None
        self._default_timeout = default_timeout
        self._name = name
        self._transform = transform
        self._log = log
        self._lock = threading.Lock()
        self._table = CommandTable(max_retries, retry_delay)
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._running = False
        self._driver: Optional[threading.Thread] = None
        self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None

    # -- life cycle (the adapter's connect / disconnect) --------------------------------------------

    def start(self, http: HttpClient) -> None:
        """Start the driver and the HTTP pool; ``http`` is the client for ``POST /commands``."""
        self._http = http
        self._stop = threading.Event()
        self._kick = threading.Event()
        with self._lock:
            self._running = True
        self._pool = concurrent.futures.ThreadPoolExecutor(HTTP_WORKERS, thread_name_prefix=f"{self._name}-http")
        self._driver = threading.Thread(target=self._drive, name=f"{self._name}-commands", daemon=True)
        self._driver.start()

    def stop(self, reason: str, timeout: float = 10.0) -> None:
        """Fail every pending command at once with ``CommandError(reason)``, abort ``POST``s in
        progress and join the driver and the HTTP pool. Idempotent."""
        with self._lock:
            self._running = False
            failed = self._table.fail_all()
            self._table.link_down(time.monotonic())
        for cmd in failed:
            _settle(cmd.handle, error=_error(cmd, f"{cmd.command} ({cmd.request_id}): {reason}"))
        self._stop.set()
        self._kick.set()
        if self._http is not None:
            self._http.close()
        current = threading.current_thread()
        driver, self._driver = self._driver, None
        if driver is not None and driver is not current:
            driver.join(timeout)
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=not current.name.startswith(f"{self._name}-http"), cancel_futures=True)

    @property
    def stats(self) -> CommandStats:
        with self._lock:
            return self._table.stats()

    def pending(self) -> int:
        with self._lock:
            return len(self._table)

    # -- submitting (any thread) --------------------------------------------------------------------

    def submit(
        self,
        command: str,
        workflow_id: str,
        node_id: Optional[str],
        data: Optional[Dict[str, Any]],
        timeout: Optional[float],
    ) -> concurrent.futures.Future[CommandResponse]:
        """Register a command; its future completes with the answer or a :class:`CommandError`."""
        seconds = self._default_timeout if timeout is None else float(timeout)
        rid = new_request_id()
        payload = command_payload(command, workflow_id, rid, node_id, data)
        fut: concurrent.futures.Future[CommandResponse] = concurrent.futures.Future()
        now = time.monotonic()
        with self._lock:
            if not self._running:
                raise NotConnectedError("the adapter is not connected: call connect() first")
            self._table.add(rid, command, payload, now, seconds, fut)
            due = self._table.take_due(now)
        fut.add_done_callback(lambda f: self._forget_cancelled(f, rid))
        self._send(due)
        self._kick.set()  # the driver owns the new deadline
        return fut

    def _forget_cancelled(self, fut: concurrent.futures.Future[CommandResponse], request_id: str) -> None:
        if fut.cancelled():
            with self._lock:
                self._table.remove(request_id)

    # -- sending (caller's thread or the driver) ----------------------------------------------------

    def _send(self, items: List[Tuple[PendingCommand, Route]]) -> None:
        for cmd, route in items:
            if self._log is not None:
                self._log(
                    "command %s %s (%s) sent over %s, attempt %d",
                    (cmd.command, cmd.payload["workflowId"], cmd.request_id, route.value, cmd.attempts),
                )
            if route is Route.HTTP:
                pool = self._pool
                try:
                    if pool is None:
                        raise RuntimeError("no pool")
                    pool.submit(self._post, cmd)
                except RuntimeError:  # the pool shut down meanwhile: stop() fails the command
                    pass
                continue
            try:
                self._send_ws(command_envelope(cmd.payload))
            except NotConnectedError:  # offline with the queue off: goes out at the next link change
                with self._lock:
                    self._table.unsend(cmd.request_id)
            except MagkError as err:  # too large, closed, refused: the command cannot be sent
                self._fail(cmd, _error(cmd, f"{cmd.command} could not be sent: {err}"), err)

    def _post(self, cmd: PendingCommand) -> None:
        """``POST /commands`` and complete the command with the reply (HTTP pool thread)."""
        remaining = cmd.deadline - time.monotonic()
        if remaining <= 0:
            return  # the driver times it out
        body = json.dumps(cmd.payload, separators=(",", ":")).encode("utf-8")
        http = self._http
        assert http is not None
        try:
            reply = http.request("POST", COMMANDS_PATH, body=body, timeout=remaining)
        except MagkConnectionError as err:
            self._send_failed(cmd, err, retryable=not err.terminal and not isinstance(err, AuthError))
            return
        status = reply.status
        if status == 200:
            try:
                obj = json.loads(reply.body.decode("utf-8"))
                response = parse_command_response(obj)
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                self._fail(cmd, _error(cmd, f"{cmd.command}: malformed answer from POST /commands: {exc}"[:300]))
                return
            self._complete(response)
            return
        text = self._error_text(reply.body)
        where = f"POST {http.url(COMMANDS_PATH)}"
        if status in (401, 403):
            refused = AuthError(f"{where} was refused with HTTP {status}", status=status)
            self._fail(cmd, _error(cmd, f"{cmd.command} refused: {refused}", server_error=text), refused)
        elif status >= 500 or status in _RETRYABLE_STATUS:
            self._send_failed(cmd, MagkError(f"{where} answered HTTP {status}"), retryable=True)
        else:
            detail = f": {text}" if text else ""
            self._fail(cmd, _error(cmd, f"{cmd.command} rejected with HTTP {status}{detail}", server_error=text))

    @staticmethod
    def _error_text(body: bytes) -> Optional[str]:
        try:
            obj = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None
        error = obj.get("error") if isinstance(obj, dict) else None
        return error[:500] if isinstance(error, str) else None

    def _send_failed(self, cmd: PendingCommand, err: MagkError, *, retryable: bool) -> None:
        with self._lock:
            failed = self._table.on_send_failed(cmd.request_id, time.monotonic(), err, retryable=retryable)
        if failed is not None:
            tries = f" after {failed.attempts} attempt(s)" if retryable else ""
            error = _error(failed, f"{failed.command} could not be delivered{tries}: {err}")
            error.__cause__ = err
            _settle(failed.handle, error=error)
        else:
            self._kick.set()

    def _fail(self, pending: PendingCommand, error: CommandError, cause: Optional[BaseException] = None) -> None:
        with self._lock:
            cmd = self._table.remove(pending.request_id)
        if cmd is not None:
            if cause is not None:
                error.__cause__ = cause
            _settle(cmd.handle, error=error)

    # -- answers and states (the service's dispatcher thread) --------------------------------------

    def on_answer(self, message: RealtimeMessage) -> None:
        """A ``command_response`` arrived on the stream (dispatcher thread)."""
        raw = message.data.get("response")
        try:
            response = parse_command_response(raw)
        except ValueError as exc:
            rid = raw.get("requestId") if isinstance(raw, dict) else None
            rid = rid if isinstance(rid, str) and rid else None
            with self._lock:
                cmd = self._table.on_answer(rid)
            if cmd is None:
                logger.debug("dropped a command answer matching no pending command (%s)", exc)
            else:
                _settle(cmd.handle, error=_error(cmd, f"{cmd.command}: malformed answer: {exc}"))
            return
        self._complete(response)

    def _complete(self, response: CommandResponse) -> None:
        with self._lock:
            cmd = self._table.on_answer(response.request_id)
        if cmd is None:
            logger.debug("dropped an answer for request %s: no such pending command", response.request_id)
            return
        if self._log is not None:
            self._log("answer to %s (%s): success=%s", (cmd.command, cmd.request_id, response.success))
        try:
            response = self._transform(response)
        except Exception as exc:  # noqa: BLE001 - user code: the caller gets the failure
            error = _error(cmd, f"{cmd.command}: response transformer raised {type(exc).__name__}", response=response)
            error.__cause__ = exc
            _settle(cmd.handle, error=error)
            return
        if response.success:
            _settle(cmd.handle, result=response)
            return
        text = response.error or "no reason given"
        _settle(
            cmd.handle,
            error=_error(cmd, f"{cmd.command} failed: {text}", server_error=response.error, response=response),
        )

    def on_state(self, state: ConnectionState, error: Optional[BaseException]) -> None:
        """The service's connection state changed (dispatcher thread, in stream order)."""
        now = time.monotonic()
        with self._lock:
            if state is ConnectionState.CONNECTED:
                ctype = self._connection_type()
                route = Route.WEBSOCKET if ctype is ConnectionType.WEBSOCKET else Route.HTTP
                lost = self._table.link_up(route, now)
                gone: List[PendingCommand] = []
            else:
                lost = self._table.link_down(now)
                ended = state in (ConnectionState.DISCONNECTED, ConnectionState.ERROR, ConnectionState.CLOSED)
                gone = self._table.fail_all() if ended else []
        for cmd in lost:
            _settle(
                cmd.handle,
                error=_error(
                    cmd,
                    f"{cmd.command} ({cmd.request_id}): its answer was lost in a reconnect "
                    f"and it was already sent {cmd.attempts} time(s) (max_retries={self._table.max_retries})",
                ),
            )
        for cmd in gone:
            why = f": {error}" if error is not None else ""
            failure = _error(cmd, f"{cmd.command} ({cmd.request_id}): the connection ended ({state.value}){why}")
            failure.__cause__ = error
            _settle(cmd.handle, error=failure)
        self._kick.set()

    # -- the driver thread ---------------------------------------------------------------------------

    def _drive(self) -> None:
        """Driver thread: time commands out and send what is due, then sleep until the next deadline."""
        stop, kick = self._stop, self._kick
        while not stop.is_set():
            kick.clear()
            now = time.monotonic()
            with self._lock:
                expired = self._table.expire(now)
                due = self._table.take_due(now)
                wake = self._table.next_wakeup(now)
            for cmd in expired:
                text = f"no answer to {cmd.command} ({cmd.request_id}) within {cmd.timeout:g} s"
                _settle(cmd.handle, error=_error(cmd, text, CommandTimeout))
            try:
                self._send(due)
            except Exception:
                logger.exception("sending commands failed")
            kick.wait(None if wake is None else max(0.0, wake - time.monotonic()))
