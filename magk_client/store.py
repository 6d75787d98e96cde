"""NodeExecutionStore: the live state of every node, thread-safe, as immutable snapshots.

The Python shape of the TypeScript app's ``nodeExecutionStore``, keyed by
``(workflow_id, node_id)`` (the original keyed by node only, so two workflows with a node
of the same name overwrote each other). It is a pure object: no thread, no socket, no
clock of its own; time comes from the server's timestamps.

Threads
    Every public method may be called from any thread. Updates are applied one at a time
    under one internal lock; reads return immutable snapshots
    (:class:`~magk_client.node_state.NodeExecutionState`, tuples, read-only mappings), so a
    snapshot never changes after it is returned. ``get_node_state`` and
    ``connection_state`` take no lock (one dict lookup / attribute read of an immutable
    value). Listeners run after the lock is released, on the thread that made the update
    (see :mod:`magk_client.store_listeners` for what happens when several threads write at
    once), in the order updates were applied; a listener may call back into the store.

Server events
    :meth:`NodeExecutionStore.apply_message` takes a :class:`~magk_client.models.RealtimeMessage`
    (``node_status_update``, ``node_progress_update``, ``node_error``, ``node_result``,
    ``node_metadata``, ``node_log``; shapes in ``docs/protocol.rst``) and reports what it did as
    an :class:`ApplyResult`. Each event is applied at most once: ids of the last
    ``dedup_window`` events are remembered, so the same event seen by a workflow subscription
    and a node subscription (or replayed after a reconnect) is applied once.

The ordering rule
    Per node the store keeps the newest server timestamp of an applied *state* update (its
    watermark). A state update whose timestamp is strictly older than the watermark is
    ignored and counted (``stats.stale_ignored``); an equal timestamp, or none at all (or an
    unparsable one), is applied in arrival order, so stream order decides ties. Log entries
    are append-only: never refused for age, and they do not move the watermark (a log line
    says nothing about status or progress, so it must not make a later-arriving but newer
    progress look old). ``last_updated`` is the newest timestamp of any applied update, logs
    included. Why ties apply: a server stamps events to the millisecond, so consecutive
    events often share a timestamp; refusing them would drop real updates, and one server's
    stream arrives in order. Why strictly older is refused: such an update can only come from
    a replay or a second source, and applying it would move the node back in time (``running``
    over ``completed``). Why per node rather than per field: a node's fields describe one
    moment together, so a progress event older than the node's completion describes the node
    before it completed and would show 30 % on a finished node; and one integer per node is
    cheap and easy to reason about.
    Updates made through the action methods carry no timestamp unless given one.

Restarts
    A status update to ``running`` or ``pending`` on a node whose status is ``error`` or
    ``completed`` clears the stale ``error`` and ``result`` (unless the same update sets
    them). The reference engine restarts a node with ``pending`` then ``running``.
"""

from __future__ import annotations

import enum
import importlib
import logging
import threading
from types import MappingProxyType
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from .delivery import DeliveryTracker
from .errors import ConfigError, check_non_empty
from .models import ConnectionState, RealtimeMessage
from .node_state import (
    EMPTY_MAPPING,
    ApplyResult,
    ConnectionSnapshot,
    NodeExecutionState,
    NodeStatus,
    StoreConfig,
    StoreStats,
    freeze,
    html_table,
    parse_timestamp,
)
from .store_listeners import Listener, StateFilter, StoreListeners
from .store_updates import (
    Update,
    check_error,
    check_mapping,
    check_status,
    freeze_logs,
    local_changes,
    next_state,
    update_from_message,
)

__all__ = ["ApplyResult", "NodeExecutionStore", "StoreConfig", "StoreStats"]

logger = logging.getLogger("magk_client.store")


class _Unset(enum.Enum):
    UNSET = 0


_UNSET = _Unset.UNSET
#: ``hook(workflow_id, node_id, changes, timestamp)``: see :meth:`NodeExecutionStore.on_local_update`
LocalUpdateHook = Callable[[str, str, Dict[str, Any], Optional[str]], Any]
_FIELDS = ("status", "progress", "error", "result", "metadata")


class NodeExecutionStore:
    """Thread-safe store of node execution states keyed by ``(workflow_id, node_id)``.

    Every method may be called from any thread, from inside a listener too; listeners run on
    the updating thread after the lock is released. See the module docstring for threads,
    de-duplication, the ordering rule and restarts. Every action returns an
    :class:`ApplyResult`; ``timestamp=`` is a server timestamp (ISO-8601) for the ordering
    rule, None for none.
    """

    def __init__(self, config: Optional[StoreConfig] = None) -> None:
        self.config = config if config is not None else StoreConfig()
        self._lock = threading.Lock()
        self._listeners = StoreListeners(self._lock)
        self._nodes: Dict[str, Dict[str, NodeExecutionState]] = {}
        # (workflow, node) -> (watermark of state updates, newest timestamp of any update), in us
        self._marks: Dict[Tuple[str, str], Tuple[Optional[int], Optional[int]]] = {}
        self._ids = DeliveryTracker(self.config.dedup_window)
        self._connection = ConnectionSnapshot()
        self._applied = 0
        self._stale = 0
        self._ignored = 0
        self._logs_dropped = 0
        self._local_hooks: Tuple[LocalUpdateHook, ...] = ()

    # ------------------------------------------------------------------ server events

    def apply_message(self, message: RealtimeMessage) -> ApplyResult:
        """Apply one server event (any thread). Non-node and malformed messages are IGNORED."""
        workflow_id, node_id = message.workflow_id, message.node_id
        update = None
        if isinstance(workflow_id, str) and workflow_id and isinstance(node_id, str) and node_id:
            update = update_from_message(message.type, message.data)
        if update is None:
            with self._lock:
                self._ignored += 1
            return ApplyResult.IGNORED
        assert isinstance(workflow_id, str) and isinstance(node_id, str)
        return self._commit(workflow_id, node_id, update, message.timestamp, message.id)

    # ------------------------------------------------------------------ actions

    def update_node_state(
        self,
        workflow_id: str,
        node_id: str,
        *,
        status: Union[str, NodeStatus, _Unset] = _UNSET,
        progress: Union[Mapping[str, Any], _Unset, None] = _UNSET,
        error: Union[Mapping[str, Any], str, _Unset, None] = _UNSET,
        result: Union[Mapping[str, Any], _Unset, None] = _UNSET,
        metadata: Union[Mapping[str, Any], _Unset, None] = _UNSET,
        timestamp: Optional[str] = None,
    ) -> ApplyResult:
        """Set several fields in one update (one version). Omitted fields are kept; None clears
        ``progress``/``error``/``result``/``metadata``; ``metadata`` here replaces (see
        :meth:`update_node_metadata` to merge). No implied status change."""
        values: Dict[str, Any] = {}
        if status is not _UNSET:
            values["status"] = check_status(status)
        if progress is not _UNSET:
            values["progress"] = None if progress is None else check_mapping("progress", progress)
        if error is not _UNSET:
            values["error"] = None if error is None else check_error(error)
        if result is not _UNSET:
            values["result"] = None if result is None else check_mapping("result", result)
        if metadata is not _UNSET:
            values["metadata"] = EMPTY_MAPPING if metadata is None else check_mapping("metadata", metadata)
        if not values:
            raise ConfigError(f"update_node_state needs at least one of {', '.join(_FIELDS)}")
        return self._action(workflow_id, node_id, Update(values), timestamp)

    def update_node_status(
        self, workflow_id: str, node_id: str, status: Union[str, NodeStatus], *, timestamp: Optional[str] = None
    ) -> ApplyResult:
        """Set the status (``running``/``pending`` after ``error``/``completed`` is a restart)."""
        return self._action(workflow_id, node_id, Update({"status": check_status(status)}), timestamp)

    def update_node_progress(
        self,
        workflow_id: str,
        node_id: str,
        progress: Union[Mapping[str, Any], float],
        *,
        timestamp: Optional[str] = None,
    ) -> ApplyResult:
        """Set the progress: a mapping in the protocol's shape, or a number (the percentage)."""
        if isinstance(progress, (int, float)) and not isinstance(progress, bool):
            frozen = freeze({"percentage": progress})
        else:
            frozen = check_mapping("progress", progress)
        return self._action(workflow_id, node_id, Update({"progress": frozen}), timestamp)

    def update_node_error(
        self, workflow_id: str, node_id: str, error: Union[Mapping[str, Any], str], *, timestamp: Optional[str] = None
    ) -> ApplyResult:
        """Set the error (a mapping, or a message string) and the status ``error``."""
        values = {"error": check_error(error), "status": NodeStatus.ERROR}
        return self._action(workflow_id, node_id, Update(values), timestamp)

    def update_node_result(
        self, workflow_id: str, node_id: str, result: Mapping[str, Any], *, timestamp: Optional[str] = None
    ) -> ApplyResult:
        """Set the result and the status ``completed``."""
        values = {"result": check_mapping("result", result), "status": NodeStatus.COMPLETED}
        return self._action(workflow_id, node_id, Update(values), timestamp)

    def update_node_metadata(
        self, workflow_id: str, node_id: str, metadata: Mapping[str, Any], *, timestamp: Optional[str] = None
    ) -> ApplyResult:
        """Merge ``metadata`` into the node's metadata (top-level keys; new values win)."""
        return self._action(workflow_id, node_id, Update({}, merge=check_mapping("metadata", metadata)), timestamp)

    def add_node_log(
        self,
        workflow_id: str,
        node_id: str,
        log: Union[str, Mapping[str, Any], Iterable[Mapping[str, Any]]],
        *,
        timestamp: Optional[str] = None,
    ) -> ApplyResult:
        """Append log entries (one mapping, several, or a message string: level ``info``) in one
        update; the newest ``max_logs_per_node`` are kept. Never STALE (logs are append-only)."""
        if isinstance(log, str):
            entries: Tuple[Mapping[str, Any], ...] = (freeze({"level": "info", "message": log}),)
        elif isinstance(log, Mapping):
            entries = (freeze(log),)
        else:
            frozen = freeze_logs(list(log))
            if frozen is None:
                raise ConfigError("log must be a string, a mapping or an iterable of mappings")
            entries = frozen
        if not entries:
            raise ConfigError("log: no entries to add")
        return self._action(workflow_id, node_id, Update({}, logs=entries), timestamp)

    def clear_node_state(self, workflow_id: str, node_id: str) -> bool:
        """Forget one node (listeners get ``(None, old)``); False if it was unknown."""
        with self._lock:
            workflow = self._nodes.get(workflow_id)
            old = None if workflow is None else workflow.pop(node_id, None)
            if old is None:
                return False
            if workflow is not None and not workflow:
                del self._nodes[workflow_id]
            self._marks.pop((workflow_id, node_id), None)
            deliver = self._listeners.queue(None, old)
        if deliver:
            self._listeners.drain()
        return True

    def clear_workflow_states(self, workflow_id: str) -> int:
        """Forget every node of one workflow; returns how many."""
        with self._lock:
            states = list(self._nodes.pop(workflow_id, {}).values())
            deliver = self._forget(states)
        if deliver:
            self._listeners.drain()
        return len(states)

    def clear_all_states(self) -> int:
        """Forget every node (event ids stay remembered, so a replayed event is still a duplicate)."""
        with self._lock:
            states = [s for workflow in self._nodes.values() for s in workflow.values()]
            self._nodes.clear()
            deliver = self._forget(states)
        if deliver:
            self._listeners.drain()
        return len(states)

    def set_connection_state(
        self,
        state: Union[ConnectionState, str],
        reconnect_attempts: int = 0,
        last_error: Optional[str] = None,
    ) -> ConnectionSnapshot:
        """Record the connection state (the integration layer calls it; any thread). No listener is called."""
        try:
            value = ConnectionState(state)
        except ValueError:
            raise ConfigError(f"state: {state!r} is not a connection state") from None
        if isinstance(reconnect_attempts, bool) or not isinstance(reconnect_attempts, int) or reconnect_attempts < 0:
            raise ConfigError(f"reconnect_attempts must be an integer >= 0, got {reconnect_attempts!r}")
        snapshot = ConnectionSnapshot(value, reconnect_attempts, None if last_error is None else str(last_error))
        self._connection = snapshot
        return snapshot

    # ------------------------------------------------------------------ reads

    def get_node_state(self, workflow_id: str, node_id: str) -> Optional[NodeExecutionState]:
        """The node's current snapshot, or None (no lock: one lookup of an immutable value)."""
        workflow = self._nodes.get(workflow_id)
        return None if workflow is None else workflow.get(node_id)

    def get_workflow_nodes(self, workflow_id: str) -> Mapping[str, NodeExecutionState]:
        """A read-only ``{node_id: state}`` of one workflow, consistent at one moment, in first-seen order."""
        with self._lock:
            return MappingProxyType(dict(self._nodes.get(workflow_id, {})))

    def get_nodes_by_status(
        self, status: Union[str, NodeStatus], workflow_id: Optional[str] = None
    ) -> Tuple[NodeExecutionState, ...]:
        """Every node (of one workflow, if given) whose status is ``status``."""
        return tuple(s for s in self.get_all_states(workflow_id) if s.status == status)

    def get_all_states(self, workflow_id: Optional[str] = None) -> Tuple[NodeExecutionState, ...]:
        """Every node (of one workflow, if given), by workflow then node, in first-seen order."""
        with self._lock:
            if workflow_id is not None:
                return tuple(self._nodes.get(workflow_id, {}).values())
            return tuple(s for workflow in self._nodes.values() for s in workflow.values())

    @property
    def connection_state(self) -> ConnectionSnapshot:
        """The connection as last set by :meth:`set_connection_state` (no lock)."""
        return self._connection

    @property
    def stats(self) -> StoreStats:
        with self._lock:
            return StoreStats(
                nodes=sum(len(w) for w in self._nodes.values()),
                applied=self._applied,
                stale_ignored=self._stale,
                duplicates_ignored=self._ids.duplicates,
                messages_ignored=self._ignored,
                logs_dropped=self._logs_dropped,
                listener_errors=self._listeners.errors,
            )

    def __len__(self) -> int:
        with self._lock:
            return sum(len(w) for w in self._nodes.values())

    def to_records(self) -> List[Dict[str, Any]]:
        """One plain dict per node (every field; nested values as plain dicts and lists)."""
        return [state.to_dict() for state in self.get_all_states()]

    def to_dataframe(self) -> Any:
        """A ``pandas.DataFrame`` of :meth:`to_records`; pandas is optional (ImportError without it)."""
        try:
            pandas = importlib.import_module("pandas")
        except ImportError as exc:
            raise ImportError(
                "NodeExecutionStore.to_dataframe() needs pandas, which magk-client does not install: "
                "pip install pandas (or use to_records())"
            ) from exc
        columns = list(NodeExecutionState.__dataclass_fields__)
        return pandas.DataFrame.from_records(self.to_records(), columns=columns)

    def _repr_html_(self) -> str:
        return html_table(list(self.get_all_states()), self._connection, self.config.html_max_rows)

    def __repr__(self) -> str:
        with self._lock:
            nodes = sum(len(w) for w in self._nodes.values())
            workflows = len(self._nodes)
        return f"<NodeExecutionStore {nodes} node(s) in {workflows} workflow(s), connection {self._connection.state}>"

    # ------------------------------------------------------------------ listeners

    def subscribe(
        self,
        callback: Listener,
        *,
        workflow_id: Optional[str] = None,
        node_id: Optional[str] = None,
        filter: Optional[StateFilter] = None,
    ) -> str:
        """Call ``callback(new_state, old_state)`` after every applied update of a matching node
        (``old_state`` None on a node's first update; ``new_state`` None when it was cleared).
        ``filter(state)`` is called first, outside the lock too. Returns an id for :meth:`unsubscribe`."""
        return self._listeners.subscribe(callback, workflow_id, node_id, filter)

    def unsubscribe(self, subscription_id: str) -> bool:
        """Stop a listener (no call after this returns, from this thread's view); False if unknown."""
        return self._listeners.unsubscribe(subscription_id)

    def on_local_update(self, hook: LocalUpdateHook) -> Callable[[], None]:
        """Call ``hook(workflow_id, node_id, changes, timestamp)`` after each update made with an
        action method (``update_node_*``, ``add_node_log``; not :meth:`apply_message`, not the
        clears) was applied. ``changes`` is a new plain dict of what it set (see
        :func:`~magk_client.store_updates.local_changes`). Runs on the calling thread with no lock
        held; one that raises is logged and counted (``stats.listener_errors``). Returns a remover.
        The integration's ``sync_bidirectional`` uses it to send local changes to the backend."""
        if not callable(hook):
            raise ConfigError(f"hook must be callable, got {type(hook).__name__}")
        with self._lock:
            self._local_hooks = (*self._local_hooks, hook)

        def remove() -> None:
            with self._lock:
                self._local_hooks = tuple(h for h in self._local_hooks if h is not hook)

        return remove

    # ------------------------------------------------------------------ internals

    def _action(self, workflow_id: str, node_id: str, update: Update, timestamp: Optional[str]) -> ApplyResult:
        check_non_empty("workflow_id", workflow_id)
        check_non_empty("node_id", node_id)
        if timestamp is not None and not isinstance(timestamp, str):
            raise ConfigError(f"timestamp must be an ISO-8601 string or None, got {timestamp!r}")
        result = self._commit(workflow_id, node_id, update, timestamp, None)
        hooks = self._local_hooks
        if hooks and result is ApplyResult.APPLIED:
            changes = local_changes(update)
            for hook in hooks:
                try:
                    hook(workflow_id, node_id, dict(changes), timestamp)
                except Exception:
                    logger.exception("store local-update hook raised")
                    with self._lock:
                        self._listeners.errors += 1
        return result

    def _commit(
        self, workflow_id: str, node_id: str, update: Update, timestamp: Optional[str], event_id: Optional[str]
    ) -> ApplyResult:
        mark = parse_timestamp(timestamp)
        key = (workflow_id, node_id)
        with self._lock:
            if event_id and not self._ids.accept(event_id):
                return ApplyResult.DUPLICATE
            watermark, newest = self._marks.get(key, (None, None))
            stamp = None
            if mark is not None:
                if not update.logs_only:
                    if watermark is not None and mark < watermark:
                        self._stale += 1
                        return ApplyResult.STALE
                    watermark = mark
                if newest is None or mark >= newest:
                    newest = mark
                    stamp = timestamp
            workflow = self._nodes.get(workflow_id)
            if workflow is None:
                workflow = self._nodes[workflow_id] = {}
            old = workflow.get(node_id)
            base = old if old is not None else NodeExecutionState(workflow_id, node_id)
            new, dropped = next_state(base, update, stamp, self.config.max_logs_per_node)
            self._logs_dropped += dropped
            workflow[node_id] = new
            self._marks[key] = (watermark, newest)
            self._applied += 1
            deliver = self._listeners.queue(new, old)
        if deliver:
            self._listeners.drain()
        return ApplyResult.APPLIED

    def _forget(self, states: List[NodeExecutionState]) -> bool:
        """Drop the marks of cleared nodes and queue ``(None, old)`` notifications (the lock held).
        True: the caller must drain the listeners once the lock is released."""
        deliver = False
        for state in states:
            self._marks.pop(state.key, None)
            deliver = self._listeners.queue(None, state) or deliver
        return deliver
