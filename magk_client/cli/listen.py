"""``magk-client listen``: a backend's events on stdout, one JSON object (the wire envelope) a line.

Filters (``--type``, ``--workflow``, ``--node``) are the service's subscription filters; command
answers, acknowledgements and heartbeats are not events and never appear, nor (unless ``--type``
names it) each connection's ``subscription_ack``. The dispatcher thread
only queues messages; the main thread writes them, so Ctrl-C, ``--count`` and ``--timeout`` end
the command between two lines. Nothing but events goes to stdout: notes, with ``-v``, go to stderr.

Exit status: 0 after ``--count`` events, after ``--timeout`` seconds, or on Ctrl-C (130); 1 when
the connection is lost for good.
"""

from __future__ import annotations

import argparse
import queue
import sys
import time
from typing import Any

from .. import codec
from ..models import MessageType, RealtimeMessage
from ._common import (
    CliError,
    ConnectionWatch,
    add_connection_arguments,
    build_adapter,
    connect,
    positive_float,
    positive_int,
    session,
    split_types,
)

__all__ = ["add_arguments", "run"]

#: how often the main thread looks at the connection and the clock while no event arrives
_POLL = 0.25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--type",
        dest="types",
        action="append",
        default=None,
        metavar="TYPE",
        help="only events of this type (repeatable, or comma-separated), e.g. node_status_update",
    )
    parser.add_argument("--workflow", default=None, metavar="ID", help="only events of this workflow")
    parser.add_argument("--node", default=None, metavar="ID", help="only events of this node")
    parser.add_argument(
        "--count", "--max-events", dest="count", type=positive_int, default=None, metavar="N",
        help="stop after N events",
    )
    parser.add_argument(
        "--timeout", type=positive_float, default=None, metavar="SECONDS", help="stop after this long (exit 0)"
    )
    # The command line of earlier versions took the URL as an argument; still accepted.
    parser.add_argument("base_url", nargs="?", default=None, help=argparse.SUPPRESS)
    add_connection_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.base_url and not args.url:
        args.url = args.base_url
    verbose = args.verbose > 0
    inbox: queue.SimpleQueue[RealtimeMessage] = queue.SimpleQueue()  # filled on the dispatcher thread
    notes: queue.SimpleQueue[str] = queue.SimpleQueue()  # likewise
    adapter = build_adapter(args)
    with session(adapter):
        conn = ConnectionWatch(adapter, notes.put if verbose else None)
        types = split_types(args.types)
        adapter.service.subscribe(
            types,
            inbox.put,
            workflow_id=args.workflow,
            node_id=args.node,
            filter=None if types else _not_bookkeeping,
        )
        connect(adapter, args)
        if verbose:
            _note(f"listening to {adapter.config.backend_base_url} (Ctrl-C to stop)")
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        seen = 0
        out = sys.stdout
        while args.count is None or seen < args.count:
            _drain(notes)
            wait = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                message = inbox.get(timeout=wait)
            except queue.Empty:
                if conn.lost.is_set():
                    raise CliError(f"lost the connection to {adapter.config.backend_base_url}: {conn.error}") from None
                continue
            out.write(codec.encode(message) + "\n")
            out.flush()
            seen += 1
    return 0


def _not_bookkeeping(message: RealtimeMessage) -> bool:
    """Without ``--type``: everything but each connection's ``subscription_ack``."""
    return message.type != MessageType.SUBSCRIPTION_ACK


def _drain(notes: queue.SimpleQueue[str]) -> None:
    while True:
        try:
            _note(notes.get_nowait())
        except queue.Empty:
            return


def _note(text: Any) -> None:
    sys.stderr.write(f"magk-client: {text}\n")
    sys.stderr.flush()
