"""The examples run as a user would run them (``python examples/x.py``, a fresh interpreter, this
repository's package whether installed or not), against the embedded backend and with ``--url``."""

from __future__ import annotations

import subprocess
import sys
from typing import Dict, Iterator, List

import pytest
from cli_helpers import EXAMPLES, child_env

from magk_client.testing import Backend

SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
#: what each example's output must show (its last line, or a line anywhere)
EXPECTED: Dict[str, List[str]] = {
    "basic_connect.py": ["connected: True over websocket", "backend health: healthy", "workflow_completed",
                         "disconnected: True"],
    "workflow_monitor.py": ["workflow_completed", "n-3    completed    100%"],
    "workflow_control.py": ["event: workflow_paused", "pause again: refused", "event: workflow_resumed",
                            "update_config (a Future): True", "restart_node n-1"],
    "node_monitor.py": ["progress 3/3 (100%)", "result: 200 rows", "n-2: completed, 100%"],
    "full_demo.py": ["backend health: healthy", "pause: True / resume: True", "every event exactly once, in order: True"],
    "pull_api.py": ["n-3: 3/3", "workflow_completed", "done"],
    "resilient_stream.py": ["in order and exactly once: True"],
}
#: examples that need the embedded backend's fault switches
EMBEDDED_ONLY = {"resilient_stream.py"}


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=child_env(),  # the package comes from PYTHONPATH (this repository) or an install
    )


def test_every_example_is_covered() -> None:
    assert set(SCRIPTS) == set(EXPECTED)
    assert {"basic_connect.py", "workflow_monitor.py", "workflow_control.py", "node_monitor.py", "full_demo.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_on_the_embedded_backend(script: str) -> None:
    result = _run(script)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for expected in EXPECTED[script]:
        assert expected in result.stdout, (expected, result.stdout[-3000:])
    assert "Traceback" not in result.stderr


@pytest.fixture()
def paced_backend() -> Iterator[Backend]:
    with Backend(pace=0.05) as server:  # slow enough that pause lands while the workflow runs
        yield server


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s not in EMBEDDED_ONLY])
def test_example_runs_against_a_url(script: str, paced_backend: Backend) -> None:
    result = _run(script, "--url", paced_backend.base_url)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert paced_backend.ws_connects >= 1  # it used the backend it was given
    assert paced_backend.command_counts  # and sent it commands through the adapter
    assert any(e["type"] == "workflow_event" and e["data"].get("type") == "workflow_started"
               for e in paced_backend.logged_events())


def test_basic_connect_sends_no_raw_envelope() -> None:
    source = (EXAMPLES / "basic_connect.py").read_text()
    assert "start_workflow(" in source and "send_message" not in source and '"command":' not in source
