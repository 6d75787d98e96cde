"""The fault switches of the reference backend, its refusals and its bad messages.

:class:`FaultSwitches` holds plain attributes: the facade sets them from any thread, the loop thread reads
them on every request and every write. The rest is pure.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional, Tuple, Union

from aiohttp import web

from ..engine import iso_now
from .wire import OP_BINARY, OP_TEXT, dumps, raw_frames, ws_frame

__all__ = [
    "BAD_KINDS",
    "CommandFault",
    "FaultSwitches",
    "Refusal",
    "ScriptedResponse",
    "bad_frames",
    "refusal_response",
]

#: Kinds of bad message :meth:`Backend.send_bad` can send.
BAD_KINDS = (
    "malformed_json",
    "non_object",
    "unknown_type",
    "wrong_field_types",
    "oversized",
    "deep_nesting",
    "huge_int",
    "nan",
    "binary",
    "invalid_utf8",
)

#: HTTP status and Retry-After seconds of a refused handshake.
#: an injected refusal: (HTTP status, Retry-After seconds, or a string sent as it is)
Refusal = Tuple[int, Union[float, str, None]]


@dataclass
class ScriptedResponse:
    """An exact answer for the next SSE request (see :meth:`Backend.sse_script`)."""

    chunks: List[bytes]
    status: int = 200
    content_type: Optional[str] = "text/event-stream"
    headers: Dict[str, str] = field(default_factory=dict)
    chunked: bool = True
    chunk_delay: float = 0.0
    abort: bool = False
    hold_open: bool = False


@dataclass(frozen=True)
class CommandFault:
    """How to answer one ``POST /commands`` instead of running it: HTTP ``status`` (with ``Retry-After``
    and an ``error`` text when given), or, with ``status`` None, a connection reset."""

    status: Optional[int] = None
    retry_after: Optional[float] = None
    error: Optional[str] = None

    @property
    def name(self) -> str:
        """What the command log calls it: ``"http <status>"`` or ``"reset"``."""
        return "reset" if self.status is None else f"http {self.status}"


class FaultSwitches:
    """Every fault switch, off by default. Set from any thread; read by the loop thread."""

    def __init__(self) -> None:
        self.refuse_ws: Optional[Refusal] = None
        self.refuse_sse: Optional[Refusal] = None
        self.silent = False
        self.delay = 0.0
        self.drop_after: Optional[int] = None
        self.accept_then_close: Optional[int] = None
        self.sse_scripts: Deque[ScriptedResponse] = deque()
        self.health: Dict[str, Any] = {"status": "healthy", "minimal": False, "services": {}, "http_status": 200}
        # command-level faults (Backend.faults); deques: appended from any thread, taken on the loop
        self.command_faults: Deque[CommandFault] = deque()
        self.answer_drops: Deque[bool] = deque()  # one per WebSocket answer to withhold: then drop?
        self.answer_delay = 0.0
        self._audible: Optional[asyncio.Event] = None  # set while not silent; HTTP answers wait on it

    def loop_started(self) -> None:
        """Loop thread, at each start: the loop's own event for HTTP answers held back by silence."""
        self._audible = asyncio.Event()
        if not self.silent:
            self._audible.set()

    def set_silent(self, silent: bool) -> None:
        """Loop thread (or any thread while the backend is stopped)."""
        self.silent = silent
        audible = self._audible
        if audible is not None:
            if silent:
                audible.clear()
            else:
                audible.set()

    def take_command_fault(self) -> Optional[CommandFault]:
        """Loop thread: the fault for this ``POST /commands``, if one is queued."""
        try:
            return self.command_faults.popleft()
        except IndexError:
            return None

    def take_answer_drop(self) -> Optional[bool]:
        """Loop thread: None to send this WebSocket command answer; else withhold it, and True: then
        drop the connection."""
        try:
            return self.answer_drops.popleft()
        except IndexError:
            return None

    async def until_audible(self) -> None:
        """Loop thread: return when the backend is not silent (at once when it is not)."""
        audible = self._audible
        if audible is not None and not audible.is_set():
            await audible.wait()


def refusal_response(refusal: Refusal, what: str, error: Optional[str] = None) -> web.Response:
    """An injected refusal: ``status`` with ``Retry-After`` when given and ``{"error": ...}`` (``error``,
    or a text naming ``what``)."""
    status, retry_after = refusal
    headers: Optional[Dict[str, str]] = None
    if isinstance(retry_after, str):  # sent as it is: an HTTP date, or a malformed value
        headers = {"Retry-After": retry_after}
    elif retry_after is not None:
        headers = {"Retry-After": str(int(retry_after) if float(retry_after).is_integer() else retry_after)}
    if status == 204:
        return web.Response(status=204, headers=headers)
    text = error if error is not None else f"{what} refused (fault injection)"
    return web.json_response({"error": text}, status=status, headers=headers)


def bad_frames(kind: str, size: int, depth: int) -> Tuple[bytes, Optional[bytes]]:
    """The WebSocket frame and SSE bytes (None: not on SSE) of one bad message of ``kind``."""
    if kind == "binary":
        return ws_frame(b"\x00\x01\x02\xffbinary", OP_BINARY), None
    if kind == "invalid_utf8":
        raw = b'{"type": "node_log", "data": {"bad": "\xff\xfe"}}'
        return ws_frame(raw, OP_TEXT), b"data: " + raw + b"\n\n"
    return raw_frames(_bad_text(kind, size, depth))


def _bad_text(kind: str, size: int, depth: int) -> str:
    if kind == "malformed_json":
        return '{"type": "node_log", "data": {"logs": ['
    if kind == "non_object":
        return "[1, 2, 3]"
    if kind == "unknown_type":
        return dumps({"type": "mystery_message", "timestamp": iso_now(), "data": {"x": 1}, "version": 1})
    if kind == "wrong_field_types":
        return dumps(
            {"id": 42, "type": "node_status_update", "timestamp": 7, "workflowId": ["wf-1"], "data": "running"}
        )
    if kind == "oversized":
        return dumps({"type": "node_log", "timestamp": iso_now(), "data": {"blob": "x" * size}})
    if kind == "deep_nesting":
        return '{"type": "node_log", "data": {"x": ' + "[" * depth + "]" * depth + "}}"
    if kind == "huge_int":
        return '{"type": "node_progress_update", "data": {"progress": {"current": ' + "9" * 5000 + ', "total": 1}}}'
    if kind == "nan":
        return '{"type": "node_progress_update", "data": {"progress": {"current": NaN, "total": 1}}}'
    raise ValueError(f"unknown kind {kind!r}; expected one of {BAD_KINDS}")
