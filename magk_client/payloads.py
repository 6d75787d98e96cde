"""Typed node payloads: the original app's ``types/workflow.ts`` as dataclasses (docs/protocol.rst,
*Node payloads*).

* ``node_progress_update``: ``data.progress`` is a :class:`NodeProgress` (its ``stages``:
  :class:`ProgressStage`);
* ``node_error``: ``data.error`` is a :class:`NodeError` (its ``code``: :class:`ErrorCode`);
* ``node_result``: ``data.result`` is a :class:`NodeResult` (:class:`DataSchema` of
  :class:`SchemaField`, :class:`DataStatistics`);
* ``node_metadata``: ``data.metadata`` is a :class:`NodeMetadata` (:class:`PerformanceMetrics`);
* ``node_log``: ``data`` is a :class:`NodeLogs`, whose ``logs`` are :class:`NodeLog` entries.

Fields are snake_case here and camelCase on the wire. Each type has ``from_wire(dict, strict=False)``
and ``to_wire()``; parsing is lenient and never raises (:mod:`magk_client.lenient` has the rules): a
key the type does not know is kept in ``extra``, what does not fit is a line of ``problems``, and
``raw`` is the dict as received. ``strict=True`` raises :class:`PayloadError` unless the payload is
exactly the original's type.

Threads: everything here is pure and lock-free. Nothing parses on the reader thread:
:attr:`RealtimeMessage.payload <magk_client.models.RealtimeMessage.payload>` calls
:func:`parse_payload` on first access, on the thread that asks (a callback on the dispatcher thread,
or the user's own thread with the pull API), and caches the result on the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type, Union

from .lenient import PayloadError, WireObject, build, iso_time, json_kind, required, wire_name
from .models import StrEnum

__all__ = [
    "DataSchema",
    "DataStatistics",
    "ErrorCode",
    "LogLevel",
    "NodeError",
    "NodeLog",
    "NodeLogs",
    "NodeMetadata",
    "NodePayload",
    "NodeProgress",
    "NodeResult",
    "PayloadError",
    "PerformanceMetrics",
    "ProgressStage",
    "SchemaField",
    "SchemaFieldType",
    "parse_payload",
]


class ErrorCode(StrEnum):
    """``NodeError.code``: the original's ``ErrorCode`` values."""

    NETWORK_ERROR = "NETWORK_ERROR"
    TIMEOUT = "TIMEOUT"
    INVALID_CONFIG = "INVALID_CONFIG"
    DATA_VALIDATION_FAILED = "DATA_VALIDATION_FAILED"
    FILE_NOT_FOUND = "FILE_NOT_FOUND"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    PARSE_ERROR = "PARSE_ERROR"
    MEMORY_LIMIT_EXCEEDED = "MEMORY_LIMIT_EXCEEDED"
    UNKNOWN_ERROR = "UNKNOWN_ERROR"


class LogLevel(StrEnum):
    """``NodeLog.level``."""

    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


class SchemaFieldType(StrEnum):
    """``SchemaField.type``: the JSON-ish column types of the original (no ``integer``: use ``number``)."""

    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    OBJECT = "object"
    ARRAY = "array"


@dataclass
class ProgressStage(WireObject):
    """One stage of a node's progress."""

    name: Optional[str] = required()
    status: Optional[str] = required()
    #: percent of this stage done, 0-100
    progress: Optional[float] = None
    message: Optional[str] = None


@dataclass
class NodeProgress(WireObject):
    """``node_progress_update`` ``data.progress``."""

    current: Optional[float] = required()
    total: Optional[float] = required()
    percentage: Optional[float] = None
    message: Optional[str] = None
    start_time: Optional[str] = iso_time()
    estimated_completion: Optional[str] = iso_time()
    #: milliseconds
    estimated_time_remaining: Optional[float] = None
    #: items per second
    throughput_rate: Optional[float] = None
    stages: Optional[List[ProgressStage]] = None


@dataclass
class NodeError(WireObject):
    """``node_error`` ``data.error``."""

    message: Optional[str] = required()
    code: Optional[Union[ErrorCode, str]] = None
    details: Optional[Any] = None
    stack: Optional[str] = None
    timestamp: Optional[str] = iso_time()
    recoverable: Optional[bool] = None
    suggestions: Optional[List[str]] = None


@dataclass
class SchemaField(WireObject):
    """One column of a :class:`DataSchema`."""

    name: Optional[str] = required()
    type: Optional[Union[SchemaFieldType, str]] = required()
    nullable: Optional[bool] = None
    unique: Optional[bool] = None
    format: Optional[str] = None
    description: Optional[str] = None


@dataclass
class DataSchema(WireObject):
    """``NodeResult.schema``."""

    fields: List[SchemaField] = field(default_factory=list, metadata={"required": True})
    primary_key: Optional[List[str]] = None
    foreign_keys: Optional[List[Dict[str, Any]]] = None


@dataclass
class DataStatistics(WireObject):
    """``NodeResult.statistics``."""

    total_rows: Optional[int] = None
    total_columns: Optional[int] = None
    null_values: Optional[int] = None
    duplicate_rows: Optional[int] = None
    #: bytes
    memory_size: Optional[float] = None
    #: column name -> that column's statistics (an object per column)
    column_stats: Optional[Dict[str, Any]] = None


@dataclass
class NodeResult(WireObject):
    """``node_result`` ``data.result``."""

    data: Optional[Any] = None
    row_count: Optional[int] = None
    column_count: Optional[int] = None
    schema: Optional[DataSchema] = None
    preview: Optional[List[Any]] = None
    statistics: Optional[DataStatistics] = None


@dataclass
class PerformanceMetrics(WireObject):
    """``NodeMetadata.performance``."""

    #: percent
    cpu_usage: Optional[float] = None
    #: bytes
    memory_peak: Optional[float] = None
    #: bytes read and written
    disk_io: Optional[float] = wire_name("diskIO")
    #: bytes sent and received
    network_io: Optional[float] = wire_name("networkIO")
    #: 0-1
    cache_hit_rate: Optional[float] = None


@dataclass
class NodeMetadata(WireObject):
    """``node_metadata`` ``data.metadata``."""

    #: milliseconds
    execution_time: Optional[float] = None
    rows_processed: Optional[int] = None
    #: bytes
    memory_usage: Optional[float] = None
    last_executed: Optional[str] = iso_time()
    version: Optional[Union[str, float]] = None
    #: ids of the nodes this one depends on
    dependencies: Optional[List[str]] = None
    performance: Optional[PerformanceMetrics] = None


@dataclass
class NodeLog(WireObject):
    """One log entry of ``node_log``."""

    timestamp: Optional[str] = iso_time(required=True)
    level: Optional[Union[LogLevel, str]] = required()
    message: Optional[str] = required()
    category: Optional[str] = None
    details: Optional[Any] = None


@dataclass
class NodeLogs(WireObject):
    """``node_log`` ``data``: ``{"logs": [...]}``."""

    logs: List[NodeLog] = field(default_factory=list, metadata={"required": True})


NodePayload = Union[NodeProgress, NodeError, NodeResult, NodeMetadata, NodeLogs]

# message type -> (the key of ``data`` that holds the payload, its type); node_log's is ``data`` itself
_CONTAINED: Dict[str, Tuple[str, Type[WireObject]]] = {
    "node_progress_update": ("progress", NodeProgress),
    "node_error": ("error", NodeError),
    "node_result": ("result", NodeResult),
    "node_metadata": ("metadata", NodeMetadata),
}


def parse_payload(message_type: str, data: Mapping[str, Any]) -> Optional[NodePayload]:
    """The typed payload of a message's ``data``, or ``None`` for a type without one.

    Lenient like ``from_wire``; here the paths in ``problems`` start at ``data`` (``progress.total:
    missing``), and a missing or non-object container (``data.progress``) is itself a problem.
    """
    if message_type == "node_log":
        return NodeLogs.from_wire(data)
    entry = _CONTAINED.get(message_type)
    if entry is None:
        return None
    key, cls = entry
    problems: List[str] = []
    value = data.get(key)
    if isinstance(value, dict):
        obj = build(cls, value, key, problems)
    else:
        obj = cls()
        problems.append(f"{key}: missing" if value is None else f"{key}: expected an object, got {json_kind(value)}")
    obj.problems = tuple(problems)
    return obj  # type: ignore[return-value]  # _CONTAINED maps to NodePayload members only
