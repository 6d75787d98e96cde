"""The main job: ``magk-client demo`` runs end to end and proves exactly-once delivery."""

from __future__ import annotations

import io
import subprocess
import sys

from magk_client.cli import main
from magk_client.demo import run_demo


def test_demo_in_process_every_event_exactly_once() -> None:
    out = io.StringIO()
    code = run_demo(out, nodes=4, pace=0.02, timeout=30)
    text = out.getvalue()
    assert code == 0, text
    assert "every event exactly once, in order: yes" in text
    assert "connected over eventsource" in text  # the fault moved it to SSE
    assert "workflow demo: workflow_completed" in text


def test_demo_console_entry_point_exits_zero() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "magk_client.cli", "demo", "--nodes", "3", "--pace", "0.02"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "exactly once, in order: yes" in result.stdout


def test_cli_without_command_prints_help(capsys: object) -> None:
    assert main([]) == 2
