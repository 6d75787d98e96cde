"""``magk-client command`` (one workflow command, its answer as JSON) and ``magk-client health``.

Exit status of ``command``: 0 when the backend answers ``success: true``; 1 when it answers
``success: false`` (the answer is still printed), when no answer comes within ``--timeout``, or
when the backend cannot be reached. ``health``: 0 when the backend says ``healthy``, 1 otherwise.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..commands import COMMANDS, NODE_COMMANDS
from ..errors import CommandError, CommandTimeout, MagkError
from ._common import (
    CliError,
    add_connection_arguments,
    add_output_arguments,
    build_adapter,
    connect,
    dump_json,
    json_object,
    make_console,
    one_line,
    positive_float,
    session,
)

__all__ = ["COMMANDS", "add_command_arguments", "add_health_arguments", "run_command", "run_health"]


def add_command_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("command", metavar="COMMAND", choices=COMMANDS, help="one of: " + ", ".join(COMMANDS))
    parser.add_argument("workflow_id", metavar="WORKFLOW_ID", help="the workflow it is about")
    parser.add_argument("--node-id", default=None, metavar="ID", help="the node (" + ", ".join(NODE_COMMANDS) + ")")
    parser.add_argument(
        "--data", type=json_object, default=None, metavar="JSON", help='a JSON object, e.g. \'{"failNode": "n-2"}\''
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="wait this long for the answer (default 30)",
    )
    add_connection_arguments(parser)


def run_command(args: argparse.Namespace) -> int:
    if args.command in NODE_COMMANDS and not args.node_id:
        raise CliError(f"{args.command} needs --node-id", 2)
    adapter = build_adapter(args)
    with session(adapter):
        connect(adapter, args)
        try:
            response = adapter.send_workflow_command(
                args.command, args.workflow_id, args.node_id, args.data, timeout=args.timeout
            )
        except CommandTimeout:
            raise CliError(f"no answer to {args.command} within {args.timeout:g} s") from None
        except CommandError as exc:
            if exc.response is None:
                raise CliError(f"{args.command} failed: {exc}") from None
            dump_json(exc.response.to_dict())
            raise CliError(f"{args.command} failed: {exc.server_error or exc}") from None
    dump_json(response.to_dict())
    return 0


def add_health_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout", type=positive_float, default=10.0, metavar="SECONDS", help="wait this long (default 10)"
    )
    parser.add_argument("--json", action="store_true", help="JSON even on a terminal")
    add_output_arguments(parser)
    add_connection_arguments(parser)


def run_health(args: argparse.Namespace) -> int:
    """``GET /health`` once (no WebSocket or SSE connection is made)."""
    adapter = build_adapter(args)
    with session(adapter):
        try:
            health = adapter.get_backend_health(timeout=args.timeout)
        except MagkError as exc:
            raise CliError(f"no health from {adapter.config.backend_base_url}: {one_line(exc)}") from None
    console = None if args.json else make_console(args)
    if console is None:
        dump_json(health.to_dict())
    else:
        _show(console, health, adapter.config.backend_base_url)
    return 0 if health.is_healthy else 1


def _show(console: Any, health: Any, url: str) -> None:
    from rich.table import Table

    style = "green" if health.is_healthy else "red"
    table = Table(title=f"{url}: [{style}]{health.status}[/]", show_header=False)
    table.add_column("what")
    table.add_column("value")
    if health.service:
        table.add_row("service", health.service)
    for name, up in sorted(health.services.items()):
        table.add_row(name, "[green]up[/]" if up else "[red]down[/]")
    for name, value in sorted(health.metrics.items()):
        table.add_row(name, str(value))
    console.print(table)
