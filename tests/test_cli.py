"""Every ``magk-client`` command end to end against the reference backend on 127.0.0.1.

Most run the command in a fresh interpreter (tests/cli_helpers.py), exactly as from a shell; the
argument checks run ``main()`` in-process. A command's failure must be one line on stderr and a
non-zero exit, never a traceback; Ctrl-C must exit 130 after the SDK's threads are joined.
"""

from __future__ import annotations

import configparser
import json
import signal
import socket
import threading
from typing import Any, Dict, List

import pytest
from cli_helpers import REPO, assert_one_line_error, assert_quiet_ctrl_c, closed_port, communicate, run_cli, start_cli

from magk_client.cli import SUBCOMMANDS, main
from magk_client.testing import Backend

# -------------------------------------------------------------------------- arguments (in-process)


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_command_has_help(name: str, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: magk-client {name}")
    if name in ("listen", "command", "health", "watch"):
        assert "--url BASE_URL" in out and "--token" in out and "--api-key" in out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["command", "start_workflow", "wf-1", "--data", "{not json"], "argument --data: not valid JSON"),
        (["command", "start_workflow", "wf-1", "--data", "[1, 2]"], "expected a JSON object"),
        (["command", "frobnicate", "wf-1"], "invalid choice: 'frobnicate'"),
        (["watch", "wf-1", "--refresh-rate", "50"], "at most 10 redraws a second"),
        (["listen", "--count", "0"], "expected a whole number >= 1"),
        (["health", "--timeout", "nan"], "expected a number > 0"),
        (["nonsense"], "invalid choice: 'nonsense'"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(argv: List[str], fragment: str, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, fragment, "--help")


def test_node_command_without_node_id_is_refused_before_connecting(capsys: Any) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    assert main(["command", "restart_node", "wf-1", "--url", url]) == 2
    assert_one_line_error(capsys.readouterr().err, "restart_node needs --node-id")


def test_without_a_command_prints_help(capsys: Any) -> None:
    assert main([]) == 2
    assert "usage: magk-client" in capsys.readouterr().out


def test_console_script_entry_point_is_main() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert "magk-client = magk_client.cli:main" in cfg["options.entry_points"]["console_scripts"]


# -------------------------------------------------------------------------- command


def test_command_success_prints_the_answer_and_exits_0(backend: Backend) -> None:
    result = run_cli("command", "start_workflow", "wf-1", "--url", backend.base_url)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["success"] is True and answer["command"] == "start_workflow"
    assert answer["data"]["workflowId"] == "wf-1" and answer["requestId"]
    assert result.stderr == ""
    backend.wait_for_workflow("wf-1", "completed")


def test_command_failure_prints_the_answer_and_exits_1(backend: Backend) -> None:
    result = run_cli("command", "pause_workflow", "wf-1", "--url", backend.base_url)
    assert result.returncode == 1
    answer = json.loads(result.stdout)
    assert answer["success"] is False and "idle" in answer["error"]
    assert_one_line_error(result.stderr, "pause_workflow failed", "idle")


def test_command_data_and_node_id_reach_the_backend(backend: Backend) -> None:
    result = run_cli(
        "command", "update_config", "wf-1", "--node-id", "n-2", "--data", '{"retries": 4}', "--url", backend.base_url
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"]["nodeId"] == "n-2"
    assert backend.workflow_snapshot("wf-1")["config"]["nodes"]["n-2"] == {"retries": 4}


def test_command_over_sse_goes_by_post() -> None:
    with Backend() as server:
        result = run_cli("command", "start_workflow", "wf-1", "--url", server.base_url, "--transport", "sse")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["success"] is True
        assert server.sse_connects >= 1 and server.ws_connects == 0


def test_credentials_come_from_the_environment() -> None:
    with Backend(token="s3cret", api_key="k3y") as server:
        ok = run_cli("command", "start_workflow", "wf-1", MAGK_URL=server.base_url, MAGK_TOKEN="s3cret", MAGK_API_KEY="k3y")
        assert ok.returncode == 0, ok.stderr
        refused = run_cli("command", "start_workflow", "wf-1", "--token", "wrong", "--api-key", "k3y", MAGK_URL=server.base_url)
        assert refused.returncode == 1
        assert_one_line_error(refused.stderr, f"cannot connect to {server.base_url}")
        assert "wrong" not in refused.stderr  # the token is never shown


def test_unreachable_backend_is_one_line_and_exit_1() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    for argv in (("command", "start_workflow", "wf-1"), ("watch", "wf-1"), ("listen",)):
        result = run_cli(*argv, "--url", url, timeout=60)
        assert result.returncode == 1, (argv, result.stderr)
        assert_one_line_error(result.stderr, f"cannot connect to {url}", "refused")
        assert result.stdout == ""


# -------------------------------------------------------------------------- health


def test_health_healthy_exits_0(backend: Backend) -> None:
    result = run_cli("health", "--url", backend.base_url)
    assert result.returncode == 0, result.stderr
    health = json.loads(result.stdout)
    assert health["status"] == "healthy" and health["services"]


def test_health_not_healthy_exits_1(backend: Backend) -> None:
    backend.set_health("degraded", database=False)
    result = run_cli("health", "--url", backend.base_url)
    assert result.returncode == 1
    health = json.loads(result.stdout)
    assert health["status"] == "degraded" and health["services"]["database"] is False


def test_health_on_a_terminal_is_a_table(backend: Backend) -> None:
    result = run_cli("health", "--url", backend.base_url, FORCE_COLOR="1", COLUMNS="100")
    assert result.returncode == 0, result.stderr
    assert "healthy" in result.stdout and "database" in result.stdout and "up" in result.stdout
    assert not result.stdout.lstrip().startswith("{")


def test_health_unreachable_is_one_line(capsys: Any) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    assert main(["health", "--url", url]) == 1
    assert_one_line_error(capsys.readouterr().err, f"no health from {url}")


# -------------------------------------------------------------------------- listen


def test_listen_filters_by_type_workflow_and_node() -> None:
    with Backend(workflows={"wf-1": ["a", "b"], "wf-2": ["a", "b"]}) as server:
        proc = start_cli(
            "listen", "--url", server.base_url, "--workflow", "wf-2", "--node", "b",
            "--type", "node_status_update", "--count", "2",
        )
        try:
            server.wait_for_connections(1, timeout=30)
            server.execute_command("start_workflow", "wf-1")
            server.execute_command("start_workflow", "wf-2")
        finally:
            out, err = communicate(proc)
        assert proc.returncode == 0, err
        events = [json.loads(line) for line in out.splitlines()]
        assert [(e["type"], e["workflowId"], e["nodeId"], e["data"]["status"]) for e in events] == [
            ("node_status_update", "wf-2", "b", "running"),
            ("node_status_update", "wf-2", "b", "completed"),
        ]
        assert all(e["id"].startswith("e-") for e in events)


def test_listen_every_event_of_a_workflow_in_order(backend: Backend) -> None:
    proc = start_cli("listen", "--url", backend.base_url, "--type", "workflow_event,node_result", "--max-events", "5")
    try:
        backend.wait_for_connections(1, timeout=30)
        backend.execute_command("start_workflow", "wf-1")
    finally:
        out, err = communicate(proc)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    kinds = [e["type"] if e["type"] != "workflow_event" else e["data"]["type"] for e in events]
    assert kinds == ["workflow_started", "node_result", "node_result", "node_result", "workflow_completed"]
    logged = [e["id"] for e in backend.logged_events() if e["type"] in ("workflow_event", "node_result")]
    assert [e["id"] for e in events] == logged


def test_listen_timeout_ends_quietly(backend: Backend) -> None:
    result = run_cli("listen", "--url", backend.base_url, "--timeout", "0.5")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


def test_listen_stdout_closed_by_reader_is_not_an_error(backend: Backend) -> None:
    proc = start_cli("listen", "--url", backend.base_url)
    try:
        backend.wait_for_connections(1, timeout=30)
        backend.execute_command("start_workflow", "wf-1")
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert json.loads(first)["data"]["type"] == "workflow_started"
        proc.stdout.close()  # like `magk-client listen | head -1`
        backend.wait_for_workflow("wf-1", "completed", timeout=30)
        backend.execute_command("start_workflow", "wf-1")  # more events to write into the closed pipe
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert proc.wait(timeout=30) == 0, err
        assert "Traceback" not in err and err == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -------------------------------------------------------------------------- watch


def _watch(server: Backend, *extra: str, **env: str) -> Any:
    proc = start_cli("watch", "wf-1", "--url", server.base_url, "--timeout", "60", *extra, **env)
    try:
        server.wait_for_connections(1, timeout=30)
        server.execute_command("start_workflow", "wf-1")
    finally:
        out, err = communicate(proc)
    return proc.returncode, out, err


def test_watch_until_the_workflow_completes(backend: Backend) -> None:
    code, out, err = _watch(backend)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[-1] == "wf-1 completed: 3 node(s); completed 3"
    for node in ("n-1", "n-2", "n-3"):
        statuses = [line.split()[1] for line in lines if line.split()[:1] == [node]]
        assert statuses == ["pending", "running", "completed"], out
    assert "-- workflow wf-1 completed" in lines


def test_watch_a_failing_workflow_exits_1(backend: Backend) -> None:
    backend.execute_command("update_config", "wf-1", data={"failNode": "n-2"})
    code, out, err = _watch(backend)
    assert code == 1, out + err
    assert out.splitlines()[-1] == "wf-1 failed: 3 node(s); completed 1, error 1, pending 1"
    assert any(line.startswith("n-2") and "error" in line and "simulated failure" in line for line in out.splitlines()), out


def test_watch_live_table_on_a_terminal(backend: Backend) -> None:
    code, out, err = _watch(backend, "--refresh-rate", "10", FORCE_COLOR="1", COLUMNS="120", LINES="40")
    assert code == 0, err
    assert "workflow wf-1 completed" in out
    assert "┃ node" in out or "node" in out  # the table's header
    assert "result: 300 rows" in out  # n-3's row in the final table
    assert "\x1b[" in out  # rich, not plain lines


def test_watch_timeout_is_one_line_and_exit_1(backend: Backend) -> None:
    result = run_cli("watch", "wf-1", "--url", backend.base_url, "--timeout", "0.5")
    assert result.returncode == 1
    assert_one_line_error(result.stderr, "did not end within 0.5 s")


# -------------------------------------------------------------------------- Ctrl-C


@pytest.mark.parametrize("argv", [("listen",), ("watch", "wf-1"), ("watch", "wf-1", "--plain")])
def test_ctrl_c_exits_130_cleanly(backend: Backend, argv: Any) -> None:
    env: Dict[str, str] = {"FORCE_COLOR": "1"} if argv == ("watch", "wf-1") else {}
    proc = start_cli(*argv, "--url", backend.base_url, interruptible=True, **env)
    assert_quiet_ctrl_c(proc, lambda: backend.wait_for_connections(1, timeout=30))
    backend.wait_for_disconnects(timeout=10)


def test_ctrl_c_in_process_joins_every_thread(backend: Backend, capsys: Any) -> None:
    """The same in this process: main() returns 130 and no SDK thread is left behind."""
    before = set(threading.enumerate())

    def interrupt() -> None:
        backend.wait_for_connections(1, timeout=30)
        signal.raise_signal(signal.SIGINT)

    helper = threading.Thread(target=interrupt, name="test-interrupt")
    helper.start()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = main(["listen", "--url", backend.base_url])
    finally:
        signal.signal(signal.SIGINT, previous)
        helper.join(30)
    assert code == 130
    left = [t.name for t in threading.enumerate() if t not in before and t is not helper and t.is_alive()]
    assert left == []
    assert capsys.readouterr().err == ""


# -------------------------------------------------------------------------- serve


def test_serve_on_a_busy_port_is_one_line(capsys: Any) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    assert_one_line_error(capsys.readouterr().err, f"cannot listen on 127.0.0.1:{port}", "in use")


def test_serve_ctrl_c_exits_130_cleanly() -> None:
    proc = start_cli("serve", "--port", "0", interruptible=True)

    def listening() -> None:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("MAGK reference backend on http://127.0.0.1:")

    assert_quiet_ctrl_c(proc, listening)


# -------------------------------------------------------------------------- a backend that goes away


@pytest.mark.parametrize("argv", [("listen",), ("watch", "wf-1")])
def test_losing_the_backend_for_good_is_one_line_and_exit_1(argv: Any) -> None:
    server = Backend().start()
    try:
        proc = start_cli(*argv, "--url", server.base_url, "--retries", "1")
        server.wait_for_connections(1, timeout=30)
    finally:
        server.stop()
    _out, err = communicate(proc)
    assert proc.returncode == 1, err
    # (refused, or a timeout when the reconnect reached the backend while it was stopping)
    assert_one_line_error(err, "lost the connection")
