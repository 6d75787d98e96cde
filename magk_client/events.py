"""What the adapter's subscribers receive: workflow events and node events (pure mapping).

``WorkflowEvent.type`` follows the message, not a fixed table per message type:

==========================  =====================================================================
message                     ``WorkflowEvent.type``
==========================  =====================================================================
node_status_update          by ``data.status``: ``running`` -> ``node_started``, ``completed`` ->
                            ``node_completed``, ``error`` -> ``node_error``; ``paused``,
                            ``pending`` (and any other status) kept as they are
node_progress_update        ``node_progress``
node_error                  ``node_error``
node_result                 ``node_completed`` (``result`` holds the result)
workflow_event              its ``data.type`` (``workflow_started``, ``workflow_completed``, ...);
                            command envelopes and command answers are not events (None)
==========================  =====================================================================

Both events keep the raw ``data`` dict and the original :class:`~magk_client.models.RealtimeMessage`
(``message``), so nothing the server sent is lost and typed payload accessors can be layered on top.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .models import MessageType, RealtimeMessage

__all__ = [
    "NODE_EVENT_TYPES",
    "NodeEvent",
    "WORKFLOW_EVENT_TYPES",
    "WorkflowEvent",
    "is_command_message",
    "to_node_event",
    "to_workflow_event",
]

#: What a workflow subscription listens to (the seed's list).
WORKFLOW_EVENT_TYPES: Tuple[MessageType, ...] = (
    MessageType.NODE_STATUS_UPDATE,
    MessageType.NODE_PROGRESS_UPDATE,
    MessageType.NODE_ERROR,
    MessageType.NODE_RESULT,
    MessageType.WORKFLOW_EVENT,
)

#: What a node subscription listens to (the seed's list).
NODE_EVENT_TYPES: Tuple[MessageType, ...] = (
    MessageType.NODE_STATUS_UPDATE,
    MessageType.NODE_PROGRESS_UPDATE,
    MessageType.NODE_ERROR,
    MessageType.NODE_RESULT,
    MessageType.NODE_METADATA,
    MessageType.NODE_LOG,
)

_STATUS_EVENTS = {"running": "node_started", "completed": "node_completed", "error": "node_error"}
_COMMAND_KINDS = frozenset({"command", "command_response"})


def is_command_message(message: RealtimeMessage) -> bool:
    """True for a command envelope or a command answer (a ``workflow_event`` that is no event)."""
    return message.type == MessageType.WORKFLOW_EVENT and message.data.get("type") in _COMMAND_KINDS


@dataclass(frozen=True)
class WorkflowEvent:
    """One event of a workflow, as a workflow subscriber sees it.

    ``type`` is the event kind (see the module doc); ``data`` the message's raw ``data``;
    ``message`` the message itself.
    """

    type: str
    workflow_id: Optional[str]
    node_id: Optional[str]
    timestamp: str
    data: Dict[str, Any] = field(repr=False)
    message: RealtimeMessage = field(repr=False, compare=False)

    @property
    def id(self) -> str:
        """The event id (the resume point); empty for a message without one."""
        return self.message.id

    @property
    def status(self) -> Optional[str]:
        """The node status of a ``node_status_update`` (raw string), else None."""
        value = self.data.get("status") if self.message.type == MessageType.NODE_STATUS_UPDATE else None
        return value if isinstance(value, str) else None

    @property
    def result(self) -> Any:
        """The ``data.result`` of a ``node_result`` (raw), else None."""
        return self.data.get("result")

    @property
    def error(self) -> Any:
        """The ``data.error`` of a ``node_error`` (raw), else None."""
        return self.data.get("error")

    @property
    def progress(self) -> Any:
        """The ``data.progress`` of a ``node_progress_update`` (raw), else None."""
        return self.data.get("progress")


@dataclass(frozen=True)
class NodeEvent:
    """One update of a node, as a node subscriber sees it.

    ``type`` is the message type (``node_status_update``, ``node_progress_update``, ...); the field
    that type carries is set (``status``, ``progress``, ``error``, ``result``, ``metadata`` or
    ``logs``), raw as the server sent it; the others are None.
    """

    type: str
    node_id: Optional[str]
    workflow_id: Optional[str]
    timestamp: str
    status: Optional[str] = None
    progress: Optional[Dict[str, Any]] = None
    error: Optional[Dict[str, Any]] = None
    result: Optional[Dict[str, Any]] = None
    metadata: Optional[Dict[str, Any]] = None
    logs: Optional[List[Dict[str, Any]]] = None
    data: Dict[str, Any] = field(default_factory=dict, repr=False)
    message: Optional[RealtimeMessage] = field(default=None, repr=False, compare=False)


def _workflow_event_type(message: RealtimeMessage) -> Optional[str]:
    mtype = message.type
    data = message.data
    if mtype == MessageType.NODE_STATUS_UPDATE:
        status = data.get("status")
        if not isinstance(status, str) or not status:
            return None
        return _STATUS_EVENTS.get(status, status)
    if mtype == MessageType.NODE_PROGRESS_UPDATE:
        return "node_progress"
    if mtype == MessageType.NODE_ERROR:
        return "node_error"
    if mtype == MessageType.NODE_RESULT:
        return "node_completed"
    if mtype == MessageType.WORKFLOW_EVENT:
        kind = data.get("type")
        if not isinstance(kind, str) or not kind or kind in _COMMAND_KINDS:
            return None
        return kind
    return None


def to_workflow_event(message: RealtimeMessage) -> Optional[WorkflowEvent]:
    """The workflow event a message stands for, or None (a command answer, a status-less status
    update, a type workflow subscribers do not get)."""
    kind = _workflow_event_type(message)
    if kind is None:
        return None
    return WorkflowEvent(
        type=kind,
        workflow_id=message.workflow_id,
        node_id=message.node_id,
        timestamp=message.timestamp,
        data=message.data,
        message=message,
    )


def _dict_or_none(value: Any) -> Optional[Dict[str, Any]]:
    return value if isinstance(value, dict) else None


def to_node_event(message: RealtimeMessage) -> Optional[NodeEvent]:
    """The node event a message stands for, or None for a type node subscribers do not get."""
    mtype = message.type
    data = message.data
    common: Dict[str, Any] = dict(
        type=str(mtype),
        node_id=message.node_id,
        workflow_id=message.workflow_id,
        timestamp=message.timestamp,
        data=data,
        message=message,
    )
    if mtype == MessageType.NODE_STATUS_UPDATE:
        status = data.get("status")
        return NodeEvent(status=status if isinstance(status, str) else None, **common)
    if mtype == MessageType.NODE_PROGRESS_UPDATE:
        return NodeEvent(progress=_dict_or_none(data.get("progress")), **common)
    if mtype == MessageType.NODE_ERROR:
        return NodeEvent(error=_dict_or_none(data.get("error")), **common)
    if mtype == MessageType.NODE_RESULT:
        return NodeEvent(result=_dict_or_none(data.get("result")), **common)
    if mtype == MessageType.NODE_METADATA:
        return NodeEvent(metadata=_dict_or_none(data.get("metadata")), **common)
    if mtype == MessageType.NODE_LOG:
        logs = data.get("logs")
        entries = [entry for entry in logs if isinstance(entry, dict)] if isinstance(logs, list) else None
        return NodeEvent(logs=entries, **common)
    return None
