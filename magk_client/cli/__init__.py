"""The ``magk-client`` command line.

=========  =====================================================================================
demo       an embedded backend, a workflow streamed through the adapter and the store with faults,
           live per-node bars and a summary table; checks every event arrived exactly once
serve      the reference backend (magk_client.testing) as a process
listen     a backend's events as JSON lines (filters: --type, --workflow, --node)
command    one workflow command; its answer as JSON (exit 1 on ``success: false``)
health     the backend's ``GET /health`` (exit 1 unless healthy)
watch      a live table of a workflow's nodes until the workflow ends
=========  =====================================================================================

Commands that talk to a backend take ``--url`` (default ``$MAGK_URL``, else
http://localhost:8000), ``--token`` (``$MAGK_TOKEN``) and ``--api-key`` (``$MAGK_API_KEY``).

Exit status: 0 success, 1 a failure the command reports (one line on stderr), 2 bad arguments,
130 Ctrl-C. Ctrl-C closes the connection and joins the SDK's threads before exiting; a second
Ctrl-C during that bounded clean-up is ignored. Live output (rich) is used on a terminal; on a
pipe, with ``--plain``, or without the ``cli`` extra, plain lines.

Subcommands live in :data:`SUBCOMMANDS` (name -> (help, add_arguments, run)); add one there to
extend the command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from typing import Callable, Dict, Optional, Sequence, Set, Tuple

from ..errors import MagkError
from . import command, listen, serve, watch
from ._common import CliError, CliParser, one_line

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

AddArguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]

#: the exit status after Ctrl-C (128 + SIGINT), as shells report it
INTERRUPTED = 130


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    from ._common import add_output_arguments, positive_float, positive_int

    parser.add_argument("--nodes", type=positive_int, default=6, help="nodes in the demo workflow (default 6)")
    parser.add_argument(
        "--pace", type=float, default=0.04, help="seconds between engine events (default 0.04)"
    )
    parser.add_argument(
        "--timeout", type=positive_float, default=60.0, help="give up after this many seconds (default 60)"
    )
    parser.add_argument(
        "--transport",
        choices=("websocket", "sse"),
        default="websocket",
        help="the transport to prefer; the fault refuses it for a while, forcing the other (default websocket)",
    )
    add_output_arguments(parser)


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    from ._common import make_console

    if args.pace < 0:
        raise CliError("--pace must be >= 0", 2)
    return run_demo(
        sys.stdout,
        nodes=args.nodes,
        pace=args.pace,
        timeout=args.timeout,
        transport=args.transport,
        console=make_console(args),
    )


#: name -> (help, add_arguments, run)
SUBCOMMANDS: Dict[str, Tuple[str, AddArguments, Run]] = {
    "demo": (
        "run a workflow against an embedded backend, with faults, and check every event arrived once",
        _demo_arguments,
        _demo,
    ),
    "serve": ("run the reference MAGK backend (WebSocket, SSE, commands, health)", serve.add_arguments, serve.run),
    "listen": ("print a backend's events as JSON lines", listen.add_arguments, listen.run),
    "command": (
        "send a workflow command and print the answer as JSON",
        command.add_command_arguments,
        command.run_command,
    ),
    "health": ("print the backend's health (exit 1 unless healthy)", command.add_health_arguments, command.run_health),
    "watch": ("a live table of a workflow's nodes until it ends", watch.add_arguments, watch.run),
}


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="magk-client", description="MAGK real-time client tools")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND")
    for name, (help_text, add_arguments, _run) in SUBCOMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; returns the exit status (see the module doc)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # The CLI reports problems itself, in one line; library warnings only with -v.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.ERROR,
        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s",
    )
    if args.command_name is None:
        parser.print_help()
        return 2
    _help, _add, run = SUBCOMMANDS[args.command_name]
    before = set(threading.enumerate())
    try:
        code = run(args)
    except KeyboardInterrupt:
        code = INTERRUPTED
    except CliError as exc:
        _error(str(exc))
        code = exc.code
    except MagkError as exc:
        _error(f"{type(exc).__name__}: {exc}")
        code = 1
    except BrokenPipeError:
        # stdout was closed by its reader (``magk-client listen | head``): not an error.
        _silence_stdout()
        code = 0
    _report_threads(before)
    return code


def _error(message: str) -> None:
    sys.stderr.write(f"magk-client: {one_line(message)}\n")
    sys.stderr.flush()


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _report_threads(before: Set[threading.Thread]) -> None:
    """Every thread a command started must be gone when it returns; say so if one is not."""
    left = [t.name for t in threading.enumerate() if t not in before and t.is_alive() and t.name.startswith("magk")]
    if left:
        _error(f"warning: threads still running after the command: {', '.join(sorted(left))}")
