"""The main job: ``magk-client demo`` runs end to end and proves exactly-once delivery, on either
transport, through the adapter and the store, as plain lines or live rich bars."""

from __future__ import annotations

import io
import threading

import pytest
from cli_helpers import run_cli
from rich.console import Console

from magk_client.cli import main
from magk_client.demo import run_demo


def _after(text: str, marker: str) -> str:
    assert marker in text, text
    return text[text.index(marker) :]


def test_demo_in_process_every_event_exactly_once() -> None:
    before = set(threading.enumerate())
    out = io.StringIO()
    code = run_demo(out, nodes=4, pace=0.02, timeout=30)
    text = out.getvalue()
    assert code == 0, text
    assert "every event exactly once, in order: yes" in text
    assert "workflow demo: workflow_completed" in text
    # the fault refused WebSocket, so the client went on over SSE
    assert "connection connected over eventsource" in _after(text, "!! fault")
    # the summary table, from the store: every node completed with its result
    for node, rows in (("node-1", 100), ("node-4", 400)):
        assert any(line.split()[:2] == [node, "completed"] and f"result: {rows} rows" in line for line in text.splitlines())
    assert "store: 32 node updates applied to 4 nodes" in text
    assert [t for t in threading.enumerate() if t not in before and t.is_alive()] == []


def test_demo_preferring_sse_falls_back_to_websocket() -> None:
    out = io.StringIO()
    code = run_demo(out, nodes=4, pace=0.02, timeout=30, transport="sse")
    text = out.getvalue()
    assert code == 0, text
    assert "refuses eventsource" in text
    assert "connection connected over websocket" in _after(text, "!! fault")
    assert "every event exactly once, in order: yes" in text


def test_demo_live_bars_and_summary_table_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    code = run_demo(io.StringIO(), nodes=3, pace=0.02, timeout=30, console=console)
    text = out.getvalue()
    assert code == 0, text
    assert "\x1b[" in text  # cursor movement of the live display
    assert "━" in text  # bars
    assert "workflow demo" in text and "┃ node" in text  # the summary table
    assert "result: 300 rows" in text
    assert "every event exactly once, in order: yes" in text


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_demo_command_exits_zero_on_both_transports(transport: str) -> None:
    result = run_cli("demo", "--nodes", "3", "--pace", "0.02", "--transport", transport)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "exactly once, in order: yes" in result.stdout
    assert "\x1b[" not in result.stdout  # not a terminal: plain lines
    assert result.stderr == ""


def test_cli_without_command_prints_help() -> None:
    assert main([]) == 2
