"""The seed's typed workflow commands, each in a blocking and a non-blocking (``submit_``) form.

A mixin of :class:`~magk_client.adapter.RealtimeAdapter`: every method here is one line over
``send_workflow_command`` (blocking: returns the :class:`~magk_client.models.CommandResponse`,
raises :class:`~magk_client.errors.CommandError` / :class:`~magk_client.errors.CommandTimeout`) or
``submit_workflow_command`` (returns a ``concurrent.futures.Future``). ``timeout`` is seconds; the
default is the adapter's ``command_timeout_ms``.
"""

from __future__ import annotations

import abc
import concurrent.futures
from typing import Any, Mapping, Optional

from .models import CommandResponse

__all__ = ["CommandFuture", "WorkflowCommandMethods"]

CommandFuture = concurrent.futures.Future[CommandResponse]


class WorkflowCommandMethods(abc.ABC):
    """``start_workflow``, ``stop_workflow``, ``pause_workflow``, ``resume_workflow``,
    ``restart_node``, ``skip_node``, ``update_config`` and their ``submit_`` forms."""

    @abc.abstractmethod
    def send_workflow_command(
        self,
        command: str,
        workflow_id: str,
        node_id: Optional[str] = None,
        data: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> CommandResponse:
        """Send a command and wait for its answer."""

    @abc.abstractmethod
    def submit_workflow_command(
        self,
        command: str,
        workflow_id: str,
        node_id: Optional[str] = None,
        data: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> CommandFuture:
        """Send a command without waiting."""

    def start_workflow(
        self, workflow_id: str, config: Optional[Mapping[str, Any]] = None, *, timeout: Optional[float] = None
    ) -> CommandResponse:
        return self.send_workflow_command("start_workflow", workflow_id, None, config, timeout)

    def submit_start_workflow(
        self, workflow_id: str, config: Optional[Mapping[str, Any]] = None, *, timeout: Optional[float] = None
    ) -> CommandFuture:
        return self.submit_workflow_command("start_workflow", workflow_id, None, config, timeout)

    def stop_workflow(self, workflow_id: str, *, timeout: Optional[float] = None) -> CommandResponse:
        return self.send_workflow_command("stop_workflow", workflow_id, timeout=timeout)

    def submit_stop_workflow(self, workflow_id: str, *, timeout: Optional[float] = None) -> CommandFuture:
        return self.submit_workflow_command("stop_workflow", workflow_id, timeout=timeout)

    def pause_workflow(self, workflow_id: str, *, timeout: Optional[float] = None) -> CommandResponse:
        return self.send_workflow_command("pause_workflow", workflow_id, timeout=timeout)

    def submit_pause_workflow(self, workflow_id: str, *, timeout: Optional[float] = None) -> CommandFuture:
        return self.submit_workflow_command("pause_workflow", workflow_id, timeout=timeout)

    def resume_workflow(self, workflow_id: str, *, timeout: Optional[float] = None) -> CommandResponse:
        return self.send_workflow_command("resume_workflow", workflow_id, timeout=timeout)

    def submit_resume_workflow(self, workflow_id: str, *, timeout: Optional[float] = None) -> CommandFuture:
        return self.submit_workflow_command("resume_workflow", workflow_id, timeout=timeout)

    def restart_node(self, workflow_id: str, node_id: str, *, timeout: Optional[float] = None) -> CommandResponse:
        return self.send_workflow_command("restart_node", workflow_id, node_id, timeout=timeout)

    def submit_restart_node(self, workflow_id: str, node_id: str, *, timeout: Optional[float] = None) -> CommandFuture:
        return self.submit_workflow_command("restart_node", workflow_id, node_id, timeout=timeout)

    def skip_node(self, workflow_id: str, node_id: str, *, timeout: Optional[float] = None) -> CommandResponse:
        return self.send_workflow_command("skip_node", workflow_id, node_id, timeout=timeout)

    def submit_skip_node(self, workflow_id: str, node_id: str, *, timeout: Optional[float] = None) -> CommandFuture:
        return self.submit_workflow_command("skip_node", workflow_id, node_id, timeout=timeout)

    def update_config(
        self,
        workflow_id: str,
        config: Mapping[str, Any],
        node_id: Optional[str] = None,
        *,
        timeout: Optional[float] = None,
    ) -> CommandResponse:
        return self.send_workflow_command("update_config", workflow_id, node_id, config, timeout)

    def submit_update_config(
        self,
        workflow_id: str,
        config: Mapping[str, Any],
        node_id: Optional[str] = None,
        *,
        timeout: Optional[float] = None,
    ) -> CommandFuture:
        return self.submit_workflow_command("update_config", workflow_id, node_id, config, timeout)
