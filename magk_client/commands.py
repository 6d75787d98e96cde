"""The command pipeline's decisions: a pure table of pending commands (no threads, no sockets, no
clock of its own: every method takes ``now``, ``time.monotonic()`` seconds).

A command is a request with an idempotency key, its ``requestId`` (docs/protocol.rst, Commands).
The table decides when each pending command is sent, on which route, when it is sent again, when it
times out, and what an answer is worth:

- **Routes.** While the link is up on the WebSocket, commands travel on it as ``workflow_event``
  envelopes; while it is up on SSE they go as ``POST /commands`` (the answer is the reply body).
  While the link is down they wait, and go out once it is up again.
- **Lost answers.** Each time the link goes down or comes up (a reconnect, a transport switch) a
  new *epoch* begins. A command sent on the WebSocket in an older epoch whose answer has not come
  cannot be answered any more: it is sent again, with the same request id, once the link is up and
  ``retry_delay`` after its last send, so the server (which answers a repeated request id from its
  store) runs it once. A failed ``POST`` that may be retried (network error, 5xx) is sent again the
  same way. At most ``max_retries`` resends; then the command fails.
- **Answers.** An answer completes the command with its request id. An answer that matches no
  pending command is dropped and counted: *unknown* (never seen), *duplicate* (already answered),
  *late* (after its command timed out or failed) or *missing* (no request id) -- docs/faults.rst
  row 23.

The table holds an opaque ``handle`` per command (the adapter's ``Future``); it never calls it.
"""

from __future__ import annotations

import itertools
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .models import CommandResponse, StrEnum

__all__ = [
    "COMMANDS",
    "NODE_COMMANDS",
    "CommandStats",
    "CommandTable",
    "PendingCommand",
    "Route",
    "command_envelope",
    "command_payload",
    "new_request_id",
    "parse_command_response",
]

#: The commands of protocol v1.
COMMANDS = (
    "start_workflow",
    "stop_workflow",
    "pause_workflow",
    "resume_workflow",
    "restart_node",
    "skip_node",
    "update_config",
)
#: The commands that name a node (``nodeId`` required).
NODE_COMMANDS = ("restart_node", "skip_node")

#: How many finished request ids are remembered to tell a duplicate or late answer from an unknown one.
FINISHED_MEMORY = 4096


class Route(StrEnum):
    """How a command travels."""

    WEBSOCKET = "websocket"
    HTTP = "http"


def new_request_id() -> str:
    """A request id unique across processes and restarts (the server keeps answers by it)."""
    return f"req-{uuid.uuid4().hex}"


def command_payload(
    command: str,
    workflow_id: str,
    request_id: str,
    node_id: Optional[str] = None,
    data: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """The wire payload of a command (the body of ``POST /commands``)."""
    payload: Dict[str, Any] = {"command": command, "workflowId": workflow_id}
    if node_id is not None:
        payload["nodeId"] = node_id
    if data is not None:
        payload["data"] = dict(data)
    payload["requestId"] = request_id
    return payload


def command_envelope(payload: Mapping[str, Any]) -> Dict[str, Any]:
    """The WebSocket envelope of a command payload: a ``workflow_event`` whose id is the request id."""
    return {
        "id": payload["requestId"],
        "type": "workflow_event",
        "workflowId": payload["workflowId"],
        "data": {"type": "command", "command": dict(payload)},
    }


def parse_command_response(obj: Any) -> CommandResponse:
    """Check and convert a ``response`` object (pure). Raises ``ValueError`` saying what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("a command response must be a JSON object")
    request_id = obj.get("requestId")
    if not isinstance(request_id, str) or not request_id:
        raise ValueError("the command response has no requestId")
    success = obj.get("success")
    if not isinstance(success, bool):
        raise ValueError("the command response's 'success' is not a boolean")
    command = obj.get("command")
    error = obj.get("error")
    data = obj.get("data")
    return CommandResponse(
        request_id=request_id,
        command=command if isinstance(command, str) else "",
        success=success,
        error=error if isinstance(error, str) else (None if error is None else str(error)),
        data=data if isinstance(data, dict) else None,
    )


@dataclass
class PendingCommand:
    """One command waiting for its answer (mutable; owned by a :class:`CommandTable`)."""

    request_id: str
    command: str
    payload: Dict[str, Any]
    created_at: float
    deadline: float
    timeout: float
    handle: Any = None
    #: sends made so far (the first one included)
    attempts: int = 0
    route: Optional[Route] = None
    epoch: int = -1
    sent_at: Optional[float] = None
    #: when to send (again); None while an answer is awaited
    next_send_at: Optional[float] = 0.0
    #: the error of the last failed send, if any
    last_error: Optional[BaseException] = None
    #: a WebSocket send that never left: sent again at the next link change, not counted
    unsent: bool = False
    order: int = 0


@dataclass(frozen=True)
class CommandStats:
    """Counters of a command table (an immutable snapshot)."""

    pending: int = 0
    sent: int = 0
    resent: int = 0
    answered: int = 0
    timed_out: int = 0
    failed: int = 0
    unknown_answers: int = 0
    duplicate_answers: int = 0
    late_answers: int = 0
    missing_id_answers: int = 0

    @property
    def dropped_answers(self) -> int:
        """Answers that matched no pending command (unknown + duplicate + late + missing id)."""
        return self.unknown_answers + self.duplicate_answers + self.late_answers + self.missing_id_answers


class CommandTable:
    """Pending commands, keyed by request id; decides sends, resends, timeouts (pure).

    Not thread-safe: the adapter calls it under its own lock.
    """

    def __init__(self, max_retries: int, retry_delay: float, finished_memory: int = FINISHED_MEMORY) -> None:
        if max_retries < 0 or retry_delay < 0:
            raise ValueError("max_retries and retry_delay must be >= 0")
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self._pending: Dict[str, PendingCommand] = {}
        self._finished: OrderedDict[str, str] = OrderedDict()  # request id -> answered | expired | failed
        self._finished_memory = finished_memory
        self._order = itertools.count()
        self.epoch = 0
        #: the route while the link is up, None while it is down
        self.route: Optional[Route] = None
        self._counts: Dict[str, int] = dict.fromkeys(
            ("sent", "resent", "answered", "timed_out", "failed", "unknown", "duplicate", "late", "missing"), 0
        )

    # -- reading ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._pending

    def get(self, request_id: str) -> Optional[PendingCommand]:
        return self._pending.get(request_id)

    def stats(self) -> CommandStats:
        c = self._counts
        return CommandStats(
            pending=len(self._pending),
            sent=c["sent"],
            resent=c["resent"],
            answered=c["answered"],
            timed_out=c["timed_out"],
            failed=c["failed"],
            unknown_answers=c["unknown"],
            duplicate_answers=c["duplicate"],
            late_answers=c["late"],
            missing_id_answers=c["missing"],
        )

    def next_wakeup(self, now: float) -> Optional[float]:
        """The earliest time something is due (a deadline, or a send while the link is up)."""
        times = [cmd.deadline for cmd in self._pending.values()]
        if self.route is not None:
            times.extend(cmd.next_send_at for cmd in self._pending.values() if cmd.next_send_at is not None)
        return min(times) if times else None

    # -- adding and sending ------------------------------------------------------------------------

    def add(
        self,
        request_id: str,
        command: str,
        payload: Dict[str, Any],
        now: float,
        timeout: float,
        handle: Any = None,
    ) -> PendingCommand:
        """Register a command to send as soon as the link is up."""
        if request_id in self._pending:
            raise ValueError(f"request id {request_id!r} is already pending")
        cmd = PendingCommand(
            request_id=request_id,
            command=command,
            payload=payload,
            created_at=now,
            deadline=now + timeout,
            timeout=timeout,
            handle=handle,
            next_send_at=now,
            order=next(self._order),
        )
        self._pending[request_id] = cmd
        return cmd

    def take_due(self, now: float) -> List[Tuple[PendingCommand, Route]]:
        """The commands to send now, oldest first, each marked as sent on the current route."""
        route = self.route
        if route is None:
            return []
        due = [
            cmd
            for cmd in self._pending.values()
            if cmd.next_send_at is not None and cmd.next_send_at <= now and cmd.deadline > now
        ]
        due.sort(key=lambda cmd: cmd.order)
        for cmd in due:
            if cmd.attempts:
                self._counts["resent"] += 1
            self._counts["sent"] += 1
            cmd.attempts += 1
            cmd.route = route
            cmd.epoch = self.epoch
            cmd.sent_at = now
            cmd.next_send_at = None
        return [(cmd, route) for cmd in due]

    # -- the link ----------------------------------------------------------------------------------

    def link_up(self, route: Route, now: float) -> List[PendingCommand]:
        """The link (re)connected on ``route``: a new epoch. Returns commands that failed (answer lost
        and no resend left); they are removed."""
        failed = self._lose_websocket_answers(now)
        self.epoch += 1
        self.route = route
        return failed

    def link_down(self, now: float) -> List[PendingCommand]:
        """The link is down: answers of WebSocket commands in flight are lost. Returns the commands that
        failed (no resend left); they are removed."""
        failed = self._lose_websocket_answers(now)
        if self.route is not None:
            self.epoch += 1
        self.route = None
        return failed

    def _lose_websocket_answers(self, now: float) -> List[PendingCommand]:
        failed: List[PendingCommand] = []
        for cmd in list(self._pending.values()):
            if cmd.next_send_at is None and cmd.route is Route.WEBSOCKET:
                if cmd.unsent:
                    cmd.unsent = False
                    cmd.next_send_at = now
                elif cmd.attempts > self.max_retries:
                    failed.append(self._finish(cmd, "failed"))
                else:
                    last = now if cmd.sent_at is None else cmd.sent_at
                    cmd.next_send_at = max(now, last + self.retry_delay)
        return failed

    def on_send_failed(self, request_id: str, now: float, error: BaseException, *, retryable: bool) -> Optional[
        PendingCommand
    ]:
        """A send (or a ``POST``) failed. A retryable failure is sent again ``retry_delay`` later if a
        resend is left; otherwise the command is removed and returned (to fail it with ``error``)."""
        cmd = self._pending.get(request_id)
        if cmd is None:
            return None
        cmd.last_error = error
        if retryable and cmd.attempts <= self.max_retries:
            cmd.next_send_at = now + self.retry_delay
            return None
        return self._finish(cmd, "failed")

    def unsend(self, request_id: str) -> None:
        """A WebSocket send that did not leave (the link went away first; nothing reached the server):
        sent again, without counting as an attempt, as soon as the link changes (the notice that it
        went away is on its way)."""
        cmd = self._pending.get(request_id)
        if cmd is not None and cmd.next_send_at is None and cmd.attempts:
            cmd.attempts -= 1
            self._counts["sent"] -= 1
            cmd.unsent = True

    # -- completing --------------------------------------------------------------------------------

    def on_answer(self, request_id: Optional[str]) -> Optional[PendingCommand]:
        """An answer arrived: the command it completes (removed), or None when it matches none (the
        answer is dropped and counted as unknown, duplicate, late or missing id)."""
        if not request_id:
            self._counts["missing"] += 1
            return None
        cmd = self._pending.get(request_id)
        if cmd is not None:
            self._counts["answered"] += 1
            return self._finish(cmd, "answered", count=False)
        outcome = self._finished.get(request_id)
        if outcome is None:
            self._counts["unknown"] += 1
        elif outcome == "answered":
            self._counts["duplicate"] += 1
        else:
            self._counts["late"] += 1
        return None

    def expire(self, now: float) -> List[PendingCommand]:
        """Remove and return the commands whose deadline has passed."""
        expired = [cmd for cmd in self._pending.values() if cmd.deadline <= now]
        for cmd in expired:
            self._finish(cmd, "expired")
        return expired

    def remove(self, request_id: str) -> Optional[PendingCommand]:
        """Remove a command that failed for a reason of the caller's (counted as failed)."""
        cmd = self._pending.get(request_id)
        return None if cmd is None else self._finish(cmd, "failed")

    def fail_all(self) -> List[PendingCommand]:
        """Remove and return every pending command (a disconnect)."""
        return [self._finish(cmd, "failed") for cmd in sorted(self._pending.values(), key=lambda c: c.order)]

    def _finish(self, cmd: PendingCommand, outcome: str, *, count: bool = True) -> PendingCommand:
        del self._pending[cmd.request_id]
        if count:
            self._counts["timed_out" if outcome == "expired" else "failed"] += 1
        self._finished[cmd.request_id] = outcome
        while len(self._finished) > self._finished_memory:
            self._finished.popitem(last=False)
        return cmd
