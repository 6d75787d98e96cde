"""``magk-client serve`` as a subprocess, driven by a raw websocket-client script."""

from __future__ import annotations

import contextlib
import json
import re
import signal
from typing import Iterator

import websocket
from cli_helpers import start_cli

from magk_client.cli import SUBCOMMANDS, build_parser, main


@contextlib.contextmanager
def serve(*args: str) -> Iterator[str]:
    """``magk-client serve --port 0 *args`` in a subprocess (this repository on PYTHONPATH,
    installed or not); yields its WebSocket URL; SIGTERM then ends it with status 0."""
    proc = start_cli("serve", "--port", "0", *args)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"on http://127\.0\.0\.1:(\d+)", first)
        assert match, first + (proc.stderr.read() if proc.stderr and proc.poll() is not None else "")
        yield f"ws://127.0.0.1:{match.group(1)}/ws/realtime"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_serve_subprocess_runs_a_whole_workflow() -> None:
    with serve("--host", "127.0.0.1", "--pace", "0", "--token", "tok") as url:
        ws = websocket.create_connection(url, header=["Authorization: Bearer tok"], timeout=10)
        try:
            assert json.loads(ws.recv())["type"] == "subscription_ack"
            command = {"command": "start_workflow", "workflowId": "wf-1", "requestId": "cli-1"}
            ws.send(json.dumps({"id": "cli-1", "type": "workflow_event", "workflowId": "wf-1", "data": {"type": "command", "command": command}}))
            seen = []
            while True:
                msg = json.loads(ws.recv())
                seen.append(msg)
                if msg["type"] == "workflow_event" and msg["data"]["type"] == "workflow_completed":
                    break
        finally:
            ws.close()
        events = [m for m in seen if "id" in m]
        assert len(events) == 2 + 3 * 8
        assert events[0]["data"]["type"] == "workflow_started"
        assert [e["id"] for e in events] == [f"e-{i}" for i in range(1, 27)]
        assert any(m["data"].get("type") == "command_response" and m["data"]["response"]["success"] for m in seen if m["type"] == "workflow_event")


def test_parser_has_subcommand_table() -> None:
    assert "serve" in SUBCOMMANDS
    args = build_parser().parse_args(["serve", "--port", "0", "--workflow", "w=a,b", "--refuse-websocket", "503"])
    assert args.workflow == [("w", ["a", "b"])] and args.refuse_websocket == 503
    assert main([]) == 2


def test_serve_no_acks_turns_acknowledgements_off() -> None:
    assert build_parser().parse_args(["serve"]).acks is True
    with serve("--no-acks") as url:
        ws = websocket.create_connection(url, timeout=10)
        try:
            hello = json.loads(ws.recv())
            assert hello["type"] == "subscription_ack" and "ack" not in hello["data"]["features"]
            ws.send(json.dumps({"id": "m-1", "type": "workflow_event", "data": {"type": "note"}}))
            ws.send(json.dumps({"type": "ping", "data": {"pingId": "p"}}))
            assert json.loads(ws.recv())["type"] == "pong"  # no ack came first
        finally:
            ws.close()
