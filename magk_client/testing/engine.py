"""The simulated workflow engine of the reference backend.

A workflow is a list of named nodes. Running it emits, through the ``emit`` callback the backend gives,
the event sequence of docs/protocol.rst::

    workflow_event {type: workflow_started}
    for each node:
        node_status_update {status: running}
        node_progress_update x progress_steps
        node_log, node_metadata, node_result
        node_status_update {status: completed}
    workflow_event {type: workflow_completed}

The ``data`` of the node events (progress, log, metadata, result, error) is built by
:mod:`.node_payloads`, in the shapes of the protocol's *Node payloads*. A node named as the workflow's
``fail_node`` fails half-way: ``node_error``, ``node_status_update`` ``error`` and ``workflow_event``
``workflow_failed``. Everything runs on the backend's event loop; the methods here must be called
from it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from ..commands import COMMANDS
from . import node_payloads

__all__ = ["COMMANDS", "Engine", "EngineCommandRejected", "Workflow", "iso_now"]

#: Workflow states. ``idle`` before the first run; ``running`` and ``paused`` while a run is live.
STATES = ("idle", "running", "paused", "completed", "failed", "stopped")

Emit = Callable[[str, str, Optional[str], Dict[str, Any]], None]


class EngineCommandRejected(Exception):
    """A well-formed command the engine cannot carry out; the backend answers it with ``success: false``.

    Server-side only: the client's :class:`magk_client.errors.CommandError` is a different thing (a
    command that failed or timed out, as the client sees it).
    """


@dataclass
class Workflow:
    workflow_id: str
    nodes: List[str]
    fail_node: Optional[str] = None
    progress_steps: int = 3
    config: Dict[str, Any] = field(default_factory=dict)
    state: str = "idle"
    current: int = 0
    node_status: Dict[str, str] = field(default_factory=dict)
    skip: Set[str] = field(default_factory=set)
    task: Optional[asyncio.Task[None]] = None
    resume_waiter: Optional[asyncio.Future[None]] = None
    started_at: float = 0.0

    def snapshot(self) -> Dict[str, Any]:
        return {
            "workflowId": self.workflow_id,
            "state": self.state,
            "nodes": list(self.nodes),
            "nodeStatus": dict(self.node_status),
            "config": dict(self.config),
        }


class Engine:
    """Runs workflows on the current event loop, reporting events through ``emit``."""

    def __init__(
        self,
        emit: Emit,
        pace: Callable[[], float],
        on_change: Optional[Callable[[], None]] = None,
    ) -> None:
        self._emit = emit
        self._pace = pace
        self._on_change = on_change
        self.workflows: Dict[str, Workflow] = {}

    # -- definition ------------------------------------------------------------------------------

    def add_workflow(
        self,
        workflow_id: str,
        nodes: Sequence[str],
        fail_node: Optional[str] = None,
        progress_steps: int = 3,
    ) -> Workflow:
        if not isinstance(workflow_id, str) or not workflow_id:
            raise ValueError("workflow_id must be a non-empty string")
        node_list = [str(n) for n in nodes]
        if not node_list:
            raise ValueError("a workflow needs at least one node")
        if len(set(node_list)) != len(node_list):
            raise ValueError("node names must be unique")
        if fail_node is not None and fail_node not in node_list:
            raise ValueError(f"fail_node {fail_node!r} is not a node of {workflow_id!r}")
        if progress_steps < 1:
            raise ValueError("progress_steps must be >= 1")
        old = self.workflows.get(workflow_id)
        if old is not None and old.state in ("running", "paused"):
            raise ValueError(f"workflow {workflow_id!r} is running")
        wf = Workflow(workflow_id, node_list, fail_node, progress_steps)
        wf.node_status = {n: "pending" for n in node_list}
        self.workflows[workflow_id] = wf
        return wf

    # -- loop lifecycle (backend start/stop/restart) -------------------------------------------

    def attach(self) -> None:
        """(Re)start the runs that were live when the engine was detached, from their current node."""
        for wf in self.workflows.values():
            if wf.state in ("running", "paused") and wf.task is None:
                self._spawn(wf, wf.current)

    def detach(self) -> None:
        """Cancel the run tasks, keeping every workflow's state, so :meth:`attach` can carry on."""
        for wf in self.workflows.values():
            if wf.task is not None:
                wf.task.cancel()
                wf.task = None
            wf.resume_waiter = None

    # -- commands ----------------------------------------------------------------------------------

    def execute(
        self,
        command: str,
        workflow_id: str,
        node_id: Optional[str] = None,
        data: Optional[Dict[str, Any]] = None,
    ) -> Dict[str, Any]:
        """Carry out one command; returns the response ``data``.

        Raises :class:`EngineCommandRejected` for an unknown command, workflow or node, or a wrong state.
        """
        if command not in COMMANDS:
            raise EngineCommandRejected(f"unknown command {command!r}; expected one of: {', '.join(COMMANDS)}")
        wf = self.workflows.get(workflow_id)
        if wf is None:
            raise EngineCommandRejected(f"unknown workflow {workflow_id!r}")
        handler = getattr(self, "_cmd_" + command)
        result: Dict[str, Any] = handler(wf, node_id, data or {})
        self._changed()
        return result

    def _cmd_start_workflow(
        self, wf: Workflow, node_id: Optional[str], data: Dict[str, Any]
    ) -> Dict[str, Any]:
        if wf.state in ("running", "paused"):
            raise EngineCommandRejected(f"workflow {wf.workflow_id!r} is already {wf.state}")
        wf.node_status = {n: "pending" for n in wf.nodes}
        wf.skip.clear()
        wf.state = "running"
        wf.current = 0
        wf.started_at = time.monotonic()
        self._emit(
            "workflow_event", wf.workflow_id, None, {"type": "workflow_started", "nodes": list(wf.nodes)}
        )
        self._spawn(wf, 0)
        return self._answer(wf)

    def _cmd_pause_workflow(
        self, wf: Workflow, node_id: Optional[str], data: Dict[str, Any]
    ) -> Dict[str, Any]:
        self._transition(wf, "pause", "running", "paused", "workflow_paused")
        return self._answer(wf)

    def _transition(self, wf: Workflow, verb: str, before: str, after: str, event: str) -> None:
        """Pause or resume: the workflow and its current node go from ``before`` to ``after``."""
        if wf.state != before:
            raise EngineCommandRejected(f"cannot {verb} workflow {wf.workflow_id!r}: it is {wf.state}, not {before}")
        wf.state = after
        node = self._current_node(wf)
        payload: Dict[str, Any] = {"type": event}
        if node is not None:
            payload["nodeId"] = node
        self._emit("workflow_event", wf.workflow_id, node, payload)
        if node is not None and wf.node_status.get(node) == before:
            wf.node_status[node] = after
            self._emit("node_status_update", wf.workflow_id, node, {"status": after})

    def _cmd_resume_workflow(
        self, wf: Workflow, node_id: Optional[str], data: Dict[str, Any]
    ) -> Dict[str, Any]:
        self._transition(wf, "resume", "paused", "running", "workflow_resumed")
        waiter = wf.resume_waiter
        wf.resume_waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return self._answer(wf)

    def _cmd_stop_workflow(
        self, wf: Workflow, node_id: Optional[str], data: Dict[str, Any]
    ) -> Dict[str, Any]:
        if wf.state not in ("running", "paused"):
            raise EngineCommandRejected(f"cannot stop workflow {wf.workflow_id!r}: it is {wf.state}, not running")
        self._cancel(wf)
        wf.state = "stopped"
        payload: Dict[str, Any] = {"type": "workflow_stopped"}
        node = self._current_node(wf)
        if node is not None:
            payload["nodeId"] = node
        self._emit("workflow_event", wf.workflow_id, None, payload)
        return self._answer(wf)

    def _cmd_restart_node(self, wf: Workflow, node_id: Optional[str], data: Dict[str, Any]) -> Dict[str, Any]:
        index = self._node_index(wf, node_id)
        node = wf.nodes[index]
        self._cancel(wf)
        if wf.state not in ("running", "paused"):
            wf.state = "running"
            wf.started_at = time.monotonic()
            self._emit(
                "workflow_event",
                wf.workflow_id,
                None,
                {"type": "workflow_started", "nodes": list(wf.nodes), "restartedNode": node},
            )
        for later in wf.nodes[index:]:
            wf.node_status[later] = "pending"
            wf.skip.discard(later)
        wf.current = index
        self._emit("node_status_update", wf.workflow_id, node, {"status": "pending", "restarted": True})
        self._spawn(wf, index)
        return self._answer(wf, node)

    def _cmd_skip_node(self, wf: Workflow, node_id: Optional[str], data: Dict[str, Any]) -> Dict[str, Any]:
        index = self._node_index(wf, node_id)
        node = wf.nodes[index]
        if wf.state not in ("running", "paused"):
            raise EngineCommandRejected(
                f"cannot skip node {node!r}: workflow {wf.workflow_id!r} is {wf.state}, not running"
            )
        if index < wf.current or wf.node_status.get(node) in ("completed", "error", "skipped"):
            raise EngineCommandRejected(f"cannot skip node {node!r}: it has already finished")
        if index == wf.current:
            self._cancel(wf)
            self._mark_skipped(wf, node)
            wf.current = index + 1
            self._spawn(wf, index + 1)
        else:
            wf.skip.add(node)
        return self._answer(wf, node)

    def _cmd_update_config(
        self, wf: Workflow, node_id: Optional[str], data: Dict[str, Any]
    ) -> Dict[str, Any]:
        if node_id is not None:
            self._node_index(wf, node_id)
        if "failNode" in data:
            fail = data["failNode"]
            if fail is not None and fail not in wf.nodes:
                raise EngineCommandRejected(f"failNode {fail!r} is not a node of {wf.workflow_id!r}")
            wf.fail_node = fail
        if "progressSteps" in data:
            steps = data["progressSteps"]
            if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
                raise EngineCommandRejected("progressSteps must be a positive integer")
            wf.progress_steps = steps
        if node_id is not None:
            node_cfg = wf.config.setdefault("nodes", {})
            node_cfg.setdefault(node_id, {}).update(data)
        else:
            wf.config.update(data)
        payload: Dict[str, Any] = {"type": "config_updated", "config": dict(data)}
        if node_id is not None:
            payload["nodeId"] = node_id
        self._emit("workflow_event", wf.workflow_id, node_id, payload)
        answer = self._answer(wf, node_id)
        answer["config"] = dict(wf.config)
        return answer

    # -- helpers -----------------------------------------------------------------------------------

    @staticmethod
    def _answer(wf: Workflow, node: Optional[str] = None) -> Dict[str, Any]:
        out: Dict[str, Any] = {"workflowId": wf.workflow_id, "state": wf.state}
        if node is not None:
            out["nodeId"] = node
        return out

    @staticmethod
    def _current_node(wf: Workflow) -> Optional[str]:
        return wf.nodes[wf.current] if 0 <= wf.current < len(wf.nodes) else None

    @staticmethod
    def _node_index(wf: Workflow, node_id: Optional[str]) -> int:
        if node_id is None:
            raise EngineCommandRejected("this command needs a nodeId")
        try:
            return wf.nodes.index(node_id)
        except ValueError:
            raise EngineCommandRejected(f"unknown node {node_id!r} in workflow {wf.workflow_id!r}") from None

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def _cancel(self, wf: Workflow) -> None:
        if wf.task is not None:
            wf.task.cancel()
            wf.task = None
        waiter = wf.resume_waiter
        wf.resume_waiter = None
        if waiter is not None and not waiter.done():
            waiter.cancel()

    def _spawn(self, wf: Workflow, start: int) -> None:
        wf.task = asyncio.get_running_loop().create_task(self._run(wf, start))

    def _mark_skipped(self, wf: Workflow, node: str) -> None:
        wf.node_status[node] = "skipped"
        self._emit("node_status_update", wf.workflow_id, node, {"status": "completed", "skipped": True})

    async def _step(self, wf: Workflow) -> None:
        """Wait one pace, then for as long as the workflow is paused."""
        await asyncio.sleep(self._pace())
        while wf.state == "paused":
            waiter = asyncio.get_running_loop().create_future()
            wf.resume_waiter = waiter
            await waiter

    async def _run(self, wf: Workflow, start: int) -> None:
        index = start
        while index < len(wf.nodes):
            wf.current = index
            node = wf.nodes[index]
            await self._step(wf)
            if node in wf.skip:
                wf.skip.discard(node)
                self._mark_skipped(wf, node)
                index += 1
                continue
            if not await self._run_node(wf, node):
                wf.state = "failed"
                wf.task = None
                self._emit(
                    "workflow_event",
                    wf.workflow_id,
                    None,
                    {"type": "workflow_failed", "nodeId": node, "error": f"node {node} failed"},
                )
                self._changed()
                return
            index += 1
        await self._step(wf)
        wf.current = len(wf.nodes)
        wf.state = "completed"
        wf.task = None
        duration = int((time.monotonic() - wf.started_at) * 1000)
        self._emit(
            "workflow_event", wf.workflow_id, None, {"type": "workflow_completed", "durationMs": duration}
        )
        self._changed()

    async def _run_node(self, wf: Workflow, node: str) -> bool:
        """Run one node; the payload shapes are :mod:`.node_payloads`'s. False if it failed."""
        emit = self._emit
        wid = wf.workflow_id
        began = time.monotonic()
        started = time.time()
        wf.node_status[node] = "running"
        emit("node_status_update", wid, node, {"status": "running"})
        steps = wf.progress_steps
        failing = node == wf.fail_node
        last = max(1, steps // 2) if failing else steps
        for i in range(1, last + 1):
            await self._step(wf)
            emit("node_progress_update", wid, node, node_payloads.progress(node, i, steps, started, time.time()))
        await self._step(wf)
        if failing:
            emit("node_log", wid, node, node_payloads.failure_logs(node, last, steps, time.time()))
            await self._step(wf)
            emit("node_error", wid, node, node_payloads.error(node, last, steps, time.time()))
            await self._step(wf)
            wf.node_status[node] = "error"
            emit("node_status_update", wid, node, {"status": "error"})
            return False
        index = wf.nodes.index(node)
        rows = 100 * (index + 1)
        emit("node_log", wid, node, node_payloads.success_logs(node, rows, time.time()))
        await self._step(wf)
        elapsed = time.monotonic() - began
        emit("node_metadata", wid, node, node_payloads.metadata(wf.nodes, index, rows, elapsed, time.time()))
        await self._step(wf)
        emit("node_result", wid, node, node_payloads.result(node, rows))
        await self._step(wf)
        wf.node_status[node] = "completed"
        emit("node_status_update", wid, node, {"status": "completed"})
        self._changed()
        return True


_second_cache: Tuple[int, str] = (-1, "")


def iso_now() -> str:
    """The current UTC time as ISO-8601 with milliseconds and a ``Z``: ``2026-11-26T10:00:00.000Z``."""
    global _second_cache
    now = time.time()
    second = int(now)
    cache = _second_cache
    if cache[0] != second:
        cache = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        _second_cache = cache
    return f"{cache[1]}.{int((now - second) * 1000):03d}Z"
