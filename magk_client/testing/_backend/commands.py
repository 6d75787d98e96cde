"""Workflow commands: parsing a payload or an envelope, and running it once per request id.

Parsing is pure. :class:`CommandDesk` runs on the loop thread (or the caller's thread while the backend is
stopped); it is the one place every command passes, whatever transport brought it.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from ..engine import Engine, EngineCommandRejected
from .records import CommandRecord, Records

__all__ = ["ROUTES", "BadPayload", "Command", "CommandDesk", "command_of", "is_command_envelope", "parse_command"]

#: How a command reaches the desk: a WebSocket envelope, ``POST /commands``, an envelope on
#: ``POST /messages``, or ``Backend.execute_command``.
ROUTES = ("ws", "commands", "messages", "python")

logger = logging.getLogger("magk_client.testing.backend")


class BadPayload(ValueError):
    """A malformed command payload or message (HTTP 400)."""


@dataclass
class Command:
    """A well-formed command; ``payload`` is the command object as received (None: built in Python)."""

    command: str
    workflow_id: str
    node_id: Optional[str]
    data: Optional[Dict[str, Any]]
    request_id: Optional[str]
    payload: Optional[Dict[str, Any]] = None

    def as_payload(self) -> Dict[str, Any]:
        if self.payload is not None:
            return dict(self.payload)
        fields = {"command": self.command, "workflowId": self.workflow_id, "nodeId": self.node_id,
                  "data": self.data, "requestId": self.request_id}
        return {k: v for k, v in fields.items() if v is not None}


def parse_command(obj: Any, fallback_request_id: Optional[str] = None) -> Command:
    if not isinstance(obj, dict):
        raise BadPayload("a command payload must be a JSON object")
    command = obj.get("command")
    if not isinstance(command, str) or not command:
        raise BadPayload("'command' must be a non-empty string")
    workflow_id = obj.get("workflowId")
    if not isinstance(workflow_id, str) or not workflow_id:
        raise BadPayload("'workflowId' must be a non-empty string")
    node_id = obj.get("nodeId")
    if node_id is not None and not isinstance(node_id, str):
        raise BadPayload("'nodeId' must be a string")
    data = obj.get("data")
    if data is not None and not isinstance(data, dict):
        raise BadPayload("'data' must be an object")
    request_id = obj.get("requestId", fallback_request_id)
    if request_id is not None and (not isinstance(request_id, str) or not request_id):
        raise BadPayload("'requestId' must be a non-empty string")
    return Command(command, workflow_id, node_id, data, request_id, dict(obj))


def is_command_envelope(msg: Dict[str, Any]) -> bool:
    """Whether ``msg`` is a ``workflow_event`` that carries a command (well-formed or not)."""
    data = msg.get("data")
    return msg.get("type") == "workflow_event" and isinstance(data, dict) and data.get("type") == "command"


def command_of(envelope: Dict[str, Any]) -> Command:
    """The command of a command envelope (see :func:`is_command_envelope`); BadPayload when malformed."""
    data = envelope.get("data")
    envelope_id = envelope.get("id")
    return parse_command(
        data.get("command") if isinstance(data, dict) else None,
        envelope_id if isinstance(envelope_id, str) else None,
    )


class CommandDesk:
    """Runs commands on the engine and answers a repeated request id with the stored response; records
    each command it takes in ``Records.command_log``.

    ``capacity()`` is read at each command: how many responses are kept for repeats.
    """

    def __init__(self, engine: Engine, records: Records, capacity: Callable[[], int]) -> None:
        self._engine = engine
        self._records = records
        self._capacity = capacity
        self._responses: OrderedDict[str, Dict[str, Any]] = OrderedDict()
        self._generated_ids = itertools.count(1)

    def run(self, cmd: Command, route: str, connection_id: Optional[str] = None) -> Dict[str, Any]:
        """The command response object; runs the command unless its request id was answered already.

        ``route`` is one of :data:`ROUTES`."""
        received_at = time.monotonic()
        rid = self._request_id(cmd)
        stored = self._responses.get(rid)
        if stored is not None:
            logger.debug("command %s repeated over %s: answering again without running it", rid, route)
            self._record(cmd, route, received_at, connection_id, replay=True, success=stored.get("success"))
            return dict(stored)
        response: Dict[str, Any] = {"requestId": rid, "command": cmd.command}
        try:
            result = self._engine.execute(cmd.command, cmd.workflow_id, cmd.node_id, cmd.data)
        except EngineCommandRejected as exc:
            response["success"] = False
            response["error"] = str(exc)
        else:
            response["success"] = True
            response["data"] = result
        self._responses[rid] = response
        while len(self._responses) > self._capacity():
            self._responses.popitem(last=False)
        self._record(cmd, route, received_at, connection_id, replay=False, success=response["success"])
        return dict(response)

    def refuse(self, cmd: Command, route: str, fault: str) -> None:
        """Record a command that a fault switch answers (``fault``: ``"http 503"``, ``"reset"``) instead
        of running it."""
        self._record(cmd, route, time.monotonic(), None, replay=False, success=None, fault=fault)

    def _request_id(self, cmd: Command) -> str:
        if cmd.request_id is None:
            cmd.request_id = f"srv-{next(self._generated_ids)}"
        return cmd.request_id

    def _record(
        self,
        cmd: Command,
        route: str,
        received_at: float,
        connection_id: Optional[str],
        *,
        replay: bool,
        success: Any,
        fault: Optional[str] = None,
    ) -> None:
        self._records.command(
            CommandRecord(
                request_id=self._request_id(cmd),
                command=cmd.command,
                workflow_id=cmd.workflow_id,
                route=route,
                received_at=received_at,
                replay=replay,
                payload=cmd.as_payload(),
                connection_id=connection_id,
                success=success if isinstance(success, bool) else None,
                fault=fault,
            )
        )
