"""Typed node payloads: the original app's ``types/workflow.ts`` as dataclasses (docs/protocol.rst,
*Node payloads*).

* ``node_progress_update``: ``data.progress`` is a :class:`NodeProgress` (its ``stages``:
  :class:`ProgressStage`);
* ``node_error``: ``data.error`` is a :class:`NodeError` (its ``code``: :class:`ErrorCode`);
* ``node_result``: ``data.result`` is a :class:`NodeResult` (:class:`DataSchema` of
  :class:`SchemaField`, :class:`DataStatistics`);
* ``node_metadata``: ``data.metadata`` is a :class:`NodeMetadata` (:class:`PerformanceMetrics`);
* ``node_log``: ``data`` is a :class:`NodeLogs`, whose ``logs`` are :class:`NodeLog` entries.

Fields are snake_case here and camelCase on the wire. Parsing is lenient and never raises:

* a key the type does not know is kept in the object's ``extra`` (and written back by ``to_wire``);
* a missing required key, a value of the wrong JSON type or an unknown enum value becomes one line
  of ``problems`` (``"stages[0].status: expected a string, got number"``); the field stays ``None``
  (an unknown enum value is kept as its plain string, an item of the wrong type is left out of its
  list);
* ``raw`` is the dict the object was built from, as received.

``problems`` covers the object and everything in it, and ``unknown_keys()`` lists the ``extra`` keys
of the object and everything in it. ``from_wire(data, strict=True)`` raises :class:`PayloadError`
instead of returning an object that has either: strict means exactly the original's type.

Threads: everything here is pure and lock-free. Nothing parses on the reader thread:
:attr:`RealtimeMessage.payload <magk_client.models.RealtimeMessage.payload>` calls
:func:`parse_payload` on first access, on the thread that asks (a callback on the dispatcher thread,
or the user's own thread with the pull API), and caches the result on the message.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import (
    Any,
    Callable,
    ClassVar,
    Dict,
    FrozenSet,
    List,
    Mapping,
    Optional,
    Tuple,
    Type,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from .errors import MagkError
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


class PayloadError(MagkError, ValueError):
    """A node payload did not fit its type exactly (raised only by ``from_wire(..., strict=True)``).

    Attributes:
        problems: one line per problem, each starting with the path of the value concerned.
    """

    def __init__(self, type_name: str, problems: Tuple[str, ...]) -> None:
        super().__init__(f"malformed {type_name}: " + "; ".join(problems))
        self.problems = problems


def _required() -> Any:
    """A field the original declares as required (reported when missing); ``None`` until parsed."""
    return field(default=None, metadata={"required": True})


def _time(required: bool = False) -> Any:
    """An ISO-8601 time string (a ``Date`` in the original, which JSON carries as such a string)."""
    return field(default=None, metadata={"time": True, "required": required})


def _wire(name: str) -> Any:
    """A field whose wire name is not the plain camelCase of its Python name (``diskIO``)."""
    return field(default=None, metadata={"wire": name})


P = TypeVar("P", bound="_Payload")
_Check = Callable[[Any, str, List[str]], Any]


@dataclass
class _Payload:
    """The three attributes every payload type has; none of them is an ``__init__`` argument."""

    #: keys of the wire object this type does not define, with their values
    extra: Dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    #: what did not fit, one line each (path: what); empty when the payload was well formed
    problems: Tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)
    #: the wire object this was parsed from (``None`` when built in code or given a non-object)
    raw: Optional[Dict[str, Any]] = field(default=None, init=False, repr=False, compare=False)

    #: (fields, their wire names), made from the type hints on first use (see _spec)
    _spec: ClassVar[Optional[Tuple[Tuple[_Field, ...], FrozenSet[str]]]] = None

    @classmethod
    def from_wire(cls: Type[P], data: Any, *, strict: bool = False) -> P:
        """Parse a wire object (camelCase keys). Lenient unless ``strict`` (then :class:`PayloadError`)."""
        problems: List[str] = []
        if isinstance(data, dict):
            obj = _build(cls, data, "", problems)
        else:
            obj = cls()
            problems.append(f"expected an object, got {_kind(data)}")
            obj.problems = tuple(problems)
        if strict:
            unknown = obj.unknown_keys()
            if obj.problems or unknown:
                raise PayloadError(cls.__name__, obj.problems + tuple(unknown))
        return obj

    def unknown_keys(self) -> List[str]:
        """The paths of every ``extra`` key in this object and the payload objects in it."""
        out = [f"{key}: not a field of {type(self).__name__}" for key in self.extra]
        for f in _spec(type(self))[0]:
            value = getattr(self, f.attr)
            items = enumerate(value) if isinstance(value, list) else ((None, value),)
            for i, item in items:
                if isinstance(item, _Payload):
                    where = f.wire if i is None else f"{f.wire}[{i}]"
                    out.extend(f"{where}.{line}" for line in item.unknown_keys())
        return out

    def to_wire(self) -> Dict[str, Any]:
        """The wire object (camelCase; ``None`` fields left out; ``extra`` keys added back; not a deep copy)."""
        out: Dict[str, Any] = {}
        for f in _spec(type(self))[0]:
            value = getattr(self, f.attr)
            if value is not None:
                out[f.wire] = _unparse(value)
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


@dataclass
class ProgressStage(_Payload):
    """One stage of a node's progress."""

    name: Optional[str] = _required()
    status: Optional[str] = _required()
    #: percent of this stage done, 0-100
    progress: Optional[float] = None
    message: Optional[str] = None


@dataclass
class NodeProgress(_Payload):
    """``node_progress_update`` ``data.progress``."""

    current: Optional[float] = _required()
    total: Optional[float] = _required()
    percentage: Optional[float] = None
    message: Optional[str] = None
    start_time: Optional[str] = _time()
    estimated_completion: Optional[str] = _time()
    #: milliseconds
    estimated_time_remaining: Optional[float] = None
    #: items per second
    throughput_rate: Optional[float] = None
    stages: Optional[List[ProgressStage]] = None


@dataclass
class NodeError(_Payload):
    """``node_error`` ``data.error``."""

    message: Optional[str] = _required()
    code: Optional[Union[ErrorCode, str]] = None
    details: Optional[Any] = None
    stack: Optional[str] = None
    timestamp: Optional[str] = _time()
    recoverable: Optional[bool] = None
    suggestions: Optional[List[str]] = None


@dataclass
class SchemaField(_Payload):
    """One column of a :class:`DataSchema`."""

    name: Optional[str] = _required()
    type: Optional[Union[SchemaFieldType, str]] = _required()
    nullable: Optional[bool] = None
    unique: Optional[bool] = None
    format: Optional[str] = None
    description: Optional[str] = None


@dataclass
class DataSchema(_Payload):
    """``NodeResult.schema``."""

    fields: List[SchemaField] = field(default_factory=list, metadata={"required": True})
    primary_key: Optional[List[str]] = None
    foreign_keys: Optional[List[Dict[str, Any]]] = None


@dataclass
class DataStatistics(_Payload):
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
class NodeResult(_Payload):
    """``node_result`` ``data.result``."""

    data: Optional[Any] = None
    row_count: Optional[int] = None
    column_count: Optional[int] = None
    schema: Optional[DataSchema] = None
    preview: Optional[List[Any]] = None
    statistics: Optional[DataStatistics] = None


@dataclass
class PerformanceMetrics(_Payload):
    """``NodeMetadata.performance``."""

    #: percent
    cpu_usage: Optional[float] = None
    #: bytes
    memory_peak: Optional[float] = None
    #: bytes read and written
    disk_io: Optional[float] = _wire("diskIO")
    #: bytes sent and received
    network_io: Optional[float] = _wire("networkIO")
    #: 0-1
    cache_hit_rate: Optional[float] = None


@dataclass
class NodeMetadata(_Payload):
    """``node_metadata`` ``data.metadata``."""

    #: milliseconds
    execution_time: Optional[float] = None
    rows_processed: Optional[int] = None
    #: bytes
    memory_usage: Optional[float] = None
    last_executed: Optional[str] = _time()
    version: Optional[Union[str, float]] = None
    #: ids of the nodes this one depends on
    dependencies: Optional[List[str]] = None
    performance: Optional[PerformanceMetrics] = None


@dataclass
class NodeLog(_Payload):
    """One log entry of ``node_log``."""

    timestamp: Optional[str] = _time(required=True)
    level: Optional[Union[LogLevel, str]] = _required()
    message: Optional[str] = _required()
    category: Optional[str] = None
    details: Optional[Any] = None


@dataclass
class NodeLogs(_Payload):
    """``node_log`` ``data``: ``{"logs": [...]}``."""

    logs: List[NodeLog] = field(default_factory=list, metadata={"required": True})


NodePayload = Union[NodeProgress, NodeError, NodeResult, NodeMetadata, NodeLogs]

# message type -> (the key of ``data`` that holds the payload, its type); node_log's is ``data`` itself
_CONTAINED: Dict[str, Tuple[str, Type[_Payload]]] = {
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
        obj = _build(cls, value, key, problems)
    else:
        obj = cls()
        problems.append(f"{key}: missing" if value is None else f"{key}: expected an object, got {_kind(value)}")
    obj.problems = tuple(problems)
    return obj  # type: ignore[return-value]  # _CONTAINED maps to NodePayload members only


# -- the parser ----------------------------------------------------------------------------------


class _Field:
    __slots__ = ("attr", "check", "required", "wire")

    def __init__(self, attr: str, wire: str, required: bool, check: _Check) -> None:
        self.attr = attr
        self.wire = wire
        self.required = required
        self.check = check


_BAD = object()  # what a check returns for a value it rejected (already reported)


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for problem lines."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _build(cls: Type[P], raw: Dict[str, Any], path: str, problems: List[str]) -> P:
    """Build ``cls`` from a dict; problems go to ``problems`` (paths from the top) and, relative to
    the new object, to its own ``problems``."""
    start = len(problems)
    obj = cls()
    fields, names = _spec(cls)
    for f in fields:
        value = raw.get(f.wire)
        if value is None:
            if f.required:
                problems.append(f"{_at(path, f.wire)}: {'null' if f.wire in raw else 'missing'}")
            continue
        parsed = f.check(value, _at(path, f.wire), problems)
        if parsed is not _BAD:
            setattr(obj, f.attr, parsed)
    for key in raw:
        if key not in names:
            obj.extra = {k: v for k, v in raw.items() if k not in names}
            break
    obj.raw = raw
    if len(problems) > start:
        cut = len(path) + 1 if path else 0
        obj.problems = tuple(p[cut:] for p in problems[start:])
    return obj


def _expected(what: str, value: Any, path: str, problems: List[str]) -> Any:
    problems.append(f"{path}: expected {what}, got {_kind(value)}")
    return _BAD


def _check_str(value: Any, path: str, problems: List[str]) -> Any:
    return value if isinstance(value, str) else _expected("a string", value, path, problems)


def _check_bool(value: Any, path: str, problems: List[str]) -> Any:
    return value if isinstance(value, bool) else _expected("a boolean", value, path, problems)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_number(value: Any, path: str, problems: List[str]) -> Any:
    return value if _is_number(value) else _expected("a number", value, path, problems)


def _check_int(value: Any, path: str, problems: List[str]) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 100.0 from a server that does all its arithmetic in floats
    return _expected("an integer", value, path, problems)


def _check_str_or_number(value: Any, path: str, problems: List[str]) -> Any:
    if isinstance(value, str) or _is_number(value):
        return value
    return _expected("a string or a number", value, path, problems)


def _check_object(value: Any, path: str, problems: List[str]) -> Any:
    return value if isinstance(value, dict) else _expected("an object", value, path, problems)


def _check_any(value: Any, path: str, problems: List[str]) -> Any:
    return value


def _check_time(value: Any, path: str, problems: List[str]) -> Any:
    if not isinstance(value, str):
        return _expected("an ISO-8601 time string", value, path, problems)
    try:
        # fromisoformat takes "Z" only from 3.11; 3 or 6 digits of fraction from 3.7
        datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
    except ValueError:
        problems.append(f"{path}: {value[:40]!r} is not an ISO-8601 time")
        return _BAD
    return value


def _list_of(item: _Check) -> _Check:
    def check(value: Any, path: str, problems: List[str]) -> Any:
        if not isinstance(value, list):
            return _expected("an array", value, path, problems)
        out = []
        for i, v in enumerate(value):
            parsed = item(v, f"{path}[{i}]", problems)
            if parsed is not _BAD:
                out.append(parsed)
        return out

    return check


def _enum(cls: Type[StrEnum]) -> _Check:
    members = {m.value: m for m in cls}
    names = ", ".join(members)

    def check(value: Any, path: str, problems: List[str]) -> Any:
        if not isinstance(value, str):
            return _expected("a string", value, path, problems)
        member = members.get(value)
        if member is None:
            problems.append(f"{path}: {value[:40]!r} is not one of {names}")
            return value
        return member

    return check


def _nested(cls: Type[_Payload]) -> _Check:
    def check(value: Any, path: str, problems: List[str]) -> Any:
        if not isinstance(value, dict):
            return _expected("an object", value, path, problems)
        return _build(cls, value, path, problems)

    return check


_SCALARS: Dict[Any, _Check] = {
    str: _check_str,
    bool: _check_bool,
    int: _check_int,
    float: _check_number,
    Any: _check_any,
}


def _checker(tp: Any) -> _Check:
    """The check for one field type (the few forms the classes above use)."""
    origin = get_origin(tp)
    args = [a for a in get_args(tp) if a is not type(None)]
    if origin is Union:
        if len(args) == 1:
            return _checker(args[0])
        enums = [a for a in args if isinstance(a, type) and issubclass(a, StrEnum)]
        if enums and set(args) == {enums[0], str}:
            return _enum(enums[0])
        if set(args) == {str, float}:
            return _check_str_or_number
    elif origin is list:
        return _list_of(_checker(args[0]))
    elif origin is dict:
        return _check_object
    elif tp in _SCALARS:
        return _SCALARS[tp]
    elif isinstance(tp, type) and issubclass(tp, _Payload):
        return _nested(tp)
    raise TypeError(f"no payload check for {tp!r}")  # pragma: no cover - a new field of a new form


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _spec(cls: Type[_Payload]) -> Tuple[Tuple[_Field, ...], FrozenSet[str]]:
    """The fields of a payload class and their wire names, made once per class on first use (a
    race makes them twice, harmlessly); not at import, where the type hints would cost ~0.5 ms a class."""
    spec: Optional[Tuple[Tuple[_Field, ...], FrozenSet[str]]] = cls.__dict__.get("_spec")
    if spec is None:
        spec = _prepare(cls)
        cls._spec = spec
    return spec


def _prepare(cls: Type[_Payload]) -> Tuple[Tuple[_Field, ...], FrozenSet[str]]:
    hints = get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        check = _check_time if f.metadata.get("time") else _checker(hints[f.name])
        wire = f.metadata.get("wire") or _camel(f.name)
        specs.append(_Field(f.name, wire, bool(f.metadata.get("required")), check))
    return tuple(specs), frozenset(s.wire for s in specs)


def _unparse(value: Any) -> Any:
    if isinstance(value, _Payload):
        return value.to_wire()
    if isinstance(value, list):
        return [_unparse(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value

