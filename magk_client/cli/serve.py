"""``magk-client serve``: the reference MAGK backend (magk_client.testing) as a process.

One port: WebSocket, SSE, ``POST /commands``, ``POST /messages``, ``GET /health``; fault flags for
trying a client against refusals and delays. Needs the ``server`` extra (aiohttp). Runs until
Ctrl-C or SIGTERM (exit 0).
"""

from __future__ import annotations

import argparse
import signal
import ssl
import threading
from typing import Any, Dict, List, Optional, Tuple

from ._common import CliError, no_interrupts

__all__ = ["add_arguments", "run"]


def _workflow_spec(text: str) -> Tuple[str, List[str]]:
    name, sep, nodes = text.partition("=")
    node_list = [n for n in nodes.split(",") if n]
    if not sep or not name or not node_list:
        raise argparse.ArgumentTypeError(f"expected ID=node,node,... got {text!r}")
    return name, node_list


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--token", default=None, help="require Authorization: Bearer TOKEN")
    parser.add_argument("--api-key", default=None, help="require X-API-Key: KEY")
    parser.add_argument(
        "--heartbeat-interval", type=float, default=None, help="seconds between server heartbeats"
    )
    parser.add_argument(
        "--pace", type=float, default=0.05, help="seconds between engine events (default 0.05)"
    )
    parser.add_argument("--replay-size", type=int, default=10000, help="events kept for resume")
    parser.add_argument(
        "--workflow",
        action="append",
        type=_workflow_spec,
        default=[],
        metavar="ID=NODE,NODE",
        help="define a workflow (repeatable; default wf-1=n-1,n-2,n-3)",
    )
    parser.add_argument("--certfile", default=None, help="serve https/wss with this certificate (PEM)")
    parser.add_argument("--keyfile", default=None, help="private key for --certfile")
    parser.add_argument(
        "--refuse-websocket",
        type=int,
        default=None,
        metavar="STATUS",
        help="fault: answer WebSocket upgrades with this HTTP status (clients fall back to SSE)",
    )
    parser.add_argument(
        "--refuse-sse", type=int, default=None, metavar="STATUS", help="fault: answer SSE requests with it"
    )
    parser.add_argument(
        "--delay", type=float, default=0.0, metavar="SECONDS", help="fault: delay every outbound message"
    )
    parser.add_argument(
        "--no-acks",
        dest="acks",
        action="store_false",
        help="do not acknowledge client messages nor ignore repeated ids (docs/protocol.rst, Acknowledgements)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        from magk_client.testing import Backend
    except ImportError as exc:
        raise CliError(f"serve needs the server extra (pip install 'magk-client[server]'): {exc}") from None

    ssl_context: Optional[ssl.SSLContext] = None
    if args.certfile:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ssl_context.load_cert_chain(args.certfile, args.keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise CliError(f"cannot load --certfile/--keyfile: {exc}", 2) from None
    workflows: Optional[Dict[str, List[str]]] = dict(args.workflow) if args.workflow else None
    try:
        backend = Backend(
            host=args.host,
            port=args.port,
            token=args.token,
            api_key=args.api_key,
            heartbeat_interval=args.heartbeat_interval,
            pace=args.pace,
            replay_size=args.replay_size,
            ssl_context=ssl_context,
            workflows=workflows,
            acks=args.acks,
        )
    except ValueError as exc:
        raise CliError(f"bad settings: {exc}", 2) from None
    if args.refuse_websocket is not None:
        backend.refuse_websocket(args.refuse_websocket)
    if args.refuse_sse is not None:
        backend.refuse_sse(args.refuse_sse)
    if args.delay:
        backend.set_delay(args.delay)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        try:
            backend.start()
        except OSError as exc:
            raise CliError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
        print(f"MAGK reference backend on {backend.base_url}", flush=True)
        print(f"  WebSocket  {backend.websocket_url}", flush=True)
        print(f"  SSE        {backend.event_source_url}", flush=True)
        print(f"  commands   POST {backend.commands_url}", flush=True)
        print(f"  health     {backend.health_url}", flush=True)
        print(f"  workflows  {', '.join(backend.workflow_ids())}  (Ctrl-C to stop)", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        with no_interrupts():
            backend.stop()
            signal.signal(signal.SIGTERM, previous)
    return 0
