"""The workflow command API of :class:`~magk_client.adapter.RealtimeAdapter`, as a mixin.

``send_workflow_command`` (blocking: returns the :class:`~magk_client.models.CommandResponse`,
raises :class:`~magk_client.errors.CommandError` / :class:`~magk_client.errors.CommandTimeout`) and
``submit_workflow_command`` (returns a ``concurrent.futures.Future``) check their arguments here;
the seed's typed commands (``start_workflow`` ... ``update_config`` and their ``submit_`` forms) are
one line over them. ``timeout`` is seconds; the default is the adapter's ``command_timeout_ms``.
The adapter supplies three hooks: ``_submit_checked`` (hand a checked command to its pipeline),
``_refuse_blocking`` and ``_await_answer`` (the blocking form's wait).
"""

from __future__ import annotations

import abc
import concurrent.futures
from typing import Any, Dict, Mapping, Optional

from .commands import NODE_COMMANDS
from .errors import ConfigError, check_non_empty
from .models import CommandResponse

__all__ = ["CommandFuture", "WorkflowCommandMethods"]

CommandFuture = concurrent.futures.Future[CommandResponse]


class WorkflowCommandMethods(abc.ABC):
    """``send_workflow_command``, ``submit_workflow_command`` and the typed commands
    ``start_workflow``, ``stop_workflow``, ``pause_workflow``, ``resume_workflow``,
    ``restart_node``, ``skip_node``, ``update_config`` with their ``submit_`` forms."""

    @abc.abstractmethod
    def _submit_checked(
        self, command: str, workflow_id: str, node_id: Optional[str],
        data: Optional[Dict[str, Any]], timeout: Optional[float],
    ) -> CommandFuture:
        """Hand a command whose arguments were checked to the pipeline (any thread)."""

    @abc.abstractmethod
    def _refuse_blocking(self, command: str) -> None:
        """Raise when the calling thread may not wait for an answer (it delivers them)."""

    @abc.abstractmethod
    def _await_answer(self, command: str, future: CommandFuture, timeout: Optional[float]) -> CommandResponse:
        """Wait on the calling thread for ``future``'s answer (``timeout`` as given to the command)."""

    def submit_workflow_command(
        self,
        command: str,
        workflow_id: str,
        node_id: Optional[str] = None,
        data: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> CommandFuture:
        """Send a command without waiting; the Future completes with its :class:`CommandResponse`,
        or fails with :class:`CommandError` / :class:`CommandTimeout` (``timeout`` seconds, default
        ``command_timeout_ms``). Raises :class:`NotConnectedError` before :meth:`connect`."""
        check_non_empty("command", command)
        check_non_empty("workflow_id", workflow_id)
        if node_id is not None or command in NODE_COMMANDS:
            check_non_empty("node_id", node_id)
        if data is not None and not isinstance(data, Mapping):
            raise ConfigError("data must be a mapping")
        if timeout is not None and not timeout > 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {timeout!r}")
        return self._submit_checked(command, workflow_id, node_id, dict(data) if data is not None else None, timeout)

    def send_workflow_command(
        self,
        command: str,
        workflow_id: str,
        node_id: Optional[str] = None,
        data: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> CommandResponse:
        """Send a command and wait for its answer (see :meth:`submit_workflow_command`)."""
        self._refuse_blocking(command)
        future = self.submit_workflow_command(command, workflow_id, node_id, data, timeout)
        return self._await_answer(command, future, timeout)

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
