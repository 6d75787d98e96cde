"""What goes on the wire: JSON text, SSE frames, server-to-client WebSocket frames, control messages.

Pure functions; any thread.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Dict, List, Optional, Tuple, Union

from ..engine import iso_now

OP_TEXT = 0x1
OP_BINARY = 0x2


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def sse_frame(text: str, event_id: Optional[str] = None) -> bytes:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    head = f"id: {event_id}\n" if event_id is not None else ""
    return (head + "".join(f"data: {line}\n" for line in lines) + "\n").encode("utf-8")


def ws_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One unmasked, unfragmented server-to-client WebSocket frame (RFC 6455 section 5.2).

    aiohttp does the handshake, reading, pings and the close handshake; only the data frames of the
    hot path are framed here so that a batch of them goes out in one ``transport.write``.
    """
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, n))
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return header + payload


def text_frame(text: str) -> bytes:
    return ws_frame(text.encode("utf-8"), OP_TEXT)


def raw_frames(text: Union[str, bytes], sse_bytes: Optional[bytes] = None) -> Tuple[bytes, bytes]:
    """``text`` as it is: a WebSocket text frame (bytes: a binary frame) and SSE ``data:`` lines of it, or
    exactly ``sse_bytes`` when given."""
    if isinstance(text, bytes):
        ws_item = ws_frame(text, OP_BINARY)
        sse_item = sse_bytes if sse_bytes is not None else sse_frame(text.decode("utf-8", "replace"))
    else:
        ws_item = text_frame(text)
        sse_item = sse_bytes if sse_bytes is not None else sse_frame(text)
    return ws_item, sse_item


def control(msg_type: str, data: Dict[str, Any], workflow_id: Optional[str] = None) -> Dict[str, Any]:
    """A message that is not an event: no id, not logged."""
    msg: Dict[str, Any] = {"type": msg_type, "timestamp": iso_now()}
    if workflow_id is not None:
        msg["workflowId"] = workflow_id
    msg["data"] = data
    return msg


def command_response(response: Dict[str, Any], workflow_id: Optional[str]) -> Dict[str, Any]:
    """The ``workflow_event`` envelope that carries a command response to a connection."""
    return control("workflow_event", {"type": "command_response", "response": response}, workflow_id)


def ack_message(ids: List[str]) -> Dict[str, Any]:
    """The acknowledgement of client message ``ids`` (docs/protocol.rst, "Acknowledgements")."""
    return control("ack", {"ids": ids})


def subscription_error(data: Dict[str, Any]) -> Dict[str, Any]:
    return control("subscription_error", data)


def pong_for(msg: Dict[str, Any]) -> Dict[str, Any]:
    """The ``pong`` that answers a client's ``ping``."""
    data = msg.get("data")
    ping_id = data.get("pingId") if isinstance(data, dict) else None
    return control("pong", {"pingId": ping_id})
