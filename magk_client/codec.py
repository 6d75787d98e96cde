"""Wire JSON <-> :class:`~magk_client.models.RealtimeMessage` (pure; runs on the reader thread).

This is the per-message hot path, so it uses ``json`` and builds the dataclass
directly (dataclasses-json costs ~40x ``json.loads`` per message). It is also the
first line against hostile input: every failure is a :class:`ProtocolError`
(``InvalidMessage``) the reader counts and reports; nothing else escapes:

- bad JSON, ``NaN``/``Infinity``, a non-object root, a missing or non-string
  ``type``, wrongly typed ``id``/``workflowId``/``nodeId``/``data``;
- nesting deeper than ``max_depth`` (checked cheaply: only a message with more
  brackets than the limit is walked), and what the stdlib parser itself raises
  on hostile input (``RecursionError`` for extreme nesting, ``ValueError`` for
  integers over the interpreter's digit limit).

Also here: the older node-execution stream format (normalised into the
envelope) and named SSE events, turned into envelopes by transformers.
"""

from __future__ import annotations

import json
import json.scanner
import time
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

from .errors import ProtocolError
from .models import MessageType, RealtimeMessage
from .transports.base import SSEEvent

__all__ = [
    "InvalidMessage",
    "MessageTransformer",
    "TransformerRegistry",
    "decode",
    "decode_object",
    "encode",
    "from_backend_message",
    "now_iso",
]


class InvalidMessage(ProtocolError):
    """A message from the server that could not be decoded; it is dropped and counted."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_new = object.__new__
_TYPES_GET = {t.value: t for t in MessageType}.get
_decoder = json.JSONDecoder(parse_constant=_reject_constant)
_decode_json = _decoder.decode
# The C scanner alone is ~40 % cheaper than json.loads (no regex whitespace passes);
# json.scanner.make_scanner is the C one when the accelerator is there.
_scan: Callable[[str, int], Tuple[Any, int]] = json.scanner.make_scanner(_decoder)  # type: ignore[arg-type]
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_encode_json = _encoder.encode

# Older "node-execution" stream types -> (envelope type, data rewrite)
_LEGACY_TYPES = frozenset(
    {"node_started", "node_progress", "node_completed", "workflow_completed"}
)


def now_iso() -> str:
    """The current time as ISO-8601 UTC with milliseconds and ``Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _depth(obj: Any, limit: int) -> bool:
    """True if ``obj`` nests deeper than ``limit`` (iterative, no recursion)."""
    stack = [(obj, 1)]
    while stack:
        item, level = stack.pop()
        if level > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item if isinstance(v, (dict, list)))
    return False


def decode(
    text: Union[str, bytes], received_at: Optional[float] = None, max_depth: int = 128
) -> RealtimeMessage:
    """Decode one wire message. Raises :class:`InvalidMessage` on any bad input."""
    try:
        if not isinstance(text, str):
            text = text.decode("utf-8")
        try:
            # Fast path: one object starting at offset 0 and ending at the end of the text.
            obj, end = _scan(text, 0)
            if end != len(text):
                raise StopIteration(end)
        except StopIteration:
            obj = _decode_json(text)  # leading/trailing whitespace, or the exact error message
    except RecursionError:
        raise InvalidMessage("message nests too deeply to parse") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidMessage(f"message is not valid JSON: {str(exc)[:200]}") from None
    if type(obj) is not dict:
        raise InvalidMessage(f"message must be a JSON object, got {type(obj).__name__}")
    # Cheap guards first: nesting d levels takes 2d characters, and at least d brackets.
    if (
        len(text) > 2 * max_depth
        and text.count("{") + text.count("[") > max_depth
        and _depth(obj, max_depth)
    ):
        raise InvalidMessage(f"message nests deeper than max_json_depth={max_depth}")
    return decode_object(obj, received_at)


def decode_object(obj: Mapping[str, Any], received_at: Optional[float] = None) -> RealtimeMessage:
    """Build a message from a decoded JSON object (validated; legacy format normalised)."""
    get = obj.get
    mtype = get("type")
    mid = get("id", "")
    data = get("data")
    workflow_id = get("workflowId")
    node_id = get("nodeId")
    timestamp = get("timestamp", "")
    if not (
        type(mtype) is str
        and type(mid) is str
        and type(data) is dict
        and type(timestamp) is str
        and (workflow_id is None or type(workflow_id) is str)
        and (node_id is None or type(node_id) is str)
        and mtype
        and mtype not in _LEGACY_TYPES
    ):
        mtype, mid, data, timestamp = _check_fields(mtype, mid, data, workflow_id, node_id, timestamp)
    retry = get("retry")
    version = get("version")
    # Hot path: every field is checked above, so build the dataclass without __init__/__post_init__;
    # the result is identical to RealtimeMessage(...). The attributes are set one by one in field
    # order (the order __init__ uses), so CPython >= 3.11 keeps them inline in the object with no
    # per-message dict: a quarter of the cost, and one object fewer for the cyclic GC to track.
    message: RealtimeMessage = _new(RealtimeMessage)
    message.type = _TYPES_GET(mtype, mtype)
    message.id = mid
    message.timestamp = timestamp
    message.workflow_id = workflow_id
    message.node_id = node_id
    message.data = data
    message.retry = retry if type(retry) is int else None
    message.version = version if type(version) is int else None
    message.received_at = time.time() if received_at is None else received_at
    return message


def _check_fields(
    mtype: Any, mid: Any, data: Any, workflow_id: Any, node_id: Any, timestamp: Any
) -> Tuple[str, str, Dict[str, Any], str]:
    """The envelope fields off the fast path: validated, coerced, legacy types normalised."""
    if type(mtype) is not str or not mtype:
        raise InvalidMessage("message has no string 'type'")
    if mid is None:
        mid = ""
    elif type(mid) is not str:
        if type(mid) is int:
            mid = str(mid)
        else:
            raise InvalidMessage(f"message 'id' must be a string, got {type(mid).__name__}")
    if data is None:
        data = {}
    elif type(data) is not dict:
        raise InvalidMessage(f"message 'data' must be an object, got {type(data).__name__}")
    if (workflow_id is not None and type(workflow_id) is not str) or (
        node_id is not None and type(node_id) is not str
    ):
        raise InvalidMessage("message 'workflowId'/'nodeId' must be strings")
    if type(timestamp) is not str:
        timestamp = str(timestamp) if isinstance(timestamp, (int, float)) else ""
    if mtype in _LEGACY_TYPES:
        mtype, data = _normalise_legacy(mtype, data)
    return mtype, mid, data, timestamp


def _normalise_legacy(mtype: str, data: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    if mtype == "node_started":
        return MessageType.NODE_STATUS_UPDATE.value, {**data, "status": "running"}
    if mtype == "node_completed":
        out = {**data, "status": "completed"}
        return MessageType.NODE_STATUS_UPDATE.value, out
    if mtype == "node_progress":
        if "progress" in data:
            return MessageType.NODE_PROGRESS_UPDATE.value, data
        return MessageType.NODE_PROGRESS_UPDATE.value, {"progress": dict(data)}
    # workflow_completed
    return MessageType.WORKFLOW_EVENT.value, {**data, "type": "workflow_completed"}


def encode(message: Union[RealtimeMessage, Mapping[str, Any]]) -> str:
    """Encode an outbound message as compact JSON (camelCase keys, no None fields).

    A dict is taken as the wire form (camelCase); ``type`` is required. A missing
    ``timestamp`` is filled in; an ``id`` is left to the caller.
    """
    if isinstance(message, RealtimeMessage):
        obj: Dict[str, Any] = {"type": str(message.type)}
        if message.id:
            obj["id"] = message.id
        obj["timestamp"] = message.timestamp or now_iso()
        if message.workflow_id is not None:
            obj["workflowId"] = message.workflow_id
        if message.node_id is not None:
            obj["nodeId"] = message.node_id
        obj["data"] = message.data
        if message.retry is not None:
            obj["retry"] = message.retry
        if message.version is not None:
            obj["version"] = message.version
    elif isinstance(message, Mapping):
        mtype = message.get("type")
        if not isinstance(mtype, str) or not mtype:
            raise InvalidMessage("an outbound message needs a string 'type'")
        obj = {str(k): v for k, v in message.items() if v is not None}
        obj["type"] = str(mtype)
        obj.setdefault("timestamp", now_iso())
    else:
        raise TypeError(f"cannot send a {type(message).__name__}; use a RealtimeMessage or a dict")
    try:
        return _encode_json(obj)
    except (TypeError, ValueError) as exc:
        raise InvalidMessage(f"message cannot be encoded as JSON: {exc}") from None


#: A transformer turns a named SSE event's backend message into an envelope dict (or None to drop).
MessageTransformer = Callable[[Dict[str, Any]], Optional[Mapping[str, Any]]]


def _workflow_started(msg: Dict[str, Any]) -> Mapping[str, Any]:
    data = msg.get("data") if isinstance(msg.get("data"), dict) else {}
    assert isinstance(data, dict)
    return {
        "type": "workflow_event",
        "id": msg.get("id"),
        "timestamp": msg.get("timestamp") or now_iso(),
        "workflowId": data.get("workflowId"),
        "data": {**data, "type": "workflow_started"},
    }


def _node_execution_update(msg: Dict[str, Any]) -> Mapping[str, Any]:
    data = msg.get("data") if isinstance(msg.get("data"), dict) else {}
    assert isinstance(data, dict)
    return {
        "type": "node_status_update",
        "id": msg.get("id"),
        "timestamp": msg.get("timestamp") or now_iso(),
        "workflowId": data.get("workflowId"),
        "nodeId": data.get("nodeId"),
        "data": data,
    }


class TransformerRegistry:
    """Named SSE event -> envelope transformers. Copy-on-write, so reads need no lock."""

    def __init__(self) -> None:
        self._map: Dict[str, MessageTransformer] = {
            "workflow_started": _workflow_started,
            "node_execution_update": _node_execution_update,
        }

    def register(self, event_name: str, fn: MessageTransformer) -> Callable[[], None]:
        if not isinstance(event_name, str) or not event_name:
            raise ValueError("event_name must be a non-empty string")
        if not callable(fn):
            raise ValueError("a transformer must be callable")
        new = dict(self._map)
        new[event_name] = fn
        self._map = new

        def remove() -> None:
            if self._map.get(event_name) is fn:
                rest = dict(self._map)
                del rest[event_name]
                self._map = rest

        return remove

    def get(self, event_name: str) -> Optional[MessageTransformer]:
        return self._map.get(event_name)


def from_backend_message(
    event: SSEEvent,
    registry: TransformerRegistry,
    received_at: Optional[float] = None,
    max_depth: int = 128,
) -> Optional[RealtimeMessage]:
    """Turn one SSE event into a message (None: a transformer chose to drop it).

    Unnamed (``message``) events carry an envelope; a named event goes through its
    transformer. Raises :class:`InvalidMessage` for a named event with no
    transformer, or a transformer that fails."""
    if event.event in ("message", ""):
        # The envelope's own id counts, not the SSE last-event-id buffer: that buffer persists
        # across events, so a control message without an id would inherit the previous event's.
        return decode(event.data, received_at, max_depth)
    fn = registry.get(event.event)
    if fn is None:
        raise InvalidMessage(f"named SSE event {event.event[:80]!r} has no transformer")
    try:
        backend = _decode_json(event.data) if event.data else {}
    except (ValueError, RecursionError):
        backend = {"data": event.data}
    if not isinstance(backend, dict):
        backend = {"data": backend}
    backend.setdefault("event", event.event)
    if event.id and "id" not in backend:
        backend["id"] = event.id
    try:
        envelope = fn(backend)
    except Exception as exc:  # noqa: BLE001 - user code: any failure is a counted protocol error
        raise InvalidMessage(f"transformer for {event.event!r} failed: {exc!r}"[:300]) from None
    if envelope is None:
        return None
    if not isinstance(envelope, Mapping):
        raise InvalidMessage(f"transformer for {event.event!r} returned {type(envelope).__name__}")
    return decode_object(envelope, received_at)
