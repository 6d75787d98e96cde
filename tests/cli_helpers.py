"""Running ``magk-client`` and the examples as a user would: a fresh interpreter, this repository's
package (installed or not: PYTHONPATH points at the repository), no MAGK_* settings from the
environment unless a test sets them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"

#: ``python -c`` prelude: the default SIGINT handler even when the test runner's shell ignores SIGINT
#: (a background job), so that Ctrl-C reaches the command as it would from a terminal.
_WITH_SIGINT = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from magk_client.cli import main; sys.exit(main(sys.argv[1:]))"
)


def child_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGK_") and k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def cli_argv(*args: str, interruptible: bool = False) -> List[str]:
    if interruptible:
        return [sys.executable, "-c", _WITH_SIGINT, *args]
    return [sys.executable, "-m", "magk_client.cli", *args]


def run_cli(*args: str, timeout: float = 60.0, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_argv(*args), capture_output=True, text=True, timeout=timeout, env=child_env(**env), check=False
    )


def start_cli(*args: str, interruptible: bool = False, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli_argv(*args, interruptible=interruptible),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(**env),
    )


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    """A failure is reported as one line on stderr, never a traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], stderr


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def communicate(proc: subprocess.Popen[str], timeout: float = 60.0) -> Any:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def assert_quiet_ctrl_c(proc: subprocess.Popen[str], ready: Callable[[], Any]) -> None:
    """Once ``ready()`` returns, Ctrl-C ``proc`` (started ``interruptible``): it exits 130 with no
    traceback and no thread left running."""
    try:
        ready()
        proc.send_signal(signal.SIGINT)
        _out, err = communicate(proc, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "threads still running" not in err
