"""What an update does to a node's state (pure functions; the store calls them under its lock).

An :class:`Update` is one change with its values already validated and frozen: fields to
set, metadata to merge, log entries to append. :func:`update_from_message` turns a server
event into one; the store's action methods build theirs with the ``check_*`` helpers;
:func:`next_state` computes the new snapshot, including the restart rule and the log cap.
"""

from __future__ import annotations

import logging
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from .errors import ConfigError, check_non_empty
from .models import MessageType
from .node_state import NodeExecutionState, NodeStatus, evolve, freeze, is_mapping, node_status, thaw

__all__ = [
    "Update",
    "check_error",
    "check_mapping",
    "check_status",
    "freeze_logs",
    "local_changes",
    "next_state",
    "update_from_message",
]

logger = logging.getLogger("magk_client.store")

_RESTARTING = (NodeStatus.RUNNING, NodeStatus.PENDING)
_FINISHED = (NodeStatus.ERROR, NodeStatus.COMPLETED)


class Update:
    """One update: ``values`` (field -> frozen value) to set, ``merge`` (frozen mapping) to merge
    into the metadata, ``logs`` (frozen entries) to append."""

    __slots__ = ("logs", "merge", "values")

    def __init__(
        self,
        values: Dict[str, Any],
        merge: Optional[Mapping[str, Any]] = None,
        logs: Tuple[Mapping[str, Any], ...] = (),
    ) -> None:
        self.values = values
        self.merge = merge
        self.logs = logs

    @property
    def logs_only(self) -> bool:
        """True if it only appends log entries (exempt from the ordering rule)."""
        return not self.values and self.merge is None


def next_state(
    base: NodeExecutionState, update: Update, stamp: Optional[str], max_logs: int
) -> Tuple[NodeExecutionState, int]:
    """The state after ``update`` (version + 1) and how many log entries the cap pushed out.

    A status of ``running``/``pending`` on a node in ``error``/``completed`` clears ``error``
    and ``result`` unless the update sets them itself. ``stamp`` (the update's timestamp
    text when it is the node's newest) becomes ``last_updated``.
    """
    values = dict(update.values)
    if values.get("status") in _RESTARTING and base.status in _FINISHED:
        values.setdefault("error", None)
        values.setdefault("result", None)
    if update.merge is not None:
        values["metadata"] = MappingProxyType({**base.metadata, **update.merge}) if base.metadata else update.merge
    excess = 0
    if update.logs:
        logs = base.logs + update.logs
        excess = len(logs) - max_logs
        if excess > 0:
            logs = logs[excess:]
            values["logs_dropped"] = base.logs_dropped + excess
        else:
            excess = 0
        values["logs"] = logs
    if stamp is not None:
        values["last_updated"] = stamp
    values["version"] = base.version + 1
    return evolve(base, values), excess


def local_changes(update: Update) -> Dict[str, Any]:
    """What an action's update set, as plain values (new objects): ``status`` (str), ``progress``,
    ``error``, ``result`` (a dict, or None when cleared), ``metadata`` (what was set or merged) and
    ``logs`` (a list of the entries appended); only the keys the update touched."""
    changes: Dict[str, Any] = {name: thaw(value) for name, value in update.values.items()}
    if "status" in changes:
        changes["status"] = str(changes["status"])
    if update.merge is not None:
        changes["metadata"] = thaw(update.merge)
    if update.logs:
        changes["logs"] = thaw(update.logs)
    return changes


def update_from_message(mtype: Union[MessageType, str], data: Any) -> Optional[Update]:
    """The update a node event asks for, or None if it is not a (well-formed) node event."""
    parse = _PARSERS.get(mtype.value if isinstance(mtype, MessageType) else mtype)
    if parse is None or not is_mapping(data):
        return None
    try:
        return parse(data)
    except ConfigError as exc:
        logger.debug("store: malformed %s ignored: %s", mtype, exc)
        return None


def _parse_status(data: Mapping[str, Any]) -> Update:
    return Update({"status": check_status(data.get("status"))})


def _parse_progress(data: Mapping[str, Any]) -> Update:
    return Update({"progress": check_mapping("progress", data.get("progress"))})


def _parse_error(data: Mapping[str, Any]) -> Update:
    return Update({"error": check_error(data.get("error")), "status": NodeStatus.ERROR})


def _parse_result(data: Mapping[str, Any]) -> Update:
    return Update({"result": check_mapping("result", data.get("result")), "status": NodeStatus.COMPLETED})


def _parse_metadata(data: Mapping[str, Any]) -> Update:
    return Update({}, merge=check_mapping("metadata", data.get("metadata")))


def _parse_logs(data: Mapping[str, Any]) -> Optional[Update]:
    raw = data.get("logs")
    if raw is None and is_mapping(data.get("log")):
        raw = [data["log"]]
    logs = freeze_logs(raw) if isinstance(raw, list) else None
    if not logs:
        raise ConfigError("logs must be a non-empty list of objects")
    return Update({}, logs=logs)


_PARSERS: Dict[str, Callable[[Mapping[str, Any]], Optional[Update]]] = {
    MessageType.NODE_STATUS_UPDATE.value: _parse_status,
    MessageType.NODE_PROGRESS_UPDATE.value: _parse_progress,
    MessageType.NODE_ERROR.value: _parse_error,
    MessageType.NODE_RESULT.value: _parse_result,
    MessageType.NODE_METADATA.value: _parse_metadata,
    MessageType.NODE_LOG.value: _parse_logs,
}


def check_status(value: Any) -> Union[NodeStatus, str]:
    """A non-empty status string, as a :class:`NodeStatus` when known."""
    check_non_empty("status", value)
    return node_status(value)


def check_mapping(name: str, value: Any) -> Mapping[str, Any]:
    """``value`` frozen, if it is a mapping."""
    if not is_mapping(value):
        raise ConfigError(f"{name} must be a mapping, got {type(value).__name__}")
    frozen: Mapping[str, Any] = freeze(value)
    return frozen


def check_error(value: Any) -> Mapping[str, Any]:
    """An error mapping, frozen; a string becomes ``{"message": value}``."""
    if isinstance(value, str):
        value = {"message": value}
    return check_mapping("error", value)


def freeze_logs(raw: List[Any]) -> Optional[Tuple[Mapping[str, Any], ...]]:
    """The entries frozen, or None if one is not a mapping."""
    if not all(is_mapping(entry) for entry in raw):
        return None
    return tuple(freeze(entry) for entry in raw)
