"""The seed's helpers: :class:`WorkflowController`, the factories and the subscription shortcuts.

- ``WorkflowController(adapter, workflow_id)``: one workflow's commands and subscriptions.
- ``create_realtime_adapter(config=None, **overrides)`` and
  ``create_realtime_service(config=None, error_recovery=None, **overrides)``.
- ``subscribe_to_workflow(service, workflow_id, callback)`` and
  ``subscribe_to_node(service, node_id, callback)``: raw :class:`~magk_client.models.RealtimeMessage`
  subscriptions on a service with the seed's type lists (command envelopes and answers left out).
"""

from __future__ import annotations

from typing import Any, Callable, List, Mapping, Optional, Union

from .adapter import RealtimeAdapter
from .command_methods import CommandFuture
from .config import ErrorRecoveryConfig, RealtimeAdapterConfig, RealtimeConnectionConfig
from .events import NODE_EVENT_TYPES, WORKFLOW_EVENT_TYPES, NodeEvent, WorkflowEvent, is_command_message
from .models import CommandResponse, RealtimeMessage
from .service import RealtimeService

__all__ = [
    "WorkflowController",
    "create_realtime_adapter",
    "create_realtime_service",
    "subscribe_to_node",
    "subscribe_to_workflow",
]


class WorkflowController:
    """Commands and subscriptions of one workflow through an adapter (the seed's controller).

    Every command blocks until its answer (raising :class:`~magk_client.errors.CommandError` or
    :class:`~magk_client.errors.CommandTimeout`); ``submit(command, ...)`` is the non-blocking form.
    """

    def __init__(self, adapter: RealtimeAdapter, workflow_id: str) -> None:
        if not isinstance(workflow_id, str) or not workflow_id:
            raise ValueError("workflow_id must be a non-empty string")
        self.adapter = adapter
        self.workflow_id = workflow_id
        self._subscriptions: List[str] = []

    def __repr__(self) -> str:
        return f"<WorkflowController {self.workflow_id!r}>"

    def start(self, config: Optional[Mapping[str, Any]] = None, *, timeout: Optional[float] = None) -> CommandResponse:
        return self.adapter.start_workflow(self.workflow_id, config, timeout=timeout)

    def stop(self, *, timeout: Optional[float] = None) -> CommandResponse:
        return self.adapter.stop_workflow(self.workflow_id, timeout=timeout)

    def pause(self, *, timeout: Optional[float] = None) -> CommandResponse:
        return self.adapter.pause_workflow(self.workflow_id, timeout=timeout)

    def resume(self, *, timeout: Optional[float] = None) -> CommandResponse:
        return self.adapter.resume_workflow(self.workflow_id, timeout=timeout)

    def restart_node(self, node_id: str, *, timeout: Optional[float] = None) -> CommandResponse:
        return self.adapter.restart_node(self.workflow_id, node_id, timeout=timeout)

    def skip_node(self, node_id: str, *, timeout: Optional[float] = None) -> CommandResponse:
        return self.adapter.skip_node(self.workflow_id, node_id, timeout=timeout)

    def update_config(
        self, config: Mapping[str, Any], node_id: Optional[str] = None, *, timeout: Optional[float] = None
    ) -> CommandResponse:
        return self.adapter.update_config(self.workflow_id, config, node_id, timeout=timeout)

    def submit(
        self,
        command: str,
        node_id: Optional[str] = None,
        data: Optional[Mapping[str, Any]] = None,
        *,
        timeout: Optional[float] = None,
    ) -> CommandFuture:
        """Send any command for this workflow without waiting (a ``concurrent.futures.Future``)."""
        return self.adapter.submit_workflow_command(command, self.workflow_id, node_id, data, timeout)

    def subscribe(self, callback: Callable[[WorkflowEvent], Any]) -> str:
        """Workflow events of this workflow (see :meth:`RealtimeAdapter.subscribe_to_workflow`)."""
        sub_id = self.adapter.subscribe_to_workflow(self.workflow_id, callback)
        self._subscriptions.append(sub_id)
        return sub_id

    def subscribe_to_node(self, node_id: str, callback: Callable[[NodeEvent], Any]) -> str:
        """Updates of one node of this workflow (see :meth:`RealtimeAdapter.subscribe_to_node`)."""
        sub_id = self.adapter.subscribe_to_node(node_id, self.workflow_id, callback)
        self._subscriptions.append(sub_id)
        return sub_id

    def unsubscribe_all(self) -> None:
        """Remove every subscription made through this controller."""
        subs, self._subscriptions = self._subscriptions, []
        for sub_id in subs:
            self.adapter.unsubscribe(sub_id)


def create_realtime_adapter(
    config: Union[RealtimeAdapterConfig, Mapping[str, Any], None] = None, **overrides: Any
) -> RealtimeAdapter:
    """A new :class:`RealtimeAdapter` (not connected yet); ``overrides`` are adapter config fields,
    and ``connection_config=`` / ``error_recovery=`` pass through."""
    return RealtimeAdapter(config, **overrides)


def create_realtime_service(
    config: Union[RealtimeConnectionConfig, Mapping[str, Any], None] = None,
    error_recovery: Union[ErrorRecoveryConfig, Mapping[str, Any], None] = None,
    **overrides: Any,
) -> RealtimeService:
    """A new :class:`RealtimeService` (not connected yet)."""
    return RealtimeService(config, error_recovery, **overrides)


def _not_command(message: RealtimeMessage) -> bool:
    return not is_command_message(message)


def subscribe_to_workflow(
    service: RealtimeService, workflow_id: str, callback: Callable[[RealtimeMessage], Any]
) -> str:
    """Subscribe ``callback`` to a workflow's messages: node status, progress, errors, results and
    workflow events (command envelopes and answers left out). Returns the subscription id."""
    return service.subscribe(WORKFLOW_EVENT_TYPES, callback, workflow_id=workflow_id, filter=_not_command)


def subscribe_to_node(service: RealtimeService, node_id: str, callback: Callable[[RealtimeMessage], Any]) -> str:
    """Subscribe ``callback`` to a node's messages (status, progress, error, result, metadata, logs),
    in any workflow. Returns the subscription id."""
    return service.subscribe(NODE_EVENT_TYPES, callback, node_id=node_id)
