"""The ``magk-client`` command line.

Subcommands live in :data:`SUBCOMMANDS` (name -> (help, add_arguments, run)); add one there to extend the
command line.
"""

from __future__ import annotations

import argparse
import signal
import ssl
import sys
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

AddArguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]


def _workflow_spec(text: str) -> Tuple[str, List[str]]:
    name, sep, nodes = text.partition("=")
    node_list = [n for n in nodes.split(",") if n]
    if not sep or not name or not node_list:
        raise argparse.ArgumentTypeError(f"expected ID=node,node,... got {text!r}")
    return name, node_list


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
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


def _serve(args: argparse.Namespace) -> int:
    from magk_client.testing import Backend

    ssl_context: Optional[ssl.SSLContext] = None
    if args.certfile:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(args.certfile, args.keyfile)
    workflows: Optional[Dict[str, List[str]]] = dict(args.workflow) if args.workflow else None
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
    backend.start()
    try:
        print(f"MAGK reference backend on {backend.base_url}", flush=True)
        print(f"  WebSocket  {backend.websocket_url}", flush=True)
        print(f"  SSE        {backend.event_source_url}", flush=True)
        print(f"  commands   POST {backend.commands_url}", flush=True)
        print(f"  health     {backend.health_url}", flush=True)
        print(f"  workflows  {', '.join(backend.workflow_ids())}  (Ctrl-C to stop)", flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        backend.stop()
        signal.signal(signal.SIGTERM, previous)
    return 0


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=6, help="nodes in the demo workflow (default 6)")
    parser.add_argument("--pace", type=float, default=0.04, help="seconds between engine events (default 0.04)")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds")


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(sys.stdout, nodes=args.nodes, pace=args.pace, timeout=args.timeout)


def _listen_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base_url", help="backend base URL, e.g. http://localhost:8000")
    parser.add_argument("--transport", choices=("websocket", "eventsource"), default="websocket")
    parser.add_argument("--token", default=None, help="bearer token (or set MAGK_TOKEN)")
    parser.add_argument("--api-key", default=None, help="API key (or set MAGK_API_KEY)")
    parser.add_argument("--workflow", default=None, help="only events of this workflow")
    parser.add_argument("--count", type=int, default=None, help="stop after this many events")


def _listen(args: argparse.Namespace) -> int:
    import json
    import os

    from .config import RealtimeAdapterConfig
    from .errors import MagkError
    from .service import RealtimeService

    urls = RealtimeAdapterConfig(backend_base_url=args.base_url)
    service = RealtimeService(
        websocket_url=urls.websocket_url,
        event_source_url=urls.event_source_url,
        preferred_type=args.transport,
        auth_token=args.token or os.environ.get("MAGK_TOKEN"),
        api_key=args.api_key or os.environ.get("MAGK_API_KEY"),
        log_level="debug" if args.verbose > 1 else "info",  # -vv: the service's decisions too
    )
    seen = 0
    try:
        with service, service.messages(None, workflow_id=args.workflow) as stream:
            for message in stream:
                print(json.dumps(message.to_dict(), default=str), flush=True)
                seen += 1
                if args.count is not None and seen >= args.count:
                    break
    except KeyboardInterrupt:
        pass
    except MagkError as exc:
        print(f"magk-client: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


#: name -> (help, add_arguments, run)
SUBCOMMANDS: Dict[str, Tuple[str, AddArguments, Run]] = {
    "demo": (
        "run a workflow against an embedded backend, with faults, and check every event arrived once",
        _demo_arguments,
        _demo,
    ),
    "serve": ("run the reference MAGK backend (WebSocket, SSE, commands, health)", _serve_arguments, _serve),
    "listen": ("connect to a backend and print its events as JSON lines", _listen_arguments, _listen),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="magk-client", description="MAGK real-time client tools")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, _run) in SUBCOMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import logging

    # The CLI shows connection problems itself; library warnings only with -v.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.ERROR,
        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    _help, _add, run = SUBCOMMANDS[args.command]
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
