"""Data models: the message envelope, enums, and health snapshots.

``RealtimeMessage`` is a plain dataclass. The per-message path builds it
directly (see :mod:`magk_client.codec`), because dataclasses-json costs about
40 times ``json.loads`` per message; ``to_dict``/``from_dict``/``to_json``/
``from_json`` (camelCase, via dataclasses-json) are there for users.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Type, TypeVar, Union

from dataclasses_json import DataClassJsonMixin, LetterCase, config

if TYPE_CHECKING:
    from .payloads import NodePayload

__all__ = [
    "BackendHealth",
    "CircuitState",
    "CommandResponse",
    "ConnectionHealth",
    "ConnectionState",
    "ConnectionType",
    "MessageType",
    "RealtimeMessage",
    "SendResult",
    "StrEnum",
    "WorkflowCommand",
    "message_type",
]


class StrEnum(str, enum.Enum):
    """A ``str`` enum whose ``str()`` is its value (``enum.StrEnum`` is 3.11+)."""

    def __str__(self) -> str:
        return str(self.value)


_Member = TypeVar("_Member", bound=StrEnum)


def enum_member(cls: Type[_Member], value: Union[str, _Member]) -> Union[_Member, str]:
    """The member of ``cls`` whose value is ``value``, or ``value`` itself when unknown (the
    protocol may grow: an unknown value passes through as a plain string)."""
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        return value


class MessageType(StrEnum):
    """The message types of protocol v1. A ``str`` enum: compares equal to its value."""

    NODE_STATUS_UPDATE = "node_status_update"
    NODE_PROGRESS_UPDATE = "node_progress_update"
    NODE_ERROR = "node_error"
    NODE_RESULT = "node_result"
    NODE_METADATA = "node_metadata"
    NODE_LOG = "node_log"
    WORKFLOW_EVENT = "workflow_event"
    HEARTBEAT = "heartbeat"
    PING = "ping"
    PONG = "pong"
    SUBSCRIPTION_ACK = "subscription_ack"
    SUBSCRIPTION_ERROR = "subscription_error"
    ACK = "ack"


def message_type(value: Union[str, MessageType]) -> Union[MessageType, str]:
    """Return the :class:`MessageType` for ``value``, or the plain string if unknown."""
    return enum_member(MessageType, value)


class ConnectionState(StrEnum):
    """Where a service is in its life cycle."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    ERROR = "error"
    CLOSED = "closed"


class ConnectionType(StrEnum):
    """The transport in use."""

    WEBSOCKET = "websocket"
    EVENTSOURCE = "eventsource"


class CircuitState(StrEnum):
    """The circuit breaker's state."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_CAMEL = config(letter_case=LetterCase.CAMEL)


@dataclass(eq=True)
class RealtimeMessage(DataClassJsonMixin):
    """One protocol message (the envelope of docs/protocol.rst).

    ``type`` is a :class:`MessageType` when known and the plain string otherwise.
    ``timestamp`` is the sender's ISO-8601 time as received; ``received_at`` is
    our own receipt time (``time.time()``), not part of the wire format.
    """

    dataclass_json_config = _CAMEL["dataclasses_json"]

    type: Union[MessageType, str]
    id: str = ""
    timestamp: str = ""
    workflow_id: Optional[str] = None
    node_id: Optional[str] = None
    data: Dict[str, Any] = field(default_factory=dict)
    retry: Optional[int] = None
    version: Optional[int] = None
    received_at: float = field(
        default=0.0,
        compare=False,
        repr=False,
        metadata=config(exclude=lambda _: True),
    )

    def __post_init__(self) -> None:
        self.type = message_type(self.type)

    @property
    def payload(self) -> Optional[NodePayload]:
        """``data`` as a typed node payload (:mod:`magk_client.payloads`); ``None`` for other types.

        Parsed leniently on first access, on the calling thread (never the reader's), then cached
        for as long as ``data`` is the same object; check its ``problems``.
        """
        cached = self.__dict__.get("_payload")
        data = self.data
        if cached is not None and cached[0] is data:
            return cached[1]  # type: ignore[no-any-return]
        from .payloads import parse_payload

        value = parse_payload(self.type, data)
        self.__dict__["_payload"] = (data, value)
        return value


@dataclass
class WorkflowCommand(DataClassJsonMixin):
    """A workflow command payload (``requestId`` keeps it idempotent across resends)."""

    dataclass_json_config = _CAMEL["dataclasses_json"]

    command: str
    workflow_id: str
    request_id: str
    node_id: Optional[str] = None
    data: Optional[Dict[str, Any]] = None


@dataclass
class CommandResponse(DataClassJsonMixin):
    """The answer to a workflow command."""

    dataclass_json_config = _CAMEL["dataclasses_json"]

    request_id: str
    command: str
    success: bool
    error: Optional[str] = None
    data: Optional[Dict[str, Any]] = None


@dataclass
class BackendHealth(DataClassJsonMixin):
    """``GET /health``: the full form, or the minimal one real MAGK servers send."""

    dataclass_json_config = _CAMEL["dataclasses_json"]

    status: str
    service: Optional[str] = None
    services: Dict[str, bool] = field(default_factory=dict)
    metrics: Dict[str, Any] = field(default_factory=dict)

    @property
    def is_healthy(self) -> bool:
        return self.status == "healthy"


@dataclass(frozen=True)
class ConnectionHealth:
    """An immutable snapshot of a service's connection health.

    Times (``connected_since``, ``last_message_at``, ``last_heartbeat_at``: when the
    last pong answering our ping arrived) are wall-clock ``time.time()`` seconds;
    latencies are heartbeat round trips in ms.
    """

    is_healthy: bool
    state: ConnectionState
    connection_type: Optional[ConnectionType]
    connected_since: Optional[float] = None
    last_message_at: Optional[float] = None
    last_heartbeat_at: Optional[float] = None
    latency_ms: Optional[float] = None
    latency_p50_ms: Optional[float] = None
    latency_p99_ms: Optional[float] = None
    reconnect_attempts: int = 0
    total_reconnects: int = 0
    transport_switches: int = 0
    circuit_state: CircuitState = CircuitState.CLOSED
    messages_received: int = 0
    messages_delivered: int = 0
    messages_sent: int = 0
    duplicates_dropped: int = 0
    invalid_messages: int = 0
    oversized_messages: int = 0
    callback_errors: int = 0
    resume_gaps: int = 0
    queue_size: int = 0
    queue_dropped: int = 0
    queue_expired: int = 0
    dispatch_queue_size: int = 0
    dispatch_dropped: int = 0
    #: messages still waiting for the dispatcher when disconnect() ended delivery (never delivered)
    discarded_on_close: int = 0
    last_event_id: Optional[str] = None
    errors: List[str] = field(default_factory=list)
    #: outbound delivery (docs/protocol.rst, Acknowledgements): ``messages_sent`` counts writes,
    #: these what the server confirmed. True while the server is not known to acknowledge
    outbound_at_most_once: bool = True
    messages_acknowledged: int = 0
    #: writes after the first (after a reconnect, with the same id)
    messages_resent: int = 0
    #: written (or waiting to be written again) and not yet acknowledged
    messages_unacknowledged: int = 0
    #: given up without an acknowledgement (each may or may not have arrived): written to a server
    #: that does not acknowledge over a connection that then broke, or over the window's bounds
    messages_unconfirmed: int = 0
    messages_refused: int = 0
    #: waits for the send rate limit (``max_messages_per_second``): a message queued for want of
    #: a token, or the head of the queue told to wait for one
    rate_limit_waits: int = 0


@dataclass(frozen=True)
class SendResult:
    """How a message the caller waited for reached the server.

    ``acknowledged`` is True when the server confirmed it (an ``ack``, or the 2xx of
    ``POST /messages``); False when it was written to a server that does not acknowledge
    (delivered at most once) or is a command (its answer is its acknowledgement).
    """

    message_id: str
    acknowledged: bool
