"""What every ``magk-client`` command shares: the connection options, the adapter they build, the
one-line errors, the terminal check, Ctrl-C during clean-up, and the JSON output.

Threads: everything here runs on the main thread (the command's own); callbacks given to the SDK
only put things on queues or set events, the main thread prints.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from typing import Any, Callable, Dict, Iterator, List, NoReturn, Optional, TextIO

from ..errors import MagkError

__all__ = [
    "DEFAULT_URL",
    "CliError",
    "CliParser",
    "ConnectionWatch",
    "add_connection_arguments",
    "add_output_arguments",
    "build_adapter",
    "connect",
    "dump_json",
    "json_object",
    "make_console",
    "no_interrupts",
    "one_line",
    "positive_float",
    "positive_int",
    "session",
    "split_types",
]

DEFAULT_URL = "http://localhost:8000"
#: ``--transport`` values and the service's names for them
TRANSPORTS = {"websocket": "websocket", "sse": "eventsource", "eventsource": "eventsource"}


class CliError(Exception):
    """An expected failure: ``main`` prints ``magk-client: <message>`` on stderr and exits ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class CliParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (``prog: error: ... (see --help)``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(text: object) -> str:
    """``text`` on one line (an error message must not spill over several)."""
    return " ".join(str(text).split())


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def json_object(text: str) -> Dict[str, Any]:
    """``--data``: a JSON object, or a one-line usage error."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object ({{...}}), got {type(value).__name__}")
    return value


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--url``, ``--token``, ``--api-key`` (defaults from MAGK_URL, MAGK_TOKEN, MAGK_API_KEY), the
    transport and the connection's patience."""
    group = parser.add_argument_group("backend")
    group.add_argument(
        "--url",
        default=None,
        metavar="BASE_URL",
        help=f"backend base URL (default: $MAGK_URL, else {DEFAULT_URL})",
    )
    group.add_argument("--token", default=None, help="bearer token (default: $MAGK_TOKEN)")
    group.add_argument("--api-key", default=None, help="API key (default: $MAGK_API_KEY)")
    group.add_argument(
        "--transport",
        choices=sorted(TRANSPORTS),
        default="websocket",
        help="preferred transport, the other is the fallback (default websocket)",
    )
    group.add_argument(
        "--connect-timeout",
        type=positive_float,
        default=10.0,
        metavar="SECONDS",
        help="give up connecting after this long (default 10)",
    )
    group.add_argument(
        "--retries",
        type=positive_int,
        default=3,
        metavar="N",
        help="failed connection attempts in a row before giving up (default 3)",
    )
    group.add_argument(
        "--allow-insecure-auth",
        action="store_true",
        help="allow credentials over plain http/ws to a host that is not this machine",
    )


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plain",
        action="store_true",
        help="plain lines instead of live tables and bars (the default when stdout is not a terminal)",
    )


def resolve(args: argparse.Namespace, name: str, env: str, default: Optional[str] = None) -> Optional[str]:
    value: Optional[str] = getattr(args, name, None)
    if value:
        return value
    return os.environ.get(env) or default


def build_adapter(args: argparse.Namespace, **overrides: Any) -> Any:
    """A :class:`~magk_client.adapter.RealtimeAdapter` (not connected) from the connection options.

    The health poller is off (``health`` asks once); ``--retries`` bounds the reconnect attempts,
    so an unreachable backend is reported within seconds rather than retried for ever.
    """
    from ..adapter import RealtimeAdapter
    from ..errors import ConfigError

    url = resolve(args, "url", "MAGK_URL", DEFAULT_URL)
    connection: Dict[str, Any] = {
        "preferred_type": TRANSPORTS[args.transport],
        "max_reconnect_attempts": args.retries,
        "reconnect_interval_ms": 500,
        "max_reconnect_interval_ms": 5000,
        "allow_insecure_auth": bool(args.allow_insecure_auth),
        "connection_timeout_ms": min(args.connect_timeout, 30.0) * 1000.0,
    }
    try:
        return RealtimeAdapter(
            backend_base_url=url,
            auth_token=resolve(args, "token", "MAGK_TOKEN"),
            api_key=resolve(args, "api_key", "MAGK_API_KEY"),
            enable_health_check=False,
            connection_config=connection,
            **overrides,
        )
    except ConfigError as exc:
        raise CliError(f"bad settings: {exc}", 2) from None


def connect(adapter: Any, args: argparse.Namespace) -> None:
    """Connect ``adapter`` or raise a :class:`CliError` naming the backend."""
    try:
        adapter.connect(args.connect_timeout)
    except MagkError as exc:
        raise CliError(f"cannot connect to {adapter.config.backend_base_url}: {exc}") from None


@contextlib.contextmanager
def no_interrupts() -> Iterator[None]:
    """Ctrl-C is ignored for the duration (the clean-up it asked for is under way and bounded).

    Only on the main thread (elsewhere, and when SIGINT was ignored anyway, it changes nothing).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def session(adapter: Any) -> Iterator[Any]:
    """Close ``adapter`` on the way out, whatever happened (joins every SDK thread), shielded from a
    second Ctrl-C."""
    try:
        yield adapter
    finally:
        with no_interrupts():
            adapter.close()


class ConnectionWatch:
    """Records the end of a session, the service's state ``error`` (it gave up: ``--retries``
    attempts failed in a row, or a terminal error such as a refused token), on the dispatcher
    thread; the main thread reads ``lost`` and ``error``. With ``notes``, a line per state change
    is passed to it (a queue's ``put``: the main thread shows them)."""

    def __init__(self, adapter: Any, notes: Optional[Callable[[str], None]] = None) -> None:
        self.lost = threading.Event()
        self.error: Optional[str] = None
        self._adapter = adapter
        self._notes = notes
        adapter.service.on_connection_state_change(self._on_state)

    def _on_state(self, state: Any, error: Optional[BaseException]) -> None:
        value = str(state)
        if self._notes is not None:
            where = self._adapter.service.connection_type
            detail = f" over {where}" if value == "connected" and where is not None else ""
            reason = f" ({type(error).__name__}: {one_line(error)})" if error is not None else ""
            self._notes(f"connection {value}{detail}{reason}")
        if value == "error":
            self.error = one_line(error) if error is not None else "the connection failed"
            self.lost.set()


def dump_json(obj: Any, out: Optional[TextIO] = None) -> None:
    stream = out if out is not None else sys.stdout
    stream.write(json.dumps(obj, default=str, ensure_ascii=False) + "\n")
    stream.flush()


def make_console(args: argparse.Namespace, stream: Optional[TextIO] = None) -> Any:
    """A rich ``Console`` for live output, or None for plain lines: with ``--plain``, when the stream
    is not a terminal (rich's check, so ``FORCE_COLOR``/``TTY_COMPATIBLE`` count), or without rich."""
    if getattr(args, "plain", False):
        return None
    try:
        from rich.console import Console
    except ImportError:  # the ``cli`` extra is not installed
        return None
    console = Console(file=stream if stream is not None else sys.stdout)
    return console if console.is_terminal else None


def split_types(values: Optional[List[str]]) -> Optional[List[str]]:
    """``--type a --type b,c`` -> ``["a", "b", "c"]`` (None: every type)."""
    if not values:
        return None
    return [part for value in values for part in value.split(",") if part]
