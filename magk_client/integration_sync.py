"""The integration's small decisions (pure: no threads, no sockets, no clock).

- :class:`Interests`: which workflows and nodes the integration is subscribed to, so one service
  subscription can decide, per message, whether the store wants it (each event is applied once
  however many subscriptions cover it).
- :class:`ConnectionTracker`: the store's connection snapshot from the service's state notices,
  with the reconnect attempts of the current outage counted in stream order.
- :func:`local_update_messages`: the node messages that tell the backend about a change made with
  the store's action methods (``sync_bidirectional``).
- :func:`connection_settings` / :func:`config_of`: the service settings an integration config
  governs, and the integration config a given adapter's settings amount to.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Tuple

from .config import RealtimeAdapterConfig, RealtimeConnectionConfig, ServiceIntegrationConfig
from .errors import CircuitOpenError
from .models import ConnectionState, ConnectionType, MessageType

__all__ = [
    "ConnectionTracker",
    "ConnectionView",
    "Interest",
    "Interests",
    "config_of",
    "connection_settings",
    "local_update_messages",
]


@dataclass(frozen=True)
class Interest:
    """One integration subscription: a whole workflow (``node_id`` None) or one node of it."""

    workflow_id: str
    node_id: Optional[str] = None

    def __str__(self) -> str:
        return f"workflow:{self.workflow_id}" if self.node_id is None else f"node:{self.workflow_id}/{self.node_id}"


class Interests:
    """Subscriptions by id, with lock-free reads for the dispatcher.

    Writers (:meth:`add`, :meth:`remove`, any thread) serialise on a lock and publish new
    immutable snapshots; :meth:`wants` (the dispatcher's per-message check) reads one snapshot
    and takes no lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: Dict[str, Interest] = {}
        #: (workflows subscribed whole, (workflow, node) pairs subscribed), replaced on each change
        self._view: Tuple[FrozenSet[str], FrozenSet[Tuple[str, str]]] = (frozenset(), frozenset())

    def add(self, sub_id: str, interest: Interest) -> None:
        with self._lock:
            self._by_id[sub_id] = interest
            self._publish_locked()

    def remove(self, sub_id: str) -> Optional[Interest]:
        with self._lock:
            interest = self._by_id.pop(sub_id, None)
            if interest is not None:
                self._publish_locked()
            return interest

    def get(self, sub_id: str) -> Optional[Interest]:
        with self._lock:
            return self._by_id.get(sub_id)

    def items(self) -> Tuple[Tuple[str, Interest], ...]:
        with self._lock:
            return tuple(self._by_id.items())

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_id)

    def _publish_locked(self) -> None:
        workflows = frozenset(i.workflow_id for i in self._by_id.values() if i.node_id is None)
        nodes = frozenset((i.workflow_id, i.node_id) for i in self._by_id.values() if i.node_id is not None)
        self._view = (workflows, nodes)

    def wants(self, workflow_id: Optional[str], node_id: Optional[str]) -> bool:
        """Is an event of this workflow (and node) covered by some subscription? No lock."""
        if not workflow_id:
            return False
        workflows, nodes = self._view
        return workflow_id in workflows or (node_id is not None and (workflow_id, node_id) in nodes)

    def wants_workflow(self, workflow_id: Optional[str]) -> bool:
        """Is the whole workflow subscribed (its workflow events wanted)? No lock."""
        return bool(workflow_id) and workflow_id in self._view[0]


@dataclass(frozen=True)
class ConnectionView:
    """What the store is told: ``store.set_connection_state(state, reconnect_attempts, last_error)``."""

    state: ConnectionState
    reconnect_attempts: int
    last_error: Optional[str]


class ConnectionTracker:
    """Turns the service's state notices (delivered in stream order) into the store's view.

    ``reconnect_attempts`` counts the failed attempts of the current outage: each ``reconnecting``
    notice carrying an error is one (the service sends one per failure; a notice caused by the open
    circuit breaker is a wait, not an attempt). ``connected`` and ``disconnected`` reset it; ``error``
    and ``closed`` keep it (how many attempts were made before giving up). ``last_error`` is the text
    of the newest error (errors never contain credentials) and is cleared once connected.
    """

    def __init__(self) -> None:
        self.attempts = 0
        self.last_error: Optional[str] = None

    def on_state(self, state: ConnectionState, error: Optional[BaseException]) -> ConnectionView:
        if error is not None:
            self.last_error = f"{type(error).__name__}: {error}"
        if state is ConnectionState.RECONNECTING:
            if error is not None and not isinstance(error, CircuitOpenError):
                self.attempts += 1
        elif state is ConnectionState.CONNECTED:
            self.attempts = 0
            self.last_error = None
        elif state is ConnectionState.DISCONNECTED:
            self.attempts = 0
        return ConnectionView(state, self.attempts, self.last_error)


def local_update_messages(
    workflow_id: str, node_id: str, changes: Mapping[str, Any], timestamp: Optional[str]
) -> List[Dict[str, Any]]:
    """The messages telling the backend about one local store change, in the protocol's shapes.

    ``error`` -> ``node_error``, ``result`` -> ``node_result`` (each implies its status, so a status
    ``error``/``completed`` set with it is not sent again), ``status`` -> ``node_status_update``,
    ``progress`` -> ``node_progress_update``, ``metadata`` -> ``node_metadata`` (the protocol's
    metadata merges), ``logs`` -> ``node_log``; status first, logs last. A field cleared to None has
    no message in the protocol and is not sent. Ids are left to the service; ``timestamp`` is the
    action's when it had one.
    """
    def message(mtype: MessageType, data: Dict[str, Any]) -> Dict[str, Any]:
        out: Dict[str, Any] = {"type": mtype.value, "workflowId": workflow_id, "nodeId": node_id, "data": data}
        if timestamp is not None:
            out["timestamp"] = timestamp
        return out

    out: List[Dict[str, Any]] = []
    status = changes.get("status")
    error = changes.get("error")
    result = changes.get("result")
    implied = (status == "error" and error is not None) or (status == "completed" and result is not None)
    if status is not None and not implied:
        out.append(message(MessageType.NODE_STATUS_UPDATE, {"status": status}))
    if changes.get("progress") is not None:
        out.append(message(MessageType.NODE_PROGRESS_UPDATE, {"progress": changes["progress"]}))
    if error is not None:
        out.append(message(MessageType.NODE_ERROR, {"error": error}))
    if result is not None:
        out.append(message(MessageType.NODE_RESULT, {"result": result}))
    if changes.get("metadata"):
        out.append(message(MessageType.NODE_METADATA, {"metadata": changes["metadata"]}))
    if changes.get("logs"):
        out.append(message(MessageType.NODE_LOG, {"logs": changes["logs"]}))
    return out


def connection_settings(cfg: ServiceIntegrationConfig) -> Dict[str, Any]:
    """The service settings (``RealtimeConnectionConfig`` fields) an integration config governs."""
    return {
        "auto_reconnect": cfg.enable_auto_reconnect,
        "preferred_type": ConnectionType.WEBSOCKET if cfg.prefer_websocket else ConnectionType.EVENTSOURCE,
        "enable_offline_queue": cfg.enable_offline_sync,
        "enable_debug_logging": cfg.enable_debug_logging,
    }


def config_of(adapter: RealtimeAdapterConfig, service: RealtimeConnectionConfig) -> ServiceIntegrationConfig:
    """The integration config an adapter's own settings amount to (store-side fields at their defaults)."""
    return ServiceIntegrationConfig(
        backend_base_url=adapter.backend_base_url,
        enable_auto_reconnect=service.auto_reconnect,
        prefer_websocket=service.preferred_type is ConnectionType.WEBSOCKET,
        enable_offline_sync=service.enable_offline_queue,
        enable_debug_logging=service.enable_debug_logging,
    )
