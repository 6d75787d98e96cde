"""RealtimeAdapter: workflow commands as one call, workflow and node subscriptions, backend health.

The adapter sits on a :class:`~magk_client.service.RealtimeService` (``adapter.service``) and adds:

- commands (``start_workflow`` ... ``update_config``): each a blocking call returning the
  :class:`~magk_client.models.CommandResponse` (raising :class:`~magk_client.errors.CommandError`
  with the server's text when ``success`` is false, :class:`~magk_client.errors.CommandTimeout`
  when no answer comes in time) and a ``submit_*`` form returning a ``concurrent.futures.Future``.
  Commands travel on the WebSocket when it is live, as ``POST /commands`` while the service is on
  SSE, and wait while it is offline; an answer lost in a reconnect is asked for again with the same
  request id (see :mod:`magk_client.commands`). Answers never reach subscribers as events.
- workflow subscriptions delivering :class:`~magk_client.events.WorkflowEvent` and node
  subscriptions delivering :class:`~magk_client.events.NodeEvent`, on the dispatcher thread;
- ``GET /health`` on demand and, with ``enable_health_check``, every ``health_check_interval_ms``.

Threads (all named, all joined by :meth:`RealtimeAdapter.disconnect`): the service's own, plus
``magk-adapter-N-commands`` (command deadlines and resends), ``magk-adapter-N-http_k`` (``POST
/commands``) and ``magk-adapter-N-health`` (the poller). A blocking command refuses to run on a
thread that delivers answers (the dispatcher, a callback, the adapter's threads): use ``submit_*``
there.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, TypeVar, Union

from .adapter_setup import (
    ResponseTransformers,
    adapter_config,
    build_http_client,
    log_level_number,
    service_config,
)
from .backend_health import HEALTH_PATH, HealthPoller, HealthResult, parse_health
from .command_methods import CommandFuture, WorkflowCommandMethods
from .commands import CommandStats
from .config import ErrorRecoveryConfig, RealtimeAdapterConfig, RealtimeConnectionConfig
from .errors import (
    ClientClosedError,
    CommandError,
    CommandTimeout,
    ConfigError,
    MagkError,
    NotConnectedError,
    check_non_empty,
)
from .events import NODE_EVENT_TYPES, WORKFLOW_EVENT_TYPES, NodeEvent, WorkflowEvent, to_node_event, to_workflow_event
from .models import (
    BackendHealth,
    CommandResponse,
    ConnectionHealth,
    ConnectionState,
    ConnectionType,
    MessageType,
    RealtimeMessage,
)
from .pipeline import CommandPipeline
from .service import RealtimeService

__all__ = ["AdapterStatus", "RealtimeAdapter"]

logger = logging.getLogger("magk_client.adapter")
_numbers = itertools.count(1)
_Event = TypeVar("_Event", WorkflowEvent, NodeEvent)
#: extra seconds a blocking call waits past a command's deadline for the driver to report it
_GRACE = 5.0

@dataclass(frozen=True)
class AdapterStatus:
    """A snapshot of an adapter: connection, latest backend health, subscriptions, commands."""

    connected: bool
    connection_state: ConnectionState
    connection_type: Optional[ConnectionType]
    backend_health: Optional[BackendHealth]
    backend_health_error: Optional[str]
    backend_health_checked_at: Optional[float]
    subscriptions: Tuple[str, ...]
    pending_commands: int
    commands: CommandStats
    connection: ConnectionHealth


class RealtimeAdapter(WorkflowCommandMethods):
    """Workflow commands, subscriptions and backend health over a :class:`RealtimeService`.

    ``RealtimeAdapter(config=None, *, connection_config=None, error_recovery=None, **overrides)``:
    ``config`` is a :class:`RealtimeAdapterConfig` (or a dict; camelCase keys welcome) and
    ``overrides`` its fields as keywords. ``connection_config`` (a
    :class:`RealtimeConnectionConfig` or a dict) sets the service's fields (transport, heartbeat,
    backoff, TLS...); its URLs come from ``backend_base_url`` and the paths, its credentials from
    ``api_key``/``auth_token`` when those are set. Use it as a context manager::

        with RealtimeAdapter(backend_base_url="http://localhost:8000") as adapter:
            adapter.subscribe_to_workflow("wf-1", print)
            adapter.start_workflow("wf-1")
    """

    def __init__(
        self,
        config: Union[RealtimeAdapterConfig, Mapping[str, Any], None] = None,
        *,
        connection_config: Union[RealtimeConnectionConfig, Mapping[str, Any], None] = None,
        error_recovery: Union[ErrorRecoveryConfig, Mapping[str, Any], None] = None,
        **overrides: Any,
    ) -> None:
        self._config = adapter_config(config, overrides)
        cfg = self._config
        self._number = next(_numbers)
        self._prefix = f"magk-adapter-{self._number}"
        self._service = RealtimeService(service_config(cfg, connection_config), error_recovery)
        self._log_level = log_level_number(cfg.log_level)
        self._lock = threading.Lock()
        self._link = threading.Condition(self._lock)
        self._lifecycle = threading.Lock()
        self._linked = False
        #: the service's dispatcher thread, learnt from the first state notice of each session
        self._dispatcher: Optional[threading.Thread] = None
        self._subscriptions: Dict[str, str] = {}
        self._response_transformers = ResponseTransformers()
        self._health: Optional[HealthResult] = None
        self._poller: Optional[HealthPoller] = None
        self._running = False
        self._closed = False
        self._pipeline = CommandPipeline(
            send_ws=self._service.send_message,
            connection_type=lambda: self._service.connection_type,
            max_retries=cfg.max_retries,
            retry_delay=cfg.retry_delay_ms / 1000.0,
            default_timeout=cfg.command_timeout_ms / 1000.0,
            name=self._prefix,
            transform=self._transform_response,
            log=self._log if cfg.log_messages else None,
        )
        self._service.on_connection_state_change(self._on_state)
        if cfg.enable_command_pipeline:
            self._service.set_command_answer_handler(self._pipeline.on_answer)
        if cfg.log_messages:
            self._service.subscribe(None, self._log_message)

    # ------------------------------------------------------------------ properties

    @property
    def config(self) -> RealtimeAdapterConfig:
        return self._config

    @property
    def service(self) -> RealtimeService:
        """The :class:`RealtimeService` underneath (its connection, raw subscriptions, health)."""
        return self._service

    @property
    def is_connected(self) -> bool:
        return self._service.is_connected

    def __repr__(self) -> str:
        return f"<RealtimeAdapter #{self._number} {self._service.state.value} {self._config.backend_base_url}>"

    # ------------------------------------------------------------------ lifecycle

    def connect(self, timeout: Optional[float] = None) -> None:
        """Connect the service (blocking like :meth:`RealtimeService.connect`) and start the
        command pipeline and, with ``enable_health_check``, the health poller."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lifecycle:
            if self._closed:
                raise ClientClosedError("this RealtimeAdapter was closed; create a new one")
            if not self._running:
                if self._config.enable_command_pipeline:
                    self._pipeline.start(self._http_client())
                self._running = True
        try:
            self._service.connect(timeout)
        except BaseException:
            self._stop_threads("the connection could not be made")
            raise
        # The pipeline learns of the connection from the dispatcher (in stream order); wait for it,
        # so a command sent right after connect() goes out at once (not on the dispatcher itself).
        wait = self._service.config.connection_timeout_ms / 1000.0
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        if threading.current_thread() is not self._dispatcher:
            with self._link:
                self._link.wait_for(lambda: self._linked, wait)
        with self._lifecycle:
            if self._running and self._config.enable_health_check and self._poller is None:
                client = self._http_client()
                self._poller = HealthPoller(
                    lambda: self._check_health(client, None),
                    self._config.health_check_interval_ms / 1000.0,
                    f"{self._prefix}-health",
                    abort=client.close,
                    on_result=self._record_health,
                )
                self._poller.start()

    def disconnect(self, timeout: float = 5.0) -> None:
        """Fail every pending command at once (:class:`CommandError`), stop the poller and the
        command threads, and disconnect the service. Safe from any thread, callbacks included."""
        self._stop_threads("the adapter disconnected before the answer arrived", timeout)
        self._service.disconnect(timeout)

    def _stop_threads(self, reason: str, timeout: float = 5.0) -> None:
        with self._lifecycle:
            running, self._running = self._running, False
            poller, self._poller = self._poller, None
        if running:
            self._pipeline.stop(reason, timeout)
        if poller is not None:
            poller.stop(timeout)

    def close(self) -> None:
        """Disconnect for good (the service is closed too). Idempotent."""
        self.disconnect()
        with self._lifecycle:
            self._closed = True
        self._service.close()

    def __enter__(self) -> RealtimeAdapter:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the service's notices (dispatcher)

    def _on_state(self, state: ConnectionState, error: Optional[BaseException]) -> None:
        self._dispatcher = threading.current_thread()
        self._pipeline.on_state(state, error)
        with self._link:
            self._linked = state is ConnectionState.CONNECTED
            self._link.notify_all()

    def _log(self, fmt: str, args: Tuple[Any, ...]) -> None:
        logger.log(self._log_level, fmt, *args)

    def _log_message(self, message: RealtimeMessage) -> None:
        logger.log(
            self._log_level,
            "message %s id=%s workflow=%s node=%s",
            message.type,
            message.id or "-",
            message.workflow_id or "-",
            message.node_id or "-",
        )

    # ------------------------------------------------------------------ subscriptions

    def subscribe_to_workflow(self, workflow_id: str, callback: Callable[[WorkflowEvent], Any]) -> str:
        """Call ``callback(WorkflowEvent)`` for each event of ``workflow_id`` (dispatcher thread).
        Returns an id for :meth:`unsubscribe`."""
        check_non_empty("workflow_id", workflow_id)
        return self._subscribe_events(
            "subscribe_to_workflow", WORKFLOW_EVENT_TYPES, to_workflow_event, callback,
            f"workflow:{workflow_id}", workflow_id,
        )

    def subscribe_to_node(
        self, node_id: str, workflow_id: Optional[str], callback: Callable[[NodeEvent], Any]
    ) -> str:
        """Call ``callback(NodeEvent)`` for each update of ``node_id`` (in ``workflow_id``, or in any
        workflow when None) on the dispatcher thread. Returns an id for :meth:`unsubscribe`."""
        check_non_empty("node_id", node_id)
        if workflow_id is not None:
            check_non_empty("workflow_id", workflow_id)
        return self._subscribe_events(
            "subscribe_to_node", NODE_EVENT_TYPES, to_node_event, callback,
            f"node:{workflow_id or '*'}/{node_id}", workflow_id, node_id,
        )

    def _subscribe_events(
        self,
        method: str,
        event_types: Tuple[MessageType, ...],
        convert: Callable[[RealtimeMessage], Optional[_Event]],
        callback: Callable[[_Event], Any],
        label: str,
        workflow_id: Optional[str],
        node_id: Optional[str] = None,
    ) -> str:
        """Subscribe ``callback`` to the messages of ``event_types`` that ``convert`` turns into events;
        ``label`` names the subscription in :meth:`get_status`."""
        if not callable(callback):
            raise ConfigError(f"{method}() needs a callable callback")

        def deliver(message: RealtimeMessage) -> None:
            event = convert(message)
            if event is not None:
                callback(event)

        sub_id = self._service.subscribe(event_types, deliver, workflow_id=workflow_id, node_id=node_id)
        with self._lock:
            self._subscriptions[sub_id] = label
        return sub_id

    def unsubscribe(self, subscription_id: str) -> bool:
        """Remove a subscription made here; True if it existed."""
        with self._lock:
            self._subscriptions.pop(subscription_id, None)
        return self._service.unsubscribe(subscription_id)

    # ------------------------------------------------------------------ transformers

    def register_message_transformer(self, event_name: str, fn: Callable[[Dict[str, Any]], Any]) -> Callable[[], None]:
        """Turn named SSE events ``event_name`` into envelopes with ``fn(backend_message)`` (see
        :meth:`RealtimeService.register_message_transformer`). With
        ``enable_message_transformation=False`` nothing is registered and the remover does nothing."""
        if not self._config.enable_message_transformation:
            logger.debug("message transformation is off: transformer for %r not registered", event_name)
            return _nothing
        return self._service.register_message_transformer(event_name, fn)

    def register_response_transformer(
        self, command: str, fn: Callable[[CommandResponse], CommandResponse]
    ) -> Callable[[], None]:
        """Pass every answer to ``command`` (``"*"``: to any command) through ``fn`` before the caller
        gets it (applied only with ``enable_message_transformation``). Returns a remover."""
        return self._response_transformers.register(command, fn)

    def _transform_response(self, response: CommandResponse) -> CommandResponse:
        if not self._config.enable_message_transformation:
            return response
        return self._response_transformers.apply(response)

    # ------------------------------------------------------------------ commands

    # send_workflow_command(), submit_workflow_command(), start_workflow() ... update_config() and
    # their submit_ forms: see command_methods.py; these are its hooks.

    def _submit_checked(
        self, command: str, workflow_id: str, node_id: Optional[str],
        data: Optional[Dict[str, Any]], timeout: Optional[float],
    ) -> CommandFuture:
        if not self._config.enable_command_pipeline:
            raise CommandError("the command pipeline is off (enable_command_pipeline=False)")
        state = self._service.state
        if state in (ConnectionState.ERROR, ConnectionState.CLOSED):
            raise NotConnectedError(f"the connection is {state.value}: call connect() again")
        return self._pipeline.submit(command, workflow_id, node_id, data, timeout)

    def _await_answer(self, command: str, future: CommandFuture, timeout: Optional[float]) -> CommandResponse:
        seconds = self._config.command_timeout_ms / 1000.0 if timeout is None else timeout
        try:
            return future.result(seconds + _GRACE)
        except CommandError:  # the pipeline's own CommandTimeout (a TimeoutError since 3.11) included
            raise
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise CommandTimeout(f"no answer to {command} within {seconds:g} s") from None

    def _refuse_blocking(self, what: str) -> None:
        current = threading.current_thread()
        if current is self._dispatcher or current.name.startswith(self._prefix + "-"):
            raise MagkError(
                f"{what}() cannot wait here: this thread delivers command answers; use submit_{what}()"
            )

    # ------------------------------------------------------------------ health and status

    def get_backend_health(self, timeout: Optional[float] = None) -> BackendHealth:
        """``GET /health`` now (``timeout`` seconds, default ``message_timeout_ms``), with the
        transports' TLS and auth settings. Raises a classified error (network, auth, protocol); a
        5xx answer is a health whose status is not ``healthy``."""
        client = self._http_client()
        try:
            health = self._check_health(client, timeout)
        except MagkError as err:
            self._record_health(HealthResult(time.time(), error=err))
            raise
        finally:
            client.close()
        self._record_health(HealthResult(time.time(), health=health))
        return health

    def _check_health(self, client: Any, timeout: Optional[float]) -> BackendHealth:
        seconds = self._service.config.message_timeout_ms / 1000.0 if timeout is None else timeout
        reply = client.request("GET", HEALTH_PATH, timeout=seconds)
        return parse_health(reply.status, reply.body, f"GET {client.url(HEALTH_PATH)}")

    def _record_health(self, result: HealthResult) -> None:
        with self._lock:
            if self._health is None or result.checked_at >= self._health.checked_at:
                self._health = result

    def _http_client(self) -> Any:
        return build_http_client(self._config, self._service.config)

    def get_status(self) -> AdapterStatus:
        """Connection, the latest backend health, subscriptions and commands, as one snapshot."""
        connection = self._service.get_connection_health()
        with self._lock:
            health = self._health
            subscriptions = tuple(self._subscriptions)
        stats = self._pipeline.stats
        return AdapterStatus(
            connected=connection.state is ConnectionState.CONNECTED,
            connection_state=connection.state,
            connection_type=connection.connection_type,
            backend_health=health.health if health is not None else None,
            backend_health_error=str(health.error) if health is not None and health.error is not None else None,
            backend_health_checked_at=health.checked_at if health is not None else None,
            subscriptions=subscriptions,
            pending_commands=stats.pending,
            commands=stats,
            connection=connection,
        )


def _nothing() -> None:
    return None

