"""Immutable values of the node-execution store (pure: no locks, no threads, no clock).

* :class:`NodeStatus` -- the node statuses of the protocol (a ``str`` enum; unknown
  statuses from a server are kept as plain strings).
* :class:`NodeExecutionState` -- one node's state, a frozen snapshot. Nested JSON-like
  values are frozen too: mappings become read-only ``MappingProxyType`` views of private
  copies, lists become tuples (see :func:`freeze`), so a snapshot handed to another
  thread can never change underneath it. :meth:`NodeExecutionState.to_dict` thaws it
  back into plain dicts and lists.
* :class:`ConnectionSnapshot` -- the connection state as the store last heard it.
* :class:`StoreConfig`, :class:`StoreStats`, :class:`ApplyResult` -- the store's limits,
  counters and per-update outcome.
* :func:`parse_timestamp` -- a server's ISO-8601 timestamp as exact integer
  microseconds since the epoch, the key of the store's ordering rule.

Every value here may be read from any thread.
"""

from __future__ import annotations

import html
import re
from collections import abc
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from .errors import ConfigError
from .models import ConnectionState, StrEnum, enum_member

__all__ = [
    "ApplyResult",
    "ConnectionSnapshot",
    "EMPTY_MAPPING",
    "NodeExecutionState",
    "NodeStatus",
    "StoreConfig",
    "StoreStats",
    "evolve",
    "freeze",
    "html_table",
    "is_mapping",
    "node_status",
    "parse_timestamp",
    "thaw",
]

#: The empty frozen mapping (the metadata of a node nobody described yet).
EMPTY_MAPPING: Mapping[str, Any] = MappingProxyType({})


class NodeStatus(StrEnum):
    """A node's execution status. ``IDLE`` means no status was reported yet."""

    IDLE = "idle"
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ERROR = "error"


def node_status(value: Union[str, NodeStatus]) -> Union[NodeStatus, str]:
    """The :class:`NodeStatus` for ``value``, or the plain string if the status is unknown."""
    return enum_member(NodeStatus, value)


def freeze(value: Any) -> Any:
    """A deep, read-only copy of a JSON-like value.

    Mappings become ``MappingProxyType`` over a new dict (keys kept), lists and tuples
    become tuples, sets become frozensets; str, numbers, bool and None are kept. Any
    other object is kept by reference (the store cannot freeze what it does not know).
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:  # the common case, checked by exact type first (abc checks are slow)
        return MappingProxyType({k: v if type(v) in _SCALARS else freeze(v) for k, v in value.items()})
    if kind is list or kind is tuple:
        return tuple(v if type(v) in _SCALARS else freeze(v) for v in value)
    if isinstance(value, (str, int, float)):
        return value
    if isinstance(value, abc.Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(value)
    return value


def is_mapping(value: Any) -> bool:
    """``isinstance(value, Mapping)``, with the exact ``dict`` and mapping-proxy types checked first."""
    kind = type(value)
    return kind is dict or kind is MappingProxyType or isinstance(value, abc.Mapping)


def thaw(value: Any) -> Any:
    """The inverse of :func:`freeze`: plain dicts and lists (new objects, safe to mutate)."""
    if isinstance(value, abc.Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    if isinstance(value, frozenset):
        return set(value)
    return value


_SCALARS = frozenset({str, int, float, bool, type(None)})
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_FRACTION = re.compile(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(.*)$")
# One-entry cache: consecutive events usually share the server's millisecond. A tuple
# swapped in one assignment, so concurrent callers see either the old or the new pair.
_last_parsed: Tuple[str, Optional[int]] = ("", None)


def parse_timestamp(value: Optional[str]) -> Optional[int]:
    """A server timestamp (ISO-8601) as integer microseconds since the epoch, or None.

    ``Z`` and any UTC offset are understood; a timestamp without a zone is read as UTC;
    fractions of any length are cut to microseconds. Anything unparsable (including an
    empty string) gives None: for the ordering rule, a missing timestamp.
    """
    global _last_parsed
    if not value:
        return None
    cached = _last_parsed
    if cached[0] == value:
        return cached[1]
    text = value[:-1] + "+00:00" if value[-1] in "Zz" else value
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment_or_none = _parse_odd_fraction(text)
        if moment_or_none is None:
            return None
        moment = moment_or_none
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - _EPOCH
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    _last_parsed = (value, micros)
    return micros


def _parse_odd_fraction(text: str) -> Optional[datetime]:
    """``fromisoformat`` before 3.11 takes only 3 or 6 fraction digits: pad or cut to 6."""
    match = _FRACTION.match(text)
    if match is None or match.group(2) is None:
        return None
    head, digits, tail = match.groups()
    try:
        return datetime.fromisoformat(f"{head}.{(digits + '000000')[:6]}{tail}")
    except ValueError:
        return None


@dataclass(frozen=True)
class NodeExecutionState:
    """One node's execution state: an immutable snapshot, safe to share between threads.

    ``progress``, ``error``, ``result`` and ``metadata`` are read-only mappings in the
    protocol's shapes (``docs/protocol.rst``: e.g. progress ``{"current", "total",
    "percentage"?, "message"?}``, error ``{"message", "code"?, ...}``); ``logs`` is a
    tuple of read-only log entries, oldest first, at most the store's cap
    (``logs_dropped`` counts those pushed out). ``last_updated`` is the server's
    timestamp (as received) of the newest update applied to this node, None if no
    applied update carried one. ``version`` counts the updates applied to this node:
    +1 per applied update, however many fields it changed; updates that were ignored
    (stale or duplicate) do not count.
    """

    workflow_id: str
    node_id: str
    status: Union[NodeStatus, str] = NodeStatus.IDLE
    progress: Optional[Mapping[str, Any]] = None
    error: Optional[Mapping[str, Any]] = None
    result: Optional[Mapping[str, Any]] = None
    metadata: Mapping[str, Any] = field(default_factory=lambda: EMPTY_MAPPING)
    logs: Tuple[Mapping[str, Any], ...] = ()
    logs_dropped: int = 0
    last_updated: Optional[str] = None
    version: int = 0

    def __hash__(self) -> int:
        # Mappings are unhashable; equal states have equal keys and versions.
        return hash((self.workflow_id, self.node_id, self.version))

    @property
    def key(self) -> Tuple[str, str]:
        """``(workflow_id, node_id)``, the store's key."""
        return (self.workflow_id, self.node_id)

    @property
    def percentage(self) -> Optional[float]:
        """``progress.percentage``, else ``current / total * 100``, else None."""
        progress = self.progress
        if progress is None:
            return None
        value: Any = progress.get("percentage")
        if _is_number(value):
            return float(value)
        current: Any = progress.get("current")
        total: Any = progress.get("total")
        if _is_number(current) and _is_number(total) and total:
            return float(current) / float(total) * 100.0
        return None

    @property
    def error_message(self) -> Optional[str]:
        """``error.message`` as a string, or None without an error."""
        if self.error is None:
            return None
        message = self.error.get("message")
        return None if message is None else str(message)

    def to_dict(self) -> Dict[str, Any]:
        """Every field as plain Python values (str status, dicts and lists; new objects)."""
        record = {f.name: thaw(getattr(self, f.name)) for f in fields(self)}
        record["status"] = str(self.status)
        return record

    def _repr_html_(self) -> str:
        """A small two-column HTML table (Jupyter); every value is escaped."""
        rows = [
            ("workflow", self.workflow_id),
            ("node", self.node_id),
            ("status", str(self.status)),
            ("progress", _format_percentage(self.percentage)),
            ("error", self.error_message or ""),
            ("result", "yes" if self.result is not None else ""),
            ("logs", f"{len(self.logs)}" + (f" (+{self.logs_dropped} dropped)" if self.logs_dropped else "")),
            ("last updated", self.last_updated or ""),
            ("version", str(self.version)),
        ]
        body = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)
        return f"<table class=\"magk-node-state\">{body}</table>"


@dataclass(frozen=True)
class ConnectionSnapshot:
    """The connection as the store was last told (``NodeExecutionStore.set_connection_state``)."""

    state: ConnectionState = ConnectionState.DISCONNECTED
    reconnect_attempts: int = 0
    last_error: Optional[str] = None

    @property
    def is_connected(self) -> bool:
        return self.state is ConnectionState.CONNECTED


class ApplyResult(StrEnum):
    """What the store did with an update."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # an event id applied before
    STALE = "stale"  # strictly older than the node's watermark
    IGNORED = "ignored"  # not a node event, or malformed


@dataclass(frozen=True)
class StoreConfig:
    """Store limits. ``max_logs_per_node``: log entries kept per node (oldest dropped);
    ``dedup_window``: event ids remembered for de-duplication; ``html_max_rows``: rows
    of ``_repr_html_``."""

    max_logs_per_node: int = 1000
    dedup_window: int = 10_000
    html_max_rows: int = 200

    def __post_init__(self) -> None:
        for name in ("max_logs_per_node", "dedup_window", "html_max_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class StoreStats:
    """Counters since the store was made (an immutable snapshot)."""

    nodes: int
    applied: int
    stale_ignored: int
    duplicates_ignored: int
    messages_ignored: int
    logs_dropped: int
    listener_errors: int


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _format_percentage(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.0f}%"


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def html_table(states: List[NodeExecutionState], connection: ConnectionSnapshot, max_rows: int) -> str:
    """The store's HTML table: one row per node (at most ``max_rows``), everything escaped."""
    head = "".join(
        f"<th>{h}</th>" for h in ("workflow", "node", "status", "progress", "error", "logs", "last updated", "version")
    )
    rows = []
    for state in states[:max_rows]:
        cells = (
            state.workflow_id,
            state.node_id,
            str(state.status),
            _format_percentage(state.percentage),
            state.error_message or "",
            str(len(state.logs)),
            state.last_updated or "",
            str(state.version),
        )
        rows.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in cells) + "</tr>")
    more = len(states) - max_rows
    if more > 0:
        rows.append(f"<tr><td colspan=\"8\">... {more} more node(s)</td></tr>")
    caption = (
        f"connection: {_esc(connection.state)}"
        + (f", {connection.reconnect_attempts} reconnect attempt(s)" if connection.reconnect_attempts else "")
        + f"; {len(states)} node(s)"
    )
    return (
        f"<table class=\"magk-node-store\"><caption>{caption}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def evolve(base: NodeExecutionState, values: Mapping[str, Any]) -> NodeExecutionState:
    """``dataclasses.replace(base, **values)`` without re-running ``__init__`` (about 4x faster).

    Only for the store's own hot path: ``values`` must hold field names and already frozen values.
    """
    new = object.__new__(NodeExecutionState)
    attrs = new.__dict__
    attrs.update(base.__dict__)
    attrs.update(values)
    return new
