"""``integration.workflow(id)`` and ``integration.node(id, workflow_id)``: the seed's
``useWorkflowRealtime`` / ``useNodeRealtime`` as context managers.

Entering subscribes, leaving unsubscribes (also when the body raises). While subscribed the
handle shows the live state from the integration's store, and a workflow handle can send the
workflow's commands and wait for the run to end::

    with integration.workflow("wf-1") as wf:
        wf.start()
        result = wf.wait_until_complete(timeout=60)   # WorkflowResult: status, nodes, event
        print(result.status, {n: s.status for n, s in result.nodes.items()})

Threads: the integration calls :meth:`WorkflowRealtime._on_workflow_event` and ``_wake`` on the
service's dispatcher thread; they only update the run's state under the handle's condition and
notify it. Every public method may be called from any thread; the blocking ones (commands,
``wait_until_complete``) not from the dispatcher (a callback or a store listener fed by the
integration), where they would wait for themselves.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping, Optional

from .errors import CommandTimeout, ConfigError, MagkError, NotConnectedError, WorkflowWaitTimeout
from .events import WorkflowEvent
from .integration_sync import Interest
from .models import CommandResponse
from .node_state import NodeExecutionState

if TYPE_CHECKING:
    from .factories import WorkflowController
    from .integration import RealtimeIntegration

__all__ = ["NodeRealtime", "WorkflowRealtime", "WorkflowResult", "WorkflowRun"]

#: workflow event -> the status it ends the run with
TERMINAL_EVENTS: Mapping[str, str] = MappingProxyType(
    {"workflow_completed": "completed", "workflow_failed": "failed", "workflow_stopped": "stopped"}
)
_STATUS_EVENTS = {"workflow_started": "running", "workflow_paused": "paused", "workflow_resumed": "running"}
_NO_NODES: Mapping[str, NodeExecutionState] = MappingProxyType({})


@dataclass(frozen=True)
class WorkflowResult:
    """How a workflow run ended: ``status`` is ``completed``, ``failed`` or ``stopped``; ``nodes`` the
    store's states of the workflow's nodes right after the ending event was received (every node event
    before it applied; empty with ``enable_store_sync`` off); ``event`` the ending event itself."""

    workflow_id: str
    status: str
    event: WorkflowEvent = field(repr=False)
    nodes: Mapping[str, NodeExecutionState] = field(repr=False, default_factory=lambda: _NO_NODES)

    @property
    def succeeded(self) -> bool:
        return self.status == "completed"

    @property
    def error(self) -> Optional[str]:
        """The ``error`` text of a ``workflow_failed`` event, else None."""
        value = self.event.data.get("error") if self.status == "failed" else None
        return None if value is None else str(value)

    @property
    def node_id(self) -> Optional[str]:
        """The node the run ended at (``nodeId`` of a failed or stopped run), if the event names one."""
        value = self.event.data.get("nodeId")
        return value if isinstance(value, str) else None


class WorkflowRun:
    """One workflow's run as its events tell it (pure; the handle guards it with its condition).

    ``status``: the newest status its events gave (``running``, ``paused``, ``completed``, ``failed``,
    ``stopped``), None before any. ``result``: set by an ending event, cleared by ``workflow_started``.
    :meth:`expect_start` (called before a start command is sent) clears the result and ignores ending
    events until the next ``workflow_started``: an ending event of the previous run still on its way
    must not end the wait for the new one.
    """

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        self.status: Optional[str] = None
        self.result: Optional[WorkflowResult] = None
        self.awaiting_start = False

    def expect_start(self) -> None:
        self.awaiting_start = True
        self.result = None

    def start_not_sent(self) -> None:
        """The start command was refused or never sent: no new run is coming."""
        self.awaiting_start = False

    def on_event(self, event: WorkflowEvent, nodes: Mapping[str, NodeExecutionState]) -> bool:
        """Apply one workflow event; True if the run's state changed."""
        kind = event.type
        ending = TERMINAL_EVENTS.get(kind)
        if ending is not None:
            if self.awaiting_start:
                return False
            self.status = ending
            self.result = WorkflowResult(self.workflow_id, ending, event, nodes)
            return True
        status = _STATUS_EVENTS.get(kind)
        if status is None:
            return False
        if kind == "workflow_started":
            self.awaiting_start = False
            self.result = None
        self.status = status
        return True


class _Handle:
    """What both handles share: the subscription's life cycle as a context manager."""

    def __init__(self, integration: RealtimeIntegration, interest: Interest) -> None:
        self._integration = integration
        self._interest = interest
        self._cond = threading.Condition()
        self._sub_id: Optional[str] = None

    @property
    def workflow_id(self) -> str:
        return self._interest.workflow_id

    @property
    def is_subscribed(self) -> bool:
        return self._sub_id is not None

    @property
    def subscription_id(self) -> Optional[str]:
        return self._sub_id

    def subscribe(self) -> None:
        """Subscribe (what entering does). Raises :class:`MagkError` if already subscribed."""
        with self._cond:
            if self._sub_id is not None:
                raise MagkError(f"{self!r} is already subscribed")
            self._sub_id = self._integration._subscribe(self._interest, self._watcher())

    def unsubscribe(self) -> bool:
        """Unsubscribe (what leaving does); False if it was not subscribed. Wakes any waiter."""
        with self._cond:
            sub_id, self._sub_id = self._sub_id, None
            self._cond.notify_all()
        return sub_id is not None and self._integration.unsubscribe(sub_id)

    def _watcher(self) -> Optional[WorkflowRealtime]:
        return None

    def _wake(self) -> None:
        """The connection's state changed (dispatcher): let waiters look again."""
        with self._cond:
            self._cond.notify_all()

    def __exit__(self, *exc: object) -> None:
        self.unsubscribe()


class WorkflowRealtime(_Handle):
    """One workflow, live (see the module docstring). Made by ``RealtimeIntegration.workflow()``."""

    def __init__(self, integration: RealtimeIntegration, workflow_id: str) -> None:
        super().__init__(integration, Interest(workflow_id))
        self._run = WorkflowRun(workflow_id)
        self._controller: Optional[WorkflowController] = None

    def __repr__(self) -> str:
        state = "subscribed" if self.is_subscribed else "not subscribed"
        return f"<WorkflowRealtime {self.workflow_id!r} {state} status={self.status}>"

    def __enter__(self) -> WorkflowRealtime:
        self.subscribe()
        return self

    def _watcher(self) -> Optional[WorkflowRealtime]:
        return self

    # ------------------------------------------------------------------ live state

    @property
    def nodes(self) -> Mapping[str, NodeExecutionState]:
        """The store's ``{node_id: state}`` of this workflow now (read-only)."""
        return self._integration.store.get_workflow_nodes(self.workflow_id)

    @property
    def status(self) -> Optional[str]:
        """The run's status as its events gave it (``running``, ``paused``, ``completed``, ...)."""
        with self._cond:
            return self._run.status

    @property
    def result(self) -> Optional[WorkflowResult]:
        """How the run ended, once it has; None while running (or before a run was seen)."""
        with self._cond:
            return self._run.result

    # ------------------------------------------------------------------ commands

    @property
    def controller(self) -> WorkflowController:
        """The workflow's :class:`~magk_client.factories.WorkflowController` (every command)."""
        if self._controller is None:
            from .factories import WorkflowController

            self._controller = WorkflowController(self._integration.adapter, self.workflow_id)
        return self._controller

    def start(self, config: Optional[Mapping[str, Any]] = None, *, timeout: Optional[float] = None) -> CommandResponse:
        """Start a run (blocking until the backend answers). From here :meth:`wait_until_complete`
        waits for this run: ending events of an earlier run are ignored until ``workflow_started``."""
        with self._cond:
            self._run.expect_start()
        try:
            return self.controller.start(config, timeout=timeout)
        except CommandTimeout:
            raise  # it may have started; its workflow_started will say
        except BaseException:
            with self._cond:
                self._run.start_not_sent()
            raise

    def restart_node(self, node_id: str, *, timeout: Optional[float] = None) -> CommandResponse:
        """Run again from ``node_id``. On a run that has ended (as its events said) this starts a new
        run, which :meth:`wait_until_complete` then waits for, as after :meth:`start`."""
        with self._cond:
            ended = self._run.status in TERMINAL_EVENTS.values()
            if ended:
                self._run.expect_start()
        try:
            return self.controller.restart_node(node_id, timeout=timeout)
        except CommandTimeout:
            raise
        except BaseException:
            if ended:
                with self._cond:
                    self._run.start_not_sent()
            raise

    def pause(self, *, timeout: Optional[float] = None) -> CommandResponse:
        return self.controller.pause(timeout=timeout)

    def resume(self, *, timeout: Optional[float] = None) -> CommandResponse:
        return self.controller.resume(timeout=timeout)

    def stop(self, *, timeout: Optional[float] = None) -> CommandResponse:
        return self.controller.stop(timeout=timeout)

    # ------------------------------------------------------------------ waiting

    def wait_until_complete(self, timeout: Optional[float]) -> WorkflowResult:
        """Block until the run ends (``workflow_completed``, ``workflow_failed`` or
        ``workflow_stopped``) and return its :class:`WorkflowResult` (at once if it has ended).

        ``timeout`` is required: seconds, or None to wait as long as it takes. Raises
        :class:`~magk_client.errors.WorkflowWaitTimeout` when it passes,
        :class:`~magk_client.errors.NotConnectedError` when the connection ends for good (state
        ``error``, or disconnected) before the run does, and :class:`MagkError` when the handle is
        not subscribed or when called on the dispatcher thread.
        """
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0):
            raise ConfigError(f"timeout must be seconds >= 0 or None, got {timeout!r}")
        self._integration._check_may_wait("wait_until_complete")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                result = self._run.result
                if result is not None:
                    return result
                if self._sub_id is None:
                    raise MagkError(f"{self!r}: wait_until_complete() needs the subscription (use it in a with block)")
                ended = self._integration._session_ended()
                if ended is not None:
                    raise NotConnectedError(
                        f"workflow {self.workflow_id!r} has not ended and no event can come ({ended})"
                    )
                remaining = None
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        assert timeout is not None
                        raise WorkflowWaitTimeout(self.workflow_id, timeout, self._run.status)
                self._cond.wait(remaining)

    def _on_workflow_event(self, event: WorkflowEvent, nodes: Mapping[str, NodeExecutionState]) -> None:
        """One event of this workflow (dispatcher)."""
        with self._cond:
            if self._run.on_event(event, nodes):
                self._cond.notify_all()


class NodeRealtime(_Handle):
    """One node of a workflow, live. Made by ``RealtimeIntegration.node()``."""

    def __init__(self, integration: RealtimeIntegration, node_id: str, workflow_id: str) -> None:
        super().__init__(integration, Interest(workflow_id, node_id))

    def __repr__(self) -> str:
        state = "subscribed" if self.is_subscribed else "not subscribed"
        return f"<NodeRealtime {self.workflow_id!r}/{self.node_id!r} {state}>"

    def __enter__(self) -> NodeRealtime:
        self.subscribe()
        return self

    @property
    def node_id(self) -> str:
        node_id = self._interest.node_id
        assert node_id is not None
        return node_id

    @property
    def state(self) -> Optional[NodeExecutionState]:
        """The store's state of this node now, None before its first event."""
        return self._integration.store.get_node_state(self.workflow_id, self.node_id)

    def restart(self, *, timeout: Optional[float] = None) -> CommandResponse:
        return self._integration.adapter.restart_node(self.workflow_id, self.node_id, timeout=timeout)

    def skip(self, *, timeout: Optional[float] = None) -> CommandResponse:
        return self._integration.adapter.skip_node(self.workflow_id, self.node_id, timeout=timeout)
