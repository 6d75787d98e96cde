"""RealtimeIntegration: an adapter and a node store kept in step (the seed's ``useRealtimeIntegration``),
and the process-wide service of the seed's global functions.

The integration owns (or is given) a :class:`~magk_client.adapter.RealtimeAdapter` and a
:class:`~magk_client.store.NodeExecutionStore`, and adds nothing but wiring:

- one service subscription feeds the store: each node event of a subscribed workflow or node is
  applied once, however many subscriptions cover it (``enable_store_sync``);
- the service's state notices keep ``store.connection_state`` in step: state, the reconnect attempts
  of the current outage, the last error;
- with ``sync_bidirectional``, changes made with the store's action methods go to the backend as node
  messages (queued while offline with ``enable_offline_sync``);
- ``workflow(id)`` / ``node(id, workflow_id)`` context managers (see :mod:`magk_client.integration_handles`).

What each :class:`~magk_client.config.ServiceIntegrationConfig` field does is in its docstring.

Threads: the integration starts none. Its store feed and state listener run on the service's
dispatcher thread, in stream order, with no integration lock held while the store (and so its
listeners) runs; a local store change is sent on the thread that made it. Every public method may
be called from any thread; the blocking ones not from the dispatcher (see ``_check_may_wait``).
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from .adapter import AdapterStatus, RealtimeAdapter
from .config import ServiceIntegrationConfig
from .errors import ClientClosedError, ConfigError, MagkError, check_non_empty
from .events import NODE_EVENT_TYPES, NodeEvent, WorkflowEvent, is_command_message, to_workflow_event
from .global_service import (
    cleanup_global_realtime_service,
    create_global_realtime_service,
    get_global_realtime_service,
)
from .integration_handles import TERMINAL_EVENTS, NodeRealtime, WorkflowRealtime, WorkflowResult
from .integration_sync import (
    ConnectionTracker,
    Interest,
    Interests,
    config_of,
    connection_settings,
    local_update_messages,
)
from .models import ConnectionState, ConnectionType, MessageType, RealtimeMessage
from .node_state import ApplyResult, ConnectionSnapshot, NodeExecutionState, StoreStats
from .service import RealtimeService
from .store import NodeExecutionStore

__all__ = [
    "IntegrationStatus",
    "NodeRealtime",
    "RealtimeIntegration",
    "WorkflowRealtime",
    "WorkflowResult",
    "cleanup_global_realtime_service",
    "create_global_realtime_service",
    "get_global_realtime_service",
]

logger = logging.getLogger("magk_client.integration")

DEFAULT_BACKEND_URL = "http://localhost:8000"
_FEED_TYPES = (*NODE_EVENT_TYPES, MessageType.WORKFLOW_EVENT)
_LIVE = frozenset({ConnectionState.CONNECTING, ConnectionState.CONNECTED, ConnectionState.RECONNECTING})
_numbers = itertools.count(1)
_NO_NODES: Mapping[str, NodeExecutionState] = {}


@dataclass(frozen=True)
class IntegrationStatus:
    """A snapshot of an integration (the seed's ``getStatus()``).

    ``subscriptions`` maps each subscription id to what it covers (``workflow:wf-1``,
    ``node:wf-1/n-2``). ``events_applied`` / ``events_duplicate`` / ``events_stale`` count what the
    store did with the node events the integration fed it; ``sync_sent`` / ``sync_queued`` /
    ``sync_failed`` the messages ``sync_bidirectional`` sent, queued while offline, or could not send.
    """

    is_connected: bool
    connection_state: ConnectionState
    connection_type: Optional[ConnectionType]
    store_connection: ConnectionSnapshot
    subscriptions: Mapping[str, str]
    events_applied: int
    events_duplicate: int
    events_stale: int
    sync_sent: int
    sync_queued: int
    sync_failed: int
    store: StoreStats
    adapter: AdapterStatus


class RealtimeIntegration:
    """An adapter and a node store kept in step (see the module docstring).

    ``RealtimeIntegration(config=None, *, adapter=None, store=None)``: ``config`` is a
    :class:`ServiceIntegrationConfig` or a dict (camelCase keys welcome). Without ``adapter`` the
    integration makes one for ``backend_base_url`` with the config's connection settings, and closes
    it in :meth:`close`. With ``adapter`` (for credentials, TLS, timeouts...) that adapter is used;
    an explicit ``config`` then applies its connection settings to the adapter's service
    (``update_config``) and its ``backend_base_url``, if set, must be the adapter's; without one the
    integration's config is read from the adapter. ``store`` defaults to a new store. Use it as a
    context manager (``connect()`` ... ``close()``)::

        with RealtimeIntegration({"backendBaseUrl": "http://localhost:8000"}) as integration:
            with integration.workflow("wf-1") as wf:
                wf.start()
                print(wf.wait_until_complete(timeout=60).status)
    """

    def __init__(
        self,
        config: Union[ServiceIntegrationConfig, Mapping[str, Any], None] = None,
        *,
        adapter: Optional[RealtimeAdapter] = None,
        store: Optional[NodeExecutionStore] = None,
    ) -> None:
        cfg = None if config is None else ServiceIntegrationConfig.from_dict(config)
        if adapter is None:
            cfg = cfg if cfg is not None else ServiceIntegrationConfig()
            base = cfg.backend_base_url or DEFAULT_BACKEND_URL
            adapter = RealtimeAdapter(backend_base_url=base, connection_config=connection_settings(cfg))
            cfg = cfg.replace(backend_base_url=base)
            self._owns_adapter = True
        elif not isinstance(adapter, RealtimeAdapter):
            raise ConfigError(f"adapter must be a RealtimeAdapter, got {type(adapter).__name__}")
        else:
            self._owns_adapter = False
            if cfg is None:
                cfg = config_of(adapter.config, adapter.service.config)
            else:
                own = adapter.config.backend_base_url
                if cfg.backend_base_url not in (None, own):
                    raise ConfigError(f"config.backend_base_url ({cfg.backend_base_url!r}) is not the adapter's")
                adapter.service.update_config(**connection_settings(cfg))
                cfg = cfg.replace(backend_base_url=own)
        if store is not None and not isinstance(store, NodeExecutionStore):
            raise ConfigError(f"store must be a NodeExecutionStore, got {type(store).__name__}")
        self._config = cfg
        self._adapter = adapter
        self._store = store if store is not None else NodeExecutionStore()
        self._number = next(_numbers)
        self._sub_numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._interests = Interests()
        #: workflow id -> the handles waiting for its events (copy-on-write: the dispatcher reads it unlocked)
        self._watchers: Dict[str, Tuple[WorkflowRealtime, ...]] = {}
        self._watcher_of: Dict[str, WorkflowRealtime] = {}
        self._callback_subs: Dict[str, str] = {}
        self._tracker = ConnectionTracker()  # dispatcher only
        service = adapter.service
        #: the last state notice said the session is over (dispatcher writes, waiters read)
        self._ended_state: Optional[ConnectionState] = None if service.state in _LIVE else service.state
        self._dispatcher: Optional[threading.Thread] = None
        self._closed = False
        self._applied = self._duplicates = self._stale = 0  # dispatcher
        self._sync = {"sent": 0, "queued": 0, "failed": 0}  # lock
        self._store.set_connection_state(service.state)
        self._removers: List[Callable[[], None]] = [service.on_connection_state_change(self._on_state)]
        feed = service.subscribe(_FEED_TYPES, self._on_message)

        def remove_feed() -> None:
            service.unsubscribe(feed)

        self._removers.append(remove_feed)
        if cfg.sync_bidirectional:
            self._removers.append(self._store.on_local_update(self._on_local_update))

    # ------------------------------------------------------------------ properties

    @property
    def config(self) -> ServiceIntegrationConfig:
        return self._config

    @property
    def adapter(self) -> RealtimeAdapter:
        return self._adapter

    @property
    def service(self) -> RealtimeService:
        return self._adapter.service

    @property
    def store(self) -> NodeExecutionStore:
        return self._store

    @property
    def is_connected(self) -> bool:
        return self._adapter.is_connected

    def __repr__(self) -> str:
        return f"<RealtimeIntegration #{self._number} {self.service.state.value} {self._config.backend_base_url}>"

    # ------------------------------------------------------------------ lifecycle

    def connect(self, timeout: Optional[float] = None) -> RealtimeAdapter:
        """Connect the adapter (blocking like :meth:`RealtimeAdapter.connect`); returns it."""
        if self._closed:
            raise ClientClosedError("this RealtimeIntegration was closed; create a new one")
        self._adapter.connect(timeout)
        return self._adapter

    def disconnect(self, timeout: float = 5.0) -> None:
        """Disconnect the adapter. Subscriptions are kept for the next :meth:`connect`."""
        self._adapter.disconnect(timeout)

    def close(self) -> None:
        """Disconnect and detach from the service and the store: the store is fed no more, the
        subscriptions' callbacks are removed from the adapter, and the adapter is closed if the
        integration made it (a given one is only disconnected). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            removers, self._removers = self._removers, []
            callback_subs, self._callback_subs = self._callback_subs, {}
        if self._owns_adapter:
            self._adapter.close()
        else:
            self._adapter.disconnect()
        for remove in removers:
            remove()
        for adapter_sub in callback_subs.values():
            self._adapter.unsubscribe(adapter_sub)

    def __enter__(self) -> RealtimeIntegration:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ subscriptions

    def subscribe_to_workflow(self, workflow_id: str, callback: Optional[Callable[[WorkflowEvent], Any]] = None) -> str:
        """Feed the store with the node events of ``workflow_id``; ``callback``, if given, also gets
        the workflow's events (see :meth:`RealtimeAdapter.subscribe_to_workflow`). Returns an id for
        :meth:`unsubscribe`."""
        check_non_empty("workflow_id", workflow_id)
        return self._subscribe(Interest(workflow_id), None, callback)

    def subscribe_to_node(
        self, node_id: str, workflow_id: str, callback: Optional[Callable[[NodeEvent], Any]] = None
    ) -> str:
        """Feed the store with the events of one node; ``callback``, if given, also gets them (see
        :meth:`RealtimeAdapter.subscribe_to_node`). Returns an id for :meth:`unsubscribe`."""
        check_non_empty("node_id", node_id)
        check_non_empty("workflow_id", workflow_id)
        return self._subscribe(Interest(workflow_id, node_id), None, callback)

    def _subscribe(
        self, interest: Interest, watcher: Optional[WorkflowRealtime], callback: Optional[Callable[[Any], Any]] = None
    ) -> str:
        if self._closed:
            raise ClientClosedError("this RealtimeIntegration was closed; create a new one")
        sub_id = f"integration-{self._number}-{next(self._sub_numbers)}"
        if callback is not None:
            if interest.node_id is None:
                adapter_sub = self._adapter.subscribe_to_workflow(interest.workflow_id, callback)
            else:
                adapter_sub = self._adapter.subscribe_to_node(interest.node_id, interest.workflow_id, callback)
            with self._lock:
                self._callback_subs[sub_id] = adapter_sub
        if watcher is not None:
            with self._lock:
                wid = interest.workflow_id
                self._watchers = {**self._watchers, wid: (*self._watchers.get(wid, ()), watcher)}
                self._watcher_of[sub_id] = watcher
        self._interests.add(sub_id, interest)
        logger.debug("integration #%d: %s subscribed (%s)", self._number, interest, sub_id)
        return sub_id

    def unsubscribe(self, subscription_id: str) -> bool:
        """Remove a subscription made here; True if it existed. The store keeps what it has."""
        interest = self._interests.remove(subscription_id)
        with self._lock:
            adapter_sub = self._callback_subs.pop(subscription_id, None)
            watcher = self._watcher_of.pop(subscription_id, None)
            if watcher is not None:
                wid = watcher.workflow_id
                rest = tuple(w for w in self._watchers.get(wid, ()) if w is not watcher)
                watchers = dict(self._watchers)
                if rest:
                    watchers[wid] = rest
                else:
                    watchers.pop(wid, None)
                self._watchers = watchers
        if adapter_sub is not None:
            self._adapter.unsubscribe(adapter_sub)
        if interest is not None:
            logger.debug("integration #%d: %s unsubscribed (%s)", self._number, interest, subscription_id)
        return interest is not None

    def workflow(self, workflow_id: str) -> WorkflowRealtime:
        """A context manager for one workflow (the seed's ``useWorkflowRealtime``): subscribed while
        inside; live ``nodes`` and ``status``; ``start``/``pause``/``resume``/``stop``;
        ``wait_until_complete(timeout)``."""
        check_non_empty("workflow_id", workflow_id)
        return WorkflowRealtime(self, workflow_id)

    def node(self, node_id: str, workflow_id: str) -> NodeRealtime:
        """A context manager for one node (the seed's ``useNodeRealtime``): subscribed while inside;
        its live ``state``; ``restart``/``skip``."""
        check_non_empty("node_id", node_id)
        check_non_empty("workflow_id", workflow_id)
        return NodeRealtime(self, node_id, workflow_id)

    # ------------------------------------------------------------------ status

    def get_status(self) -> IntegrationStatus:
        adapter = self._adapter.get_status()
        with self._lock:
            sync = dict(self._sync)
        return IntegrationStatus(
            is_connected=adapter.connected,
            connection_state=adapter.connection_state,
            connection_type=adapter.connection_type,
            store_connection=self._store.connection_state,
            subscriptions=MappingProxyType({sub_id: str(i) for sub_id, i in self._interests.items()}),
            events_applied=self._applied,
            events_duplicate=self._duplicates,
            events_stale=self._stale,
            sync_sent=sync["sent"],
            sync_queued=sync["queued"],
            sync_failed=sync["failed"],
            store=self._store.stats,
            adapter=adapter,
        )

    # ------------------------------------------------------------------ the service's notices (dispatcher)

    def _on_state(self, state: ConnectionState, error: Optional[BaseException]) -> None:
        self._dispatcher = threading.current_thread()
        view = self._tracker.on_state(state, error)
        self._ended_state = None if state in _LIVE else state
        self._store.set_connection_state(view.state, view.reconnect_attempts, view.last_error)
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher._wake()

    def _on_message(self, message: RealtimeMessage) -> None:
        self._dispatcher = threading.current_thread()
        if message.type == MessageType.WORKFLOW_EVENT:
            self._on_workflow_message(message)
            return
        if not self._config.enable_store_sync or not self._interests.wants(message.workflow_id, message.node_id):
            return
        result = self._store.apply_message(message)
        if result is ApplyResult.APPLIED:
            self._applied += 1
        elif result is ApplyResult.DUPLICATE:
            self._duplicates += 1
        elif result is ApplyResult.STALE:
            self._stale += 1
        if self._config.enable_debug_logging:
            logger.debug(
                "integration #%d: store <- %s id=%s %s/%s %s",
                self._number, message.type, message.id or "-", message.workflow_id, message.node_id, result.value,
            )

    def _on_workflow_message(self, message: RealtimeMessage) -> None:
        watchers = self._watchers.get(message.workflow_id or "")
        if not watchers or is_command_message(message):
            return
        event = to_workflow_event(message)
        if event is None:
            return
        nodes = _NO_NODES
        if event.type in TERMINAL_EVENTS and self._config.enable_store_sync:
            nodes = self._store.get_workflow_nodes(event.workflow_id or "")
        for watcher in watchers:
            watcher._on_workflow_event(event, nodes)

    # ------------------------------------------------------------------ local store changes (caller's thread)

    def _on_local_update(
        self, workflow_id: str, node_id: str, changes: Dict[str, Any], timestamp: Optional[str]
    ) -> None:
        """sync_bidirectional: send a change made with the store's actions to the backend."""
        for message in local_update_messages(workflow_id, node_id, changes, timestamp):
            try:
                sent = self.service.send_message(message)
            except MagkError as err:
                outcome = "failed"
                logger.warning("integration #%d: %s of %s/%s not sent: %s",
                               self._number, message["type"], workflow_id, node_id, err)
            else:
                outcome = "sent" if sent else "queued"
            with self._lock:
                self._sync[outcome] += 1
            if self._config.enable_debug_logging:
                logger.debug("integration #%d: store -> %s %s/%s %s",
                             self._number, message["type"], workflow_id, node_id, outcome)

    # ------------------------------------------------------------------ for the handles

    def _check_may_wait(self, what: str) -> None:
        if threading.current_thread() is self._dispatcher:
            raise MagkError(
                f"{what}() cannot wait on the dispatcher thread (a callback or a store listener fed by the "
                "integration): it would wait for itself"
            )

    def _session_ended(self) -> Optional[str]:
        """Why no more events can come (never connected, disconnected, or given up), or None. Over
        when the last state notice said so (every event received before it was delivered first) and
        no new session has begun since (no lock)."""
        ended = self._ended_state
        if ended is None or self.service.state in _LIVE:
            return None
        return f"the connection is {ended.value}"
