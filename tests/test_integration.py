"""RealtimeIntegration against the reference backend on 127.0.0.1 (both transports where it matters):
the store against the backend's replay log after a run that completes, fails and restarts; one
application per event; the workflow()/node() context managers; the store's connection state through
drops; wait_until_complete; the global service from many threads; each ServiceIntegrationConfig field;
and the pure parts (interests, connection tracker, local-change messages, the run's state machine)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from adapter_helpers import TRANSPORTS, eventually, make_adapter, sdk_threads
from timings import FAST

from magk_client import (
    ClientClosedError,
    ConfigError,
    ConnectionState,
    ConnectionType,
    MagkError,
    MagkTimeoutError,
    NodeExecutionState,
    NodeExecutionStore,
    NotConnectedError,
    RealtimeIntegration,
    ServiceIntegrationConfig,
    WorkflowWaitTimeout,
    cleanup_global_realtime_service,
    create_global_realtime_service,
    get_global_realtime_service,
)
from magk_client.testing import Backend
from magk_client.testing.recorder import Recorder

pytestmark = pytest.mark.timeout(90)

Make = Callable[..., RealtimeIntegration]
NODE_TYPES = {"node_status_update", "node_progress_update", "node_error", "node_result", "node_metadata", "node_log"}


@pytest.fixture()
def server() -> Iterator[Backend]:
    """Paced a little, so a run can be paused before it ends (3 nodes: about 0.5 s)."""
    with Backend(pace=0.02, workflows={"wf-1": ["n-1", "n-2", "n-3"], "wf-2": ["m-1"]}) as backend:
        yield backend


@pytest.fixture()
def make(server: Backend) -> Iterator[Make]:
    """Integrations over fast-reconnecting adapters (closed at teardown; no SDK thread may outlive them)."""
    made: List[RealtimeIntegration] = []

    def build(transport: str = "websocket", config: Optional[Dict[str, Any]] = None, **kwargs: Any) -> RealtimeIntegration:
        adapter = make_adapter(server.base_url, transport, kwargs.pop("connection", None))
        cfg: Dict[str, Any] = {"prefer_websocket": transport == "websocket"}
        cfg.update(config or {})
        integration = RealtimeIntegration(cfg, adapter=adapter, **kwargs)
        made.append(integration)
        return integration

    yield build
    for integration in made:
        integration.close()
        integration.adapter.close()
    eventually(lambda: not sdk_threads(), 10, "every SDK thread to end")


@pytest.fixture(autouse=True)
def no_global_service() -> Iterator[None]:
    yield
    cleanup_global_realtime_service()


# ---------------------------------------------------------------------- what the backend published

def backend_record(backend: Backend, workflow_id: str) -> Dict[str, Dict[str, Any]]:
    """Each node's state folded from the backend's replay log (every event it published, in order),
    with the protocol's rules: error/result set their status, metadata merges, logs append, a restart
    (running/pending after error/completed) clears error and result. ``events`` counts its events."""
    nodes: Dict[str, Dict[str, Any]] = {}
    for event in backend.logged_events():
        node_id, kind, data = event.get("nodeId"), event.get("type"), event.get("data") or {}
        if event.get("workflowId") != workflow_id or not node_id or kind not in NODE_TYPES:
            continue
        node = nodes.setdefault(
            node_id,
            {"status": "idle", "progress": None, "error": None, "result": None, "metadata": {}, "logs": [], "events": 0},
        )
        node["events"] += 1
        if kind == "node_status_update":
            if data["status"] in ("running", "pending") and node["status"] in ("error", "completed"):
                node["error"] = node["result"] = None
            node["status"] = data["status"]
        elif kind == "node_progress_update":
            node["progress"] = data["progress"]
        elif kind == "node_error":
            node["error"], node["status"] = data["error"], "error"
        elif kind == "node_result":
            node["result"], node["status"] = data["result"], "completed"
        elif kind == "node_metadata":
            node["metadata"] = {**node["metadata"], **data["metadata"]}
        else:
            node["logs"].extend(data["logs"])
    return nodes


def assert_store_matches_backend(integration: RealtimeIntegration, backend: Backend, workflow_id: str) -> None:
    record = backend_record(backend, workflow_id)
    assert record, "the backend published no node event"
    stored = integration.store.get_workflow_nodes(workflow_id)
    assert set(stored) == set(record)
    for node_id, expected in record.items():
        state = stored[node_id].to_dict()
        for name in ("status", "progress", "error", "result", "metadata", "logs"):
            assert state[name] == expected[name], f"{node_id}.{name}"
        assert state["version"] == expected["events"], f"{node_id}: every event applied exactly once"
    engine = backend.workflow_snapshot(workflow_id)["nodeStatus"]
    for node_id, status in engine.items():
        if node_id in stored:
            assert stored[node_id].status == status
        else:
            assert status == "pending"  # never reached: no event, nothing in the store


# ---------------------------------------------------------------------- the store against the backend

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_after_a_completed_run_every_node_in_the_store_matches_the_backends_record(
    make: Make, server: Backend, transport: str
) -> None:
    integration = make(transport)
    integration.connect(timeout=10)
    with integration.workflow("wf-1") as wf:
        wf.start()
        result = wf.wait_until_complete(timeout=30)
    assert result.status == "completed" and result.succeeded and result.error is None
    assert server.workflow_state("wf-1") == "completed"
    assert_store_matches_backend(integration, server, "wf-1")
    # the result's nodes are the store's states as of the ending event: every node event before it applied
    assert set(result.nodes) == {"n-1", "n-2", "n-3"}
    assert all(result.nodes[n] is integration.store.get_node_state("wf-1", n) for n in result.nodes)
    status = integration.get_status()
    assert status.events_duplicate == 0 and status.events_stale == 0
    assert status.events_applied == sum(r["events"] for r in backend_record(server, "wf-1").values())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_after_a_failed_run_and_a_restart_the_store_matches_the_backends_record(
    make: Make, server: Backend, transport: str
) -> None:
    integration = make(transport)
    integration.connect(timeout=10)
    with integration.workflow("wf-1") as wf:
        wf.controller.update_config({"failNode": "n-2"})
        wf.start()
        failed = wf.wait_until_complete(timeout=30)
        assert failed.status == "failed" and not failed.succeeded
        assert failed.node_id == "n-2" and failed.error and "n-2" in failed.error
        assert_store_matches_backend(integration, server, "wf-1")
        n2 = integration.store.get_node_state("wf-1", "n-2")
        assert n2 is not None and n2.status == "error" and n2.error_message
        assert integration.store.get_node_state("wf-1", "n-3") is None
        # the engine's failNode, off again; a restart from n-2 is a new run that completes
        wf.controller.update_config({"failNode": None})
        wf.restart_node("n-2")
        done = wf.wait_until_complete(timeout=30)
    assert done.status == "completed" and done.event.id != failed.event.id
    assert_store_matches_backend(integration, server, "wf-1")
    n2 = integration.store.get_node_state("wf-1", "n-2")
    assert n2 is not None and n2.status == "completed" and n2.error is None and n2.result is not None


def test_an_event_seen_by_a_workflow_and_a_node_subscription_is_applied_once(make: Make, server: Backend) -> None:
    integration = make()
    integration.connect(timeout=10)
    extra = integration.subscribe_to_workflow("wf-1")
    with integration.workflow("wf-1") as wf, integration.node("n-2", "wf-1") as node:
        wf.start()
        wf.wait_until_complete(timeout=30)
        state = node.state
        assert state is not None and state.status == "completed"
    assert integration.unsubscribe(extra)
    assert_store_matches_backend(integration, server, "wf-1")  # versions == events: once each
    assert integration.store.stats.duplicates_ignored == 0  # fed once, not left to the store's de-duplication
    assert integration.get_status().events_duplicate == 0


# ---------------------------------------------------------------------- the context managers

def test_the_context_managers_unsubscribe_on_exit_even_when_the_body_raises(make: Make, server: Backend) -> None:
    integration = make()
    integration.connect(timeout=10)
    sentinel = Recorder[Tuple[Any, Any]]()
    integration.store.subscribe(lambda new, old: sentinel((new, old)), workflow_id="wf-2")
    with integration.workflow("wf-2"):
        wf = integration.workflow("wf-1")
        assert not wf.is_subscribed
        with pytest.raises(RuntimeError, match="body"), wf:
            assert wf.is_subscribed and wf.subscription_id in integration.get_status().subscriptions
            raise RuntimeError("the body raised")
        assert not wf.is_subscribed
        node = integration.node("n-1", "wf-1")
        with pytest.raises(ValueError, match="node body"), node:
            assert node.is_subscribed
            raise ValueError("the node body raised")
        assert not node.is_subscribed
        assert list(integration.get_status().subscriptions.values()) == ["workflow:wf-2"]
        # wf-1's event is no longer fed to the store; wf-2's (published after it) still is
        server.publish({"type": "node_status_update", "workflowId": "wf-1", "nodeId": "n-1", "data": {"status": "running"}})
        server.publish({"type": "node_status_update", "workflowId": "wf-2", "nodeId": "m-1", "data": {"status": "running"}})
        sentinel.wait_count(1)
        assert integration.store.get_node_state("wf-1", "n-1") is None
        with pytest.raises(MagkError, match="with block"):
            wf.wait_until_complete(timeout=1)
    assert integration.get_status().subscriptions == {}
    with wf:  # a handle may be entered again
        assert wf.is_subscribed
    with pytest.raises(MagkError, match="already subscribed"), wf, wf:
        pass
    assert not wf.is_subscribed


# ---------------------------------------------------------------------- the connection state in the store

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_stores_connection_state_follows_the_service_through_a_forced_drop(
    make: Make, server: Backend, transport: str
) -> None:
    integration = make(transport)
    seen = Recorder[Tuple[ConnectionState, Any]]()
    # registered after the integration's listener: called right after it, for the same notice
    integration.service.on_connection_state_change(lambda state, error: seen((state, integration.store.connection_state)))
    assert integration.store.connection_state.state is ConnectionState.DISCONNECTED
    integration.connect(timeout=10)
    seen.wait_for(lambda items: any(s is ConnectionState.CONNECTED for s, _ in items))
    server.refuse_websocket(503)
    server.refuse_sse(503)
    server.drop_connections()
    seen.wait_for(lambda items: sum(1 for s, _ in items if s is ConnectionState.RECONNECTING) >= 3, 20)
    server.reset_faults()
    seen.wait_for(lambda items: sum(1 for s, _ in items if s is ConnectionState.CONNECTED) >= 2, 20)
    items = seen.items
    assert all(snapshot.state is state for state, snapshot in items)
    attempts = [snapshot.reconnect_attempts for state, snapshot in items if state is ConnectionState.RECONNECTING]
    assert attempts[:3] == [1, 2, 3]  # one per failure of this outage
    assert all(snapshot.last_error for state, snapshot in items if state is ConnectionState.RECONNECTING)
    final = integration.store.connection_state
    assert final.state is ConnectionState.CONNECTED and final.reconnect_attempts == 0 and final.last_error is None
    assert integration.get_status().store_connection == final
    integration.disconnect()
    assert integration.store.connection_state.state is ConnectionState.DISCONNECTED


# ---------------------------------------------------------------------- wait_until_complete

def test_wait_until_complete_times_out_with_a_clear_error_and_returns_once_the_run_ends(
    make: Make, server: Backend
) -> None:
    integration = make()
    integration.connect(timeout=10)
    with integration.workflow("wf-1") as wf:
        began = time.monotonic()
        with pytest.raises(WorkflowWaitTimeout) as caught:
            wf.wait_until_complete(timeout=0.2)
        assert time.monotonic() - began >= 0.2
        assert isinstance(caught.value, MagkTimeoutError) and isinstance(caught.value, TimeoutError)
        assert caught.value.workflow_id == "wf-1" and caught.value.last_status is None
        assert "wf-1" in str(caught.value) and "0.2 s" in str(caught.value)
        wf.start()
        wf.pause()
        with pytest.raises(WorkflowWaitTimeout) as paused:
            wf.wait_until_complete(timeout=0.2)
        assert paused.value.last_status == "paused" and wf.status == "paused"
        assert server.workflow_state("wf-1") == "paused"
        wf.resume()
        result = wf.wait_until_complete(timeout=None)  # explicit: as long as it takes
        assert result.status == "completed" and wf.result is result and wf.status == "completed"
        assert wf.wait_until_complete(timeout=0) is result  # ended: at once, even with no time left
        with pytest.raises(TypeError):
            wf.wait_until_complete()  # type: ignore[call-arg]  # no timeout: never an unbounded wait by default
        with pytest.raises(ConfigError):
            wf.wait_until_complete(timeout=-1)
        # a second run: the first one's ending does not end the wait for it
        wf.start()
        second = wf.wait_until_complete(timeout=30)
        assert second.status == "completed" and second.event.id != result.event.id


def test_a_start_waits_for_its_own_run_while_the_previous_runs_ending_is_still_on_its_way(
    make: Make, server: Backend
) -> None:
    # SSE: the start goes as POST /commands, its answer can overtake events on the stream
    integration = make("eventsource")
    integration.connect(timeout=10)
    with integration.workflow("wf-1") as wf:
        server.set_delay(0.3)  # every event (and HTTP answer) leaves the backend 0.3 s late
        server.execute_command("start_workflow", "wf-1")  # a run the handle did not start
        server.wait_for_workflow("wf-1", "completed", timeout=30)  # over on the server; its events in transit
        first_ending = server.logged_events()[-1]
        assert first_ending["data"]["type"] == "workflow_completed"
        wf.start()
        result = wf.wait_until_complete(timeout=30)
        assert result.event.id != first_ending["id"]  # the new run's ending, not the old one's
        assert server.logged_events()[-1]["id"] == result.event.id


def test_wait_until_complete_returns_a_stopped_run(make: Make, server: Backend) -> None:
    integration = make("eventsource")
    integration.connect(timeout=10)
    with integration.workflow("wf-1") as wf:
        wf.start()
        wf.pause()
        wf.stop()
        result = wf.wait_until_complete(timeout=30)
    assert result.status == "stopped" and not result.succeeded


def test_wait_until_complete_from_any_thread_but_not_the_dispatcher(make: Make, server: Backend) -> None:
    integration = make()
    integration.connect(timeout=10)
    refused = Recorder[BaseException]()
    with integration.workflow("wf-1") as wf:

        def listener(new: Optional[NodeExecutionState], old: Optional[NodeExecutionState]) -> None:
            if len(refused) == 0:
                try:
                    wf.wait_until_complete(timeout=5)
                except BaseException as exc:
                    refused(exc)

        integration.store.subscribe(listener, workflow_id="wf-1")
        results: List[Any] = []
        waiters = [threading.Thread(target=lambda: results.append(wf.wait_until_complete(timeout=30))) for _ in range(3)]
        for thread in waiters:
            thread.start()
        wf.start()
        for thread in waiters:
            thread.join(30)
        assert len(results) == 3 and all(r.status == "completed" for r in results)
    [error] = refused.wait_count(1)
    assert isinstance(error, MagkError) and "dispatcher" in str(error)


@pytest.mark.parametrize("how", ["disconnect", "drop without auto-reconnect"])
def test_wait_until_complete_raises_when_the_connection_ends(make: Make, server: Backend, how: str) -> None:
    integration = make(config={"enable_auto_reconnect": how == "disconnect"})
    integration.connect(timeout=10)
    outcome = Recorder[BaseException]()
    with integration.workflow("wf-1") as wf:
        wf.start()
        wf.pause()

        def wait() -> None:
            try:
                wf.wait_until_complete(timeout=60)
            except BaseException as exc:
                outcome(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        if how == "disconnect":
            integration.disconnect()
        else:
            server.drop_connections()
        [error] = outcome.wait_count(1, 30)
        waiter.join(10)
    assert isinstance(error, NotConnectedError) and "wf-1" in str(error)


def test_wait_until_complete_before_connect_raises_at_once(make: Make) -> None:
    integration = make()
    with integration.workflow("wf-1") as wf, pytest.raises(NotConnectedError, match="disconnected"):
        wf.wait_until_complete(timeout=60)


# ---------------------------------------------------------------------- the global service

def test_the_global_service_functions_from_many_threads(server: Backend) -> None:
    threads = 8
    barrier = threading.Barrier(threads)
    made: List[Any] = [None] * threads

    def create(i: int) -> None:
        barrier.wait()
        made[i] = create_global_realtime_service(
            websocket_url=server.websocket_url, event_source_url=server.event_source_url, **FAST
        )

    run_threads(create, threads)
    current = get_global_realtime_service()
    assert current is not None and sum(1 for s in made if s is current) == 1
    for service in made:
        if service is not current:
            assert service.state is ConnectionState.CLOSED
            with pytest.raises(ClientClosedError):
                service.connect(timeout=1)
    current.connect(timeout=10)
    seen: List[Any] = []
    run_threads(lambda i: seen.append(get_global_realtime_service()), threads)
    assert len(seen) == threads and all(s is current for s in seen)
    # a new global replaces (and closes) the connected one: its threads end
    replacement = create_global_realtime_service(websocket_url=server.websocket_url, **FAST)
    assert current.state is ConnectionState.CLOSED and get_global_realtime_service() is replacement
    assert not sdk_threads()
    replacement.connect(timeout=10)
    cleaned: List[bool] = []

    def cleanup(i: int) -> None:
        barrier.wait()
        cleaned.append(cleanup_global_realtime_service())

    run_threads(cleanup, threads)
    assert sorted(cleaned) == [False] * (threads - 1) + [True]
    assert replacement.state is ConnectionState.CLOSED and get_global_realtime_service() is None
    assert not sdk_threads()
    with pytest.raises(ConfigError):
        create_global_realtime_service(max_queue_size=-1)
    assert get_global_realtime_service() is None


def run_threads(target: Callable[[int], None], n: int) -> None:
    workers = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert not worker.is_alive()


# ---------------------------------------------------------------------- each config field

def test_the_config_takes_the_seeds_camel_case_fields_and_refuses_bad_ones() -> None:
    cfg = ServiceIntegrationConfig.from_dict({
        "backendBaseUrl": "http://127.0.0.1:9", "enableAutoReconnect": False, "preferWebsocket": False,
        "enableOfflineSync": False, "enableStoreSync": False, "syncBidirectional": True, "enableDebugLogging": True,
    })
    assert cfg == ServiceIntegrationConfig("http://127.0.0.1:9", False, False, False, False, True, True)
    assert ServiceIntegrationConfig.from_json(cfg.to_json()) == cfg
    for bad in ({"enableStoreSink": True}, {"preferWebsocket": "yes"}, {"backendBaseUrl": "ftp://x"}):
        with pytest.raises(ConfigError):
            ServiceIntegrationConfig.from_dict(bad)


def test_backend_base_url_and_prefer_websocket_make_the_integrations_adapter(server: Backend) -> None:
    with RealtimeIntegration({"backendBaseUrl": server.base_url, "preferWebsocket": False}) as integration:
        assert integration.adapter.config.backend_base_url == server.base_url
        assert integration.service.connection_type is ConnectionType.EVENTSOURCE
        server.wait_for_connections(1, transport="sse")
        assert server.ws_connects == 0
        assert integration.get_status().is_connected
    with RealtimeIntegration(ServiceIntegrationConfig(backend_base_url=server.base_url)) as integration:
        assert integration.service.connection_type is ConnectionType.WEBSOCKET
        server.wait_for_connections(1, transport="websocket")
    assert not sdk_threads()
    with pytest.raises(ClientClosedError):
        integration.connect()
    default = RealtimeIntegration()
    assert default.config.backend_base_url == "http://localhost:8000"
    assert default.service.config.websocket_url == "ws://localhost:8000/ws/realtime"
    default.close()


def test_a_given_adapter_gets_the_configs_connection_settings_or_lends_its_own(server: Backend) -> None:
    adapter = make_adapter(server.base_url, "eventsource")
    try:
        assert RealtimeIntegration(adapter=adapter).config == ServiceIntegrationConfig(
            backend_base_url=server.base_url, prefer_websocket=False
        )
        RealtimeIntegration(
            {"enableAutoReconnect": False, "preferWebsocket": True, "enableOfflineSync": False, "enableDebugLogging": True},
            adapter=adapter,
        )
        cfg = adapter.service.config
        assert not cfg.auto_reconnect and not cfg.enable_offline_queue and cfg.enable_debug_logging
        assert cfg.preferred_type is ConnectionType.WEBSOCKET
        with pytest.raises(ConfigError, match="backend_base_url"):
            RealtimeIntegration({"backendBaseUrl": "http://127.0.0.1:9"}, adapter=adapter)
        with pytest.raises(ConfigError):
            RealtimeIntegration(adapter=object())  # type: ignore[arg-type]
    finally:
        adapter.close()


def test_enable_auto_reconnect_off_ends_the_session_at_the_first_drop(make: Make, server: Backend) -> None:
    integration = make(config={"enable_auto_reconnect": False})
    assert integration.service.config.auto_reconnect is False
    states = Recorder[Any]()
    integration.service.on_connection_state_change(lambda state, error: states(state))
    integration.connect(timeout=10)
    server.drop_connections()
    states.wait_for(lambda items: ConnectionState.ERROR in items)
    snapshot = integration.store.connection_state
    assert snapshot.state is ConnectionState.ERROR and snapshot.last_error
    eventually(lambda: not any(t.startswith("magk-supervisor") for t in sdk_threads()), 10, "the session to end")
    assert server.ws_connects == 1 and integration.service.state is ConnectionState.ERROR


@pytest.mark.parametrize("offline_sync", [True, False])
def test_enable_offline_sync_queues_local_changes_made_offline_or_refuses_them(
    make: Make, server: Backend, offline_sync: bool
) -> None:
    integration = make(config={"enable_offline_sync": offline_sync, "sync_bidirectional": True})
    assert integration.service.config.enable_offline_queue is offline_sync
    integration.store.update_node_status("wf-1", "n-1", "running")  # before connect: offline
    status = integration.get_status()
    assert (status.sync_queued, status.sync_failed) == ((1, 0) if offline_sync else (0, 1))
    if not offline_sync:
        with pytest.raises(NotConnectedError):
            integration.service.send_message({"type": "node_log", "workflowId": "wf-1", "nodeId": "n-1", "data": {}})
    integration.connect(timeout=10)
    # connect() returns once the service is connected, a moment before it sends directly (it first
    # flushes its queue; with the queue off a send in that moment is refused): let an event through first
    seen = Recorder[Any]()
    integration.subscribe_to_node("n-2", "wf-1", seen)
    server.publish({"type": "node_status_update", "workflowId": "wf-1", "nodeId": "n-2", "data": {"status": "running"}})
    seen.wait_count(1)
    integration.store.update_node_status("wf-1", "n-1", "completed")
    received = server.wait_for_received(lambda m: m.message.get("type") == "node_status_update" and m.message["data"]["status"] == "completed")
    assert len(received) == 1
    statuses = [m.message["data"]["status"] for m in server.received_messages if m.message.get("type") == "node_status_update"]
    assert statuses == (["running", "completed"] if offline_sync else ["completed"])
    status = integration.get_status()  # right after connect() a send may still go through the queue
    assert status.sync_sent + status.sync_queued == (2 if offline_sync else 1)
    assert status.sync_failed == (0 if offline_sync else 1)


@pytest.mark.parametrize("store_sync", [True, False])
def test_enable_store_sync_decides_whether_events_reach_the_store(make: Make, server: Backend, store_sync: bool) -> None:
    integration = make(config={"enable_store_sync": store_sync})
    integration.connect(timeout=10)
    with integration.workflow("wf-1") as wf:
        wf.start()
        result = wf.wait_until_complete(timeout=30)
    assert result.status == "completed"
    if store_sync:
        assert len(integration.store) == 3 and set(result.nodes) == {"n-1", "n-2", "n-3"}
    else:
        assert len(integration.store) == 0 and result.nodes == {} and integration.get_status().events_applied == 0
    assert integration.store.connection_state.state is ConnectionState.CONNECTED  # kept in step either way


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sync_bidirectional_sends_local_store_changes_and_never_echoes_the_backends(
    make: Make, server: Backend, transport: str
) -> None:
    integration = make(transport, config={"sync_bidirectional": True})
    integration.connect(timeout=10)
    with integration.workflow("wf-1") as wf:
        wf.start()
        wf.wait_until_complete(timeout=30)
    store = integration.store
    store.update_node_progress("wf-1", "local", 40, timestamp="2030-01-01T00:00:00.000Z")
    store.update_node_error("wf-1", "local", "disk full")
    store.update_node_metadata("wf-1", "local", {"rows": 3})
    store.add_node_log("wf-1", "local", "hello")
    server.wait_for_received(lambda m: m.message.get("type") == "node_log")
    local = [m.message for m in server.received_messages if m.message.get("type") in NODE_TYPES]
    assert [(m["type"], m["nodeId"]) for m in local] == [
        ("node_progress_update", "local"), ("node_error", "local"), ("node_metadata", "local"), ("node_log", "local"),
    ]  # the run's events, applied from the backend, were not sent back
    assert local[0]["data"] == {"progress": {"percentage": 40}} and local[0]["timestamp"] == "2030-01-01T00:00:00.000Z"
    assert local[1]["data"] == {"error": {"message": "disk full"}}
    assert local[2]["data"] == {"metadata": {"rows": 3}}
    assert local[3]["data"]["logs"][0]["message"] == "hello"
    status = integration.get_status()
    assert status.sync_sent + status.sync_queued == 4 and status.sync_failed == 0


def test_without_sync_bidirectional_local_changes_stay_local(make: Make, server: Backend) -> None:
    integration = make()
    integration.connect(timeout=10)
    integration.store.update_node_status("wf-1", "n-1", "running")
    integration.service.send_message({"type": "custom", "id": "after"})  # same connection, after it
    server.wait_for_received(lambda m: m.message.get("id") == "after")
    assert [m.message.get("type") for m in server.received_messages] == ["custom"]
    assert integration.get_status().sync_sent == 0


@pytest.mark.parametrize("debug", [True, False])
def test_enable_debug_logging_logs_each_message(
    make: Make, server: Backend, caplog: pytest.LogCaptureFixture, debug: bool
) -> None:
    caplog.set_level(logging.DEBUG, logger="magk_client")
    integration = make(config={"enable_debug_logging": debug})
    assert integration.service.config.enable_debug_logging is debug
    integration.connect(timeout=10)
    with integration.workflow("wf-1") as wf:
        wf.start()
        wf.wait_until_complete(timeout=30)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    service_lines = [line for line in lines if line.startswith("<- node_status_update")]
    store_lines = [line for line in lines if "store <- node_status_update" in line]
    assert bool(service_lines) is debug and bool(store_lines) is debug


# ---------------------------------------------------------------------- the pure parts

def test_local_update_messages_follow_the_protocols_shapes() -> None:
    from magk_client.integration_sync import local_update_messages

    assert local_update_messages("w", "n", {"status": "running"}, None) == [
        {"type": "node_status_update", "workflowId": "w", "nodeId": "n", "data": {"status": "running"}}
    ]
    both = local_update_messages("w", "n", {"status": "error", "error": {"message": "x"}}, "t")
    assert [m["type"] for m in both] == ["node_error"] and both[0]["timestamp"] == "t"
    many = local_update_messages(
        "w", "n", {"status": "paused", "progress": {"current": 1}, "result": {"r": 1}, "metadata": {"m": 1}, "logs": [{"message": "l"}]}, None
    )
    assert [m["type"] for m in many] == ["node_status_update", "node_progress_update", "node_result", "node_metadata", "node_log"]
    assert local_update_messages("w", "n", {"progress": None, "error": None, "metadata": {}}, None) == []  # clears: no message


def test_the_connection_tracker_counts_the_attempts_of_one_outage() -> None:
    from magk_client.errors import CircuitOpenError, NetworkError
    from magk_client.integration_sync import ConnectionTracker

    tracker = ConnectionTracker()
    views = [
        tracker.on_state(ConnectionState.CONNECTING, None),
        tracker.on_state(ConnectionState.CONNECTED, None),
        tracker.on_state(ConnectionState.RECONNECTING, NetworkError("dropped")),
        tracker.on_state(ConnectionState.RECONNECTING, NetworkError("refused")),
        tracker.on_state(ConnectionState.RECONNECTING, CircuitOpenError(2, 1.0)),
        tracker.on_state(ConnectionState.ERROR, NetworkError("refused again")),
    ]
    assert [v.reconnect_attempts for v in views] == [0, 0, 1, 2, 2, 2]
    assert views[-1].last_error == "NetworkError: refused again"
    connected = tracker.on_state(ConnectionState.CONNECTED, None)
    assert (connected.reconnect_attempts, connected.last_error) == (0, None)


def test_a_run_waiting_for_its_start_ignores_the_previous_runs_ending() -> None:
    from magk_client.events import to_workflow_event
    from magk_client.integration_handles import WorkflowRun
    from magk_client.models import RealtimeMessage

    def event(kind: str, event_id: str) -> Any:
        return to_workflow_event(RealtimeMessage("workflow_event", event_id, "", "wf", None, {"type": kind}))

    run = WorkflowRun("wf")
    assert run.on_event(event("workflow_started", "e-1"), {}) and run.status == "running"
    run.on_event(event("workflow_paused", "e-2"), {})
    assert run.status == "paused" and run.result is None
    run.expect_start()  # a start sent while the previous ending is still on its way
    assert not run.on_event(event("workflow_completed", "e-3"), {}) and run.result is None
    run.on_event(event("workflow_started", "e-4"), {})
    assert run.on_event(event("workflow_failed", "e-5"), {}) and run.result is not None
    assert (run.result.status, run.result.event.id, run.status) == ("failed", "e-5", "failed")
    run.expect_start()
    run.start_not_sent()  # refused: the next ending counts again
    assert run.on_event(event("workflow_stopped", "e-6"), {}) and run.status == "stopped"
    assert not run.on_event(event("config_updated", "e-7"), {})


def test_the_stores_local_update_hook_sees_actions_only() -> None:
    from magk_client.models import RealtimeMessage

    store = NodeExecutionStore()
    calls: List[Tuple[str, str, Dict[str, Any], Optional[str]]] = []
    remove = store.on_local_update(lambda *args: calls.append(args))
    store.apply_message(RealtimeMessage("node_status_update", "e-1", "", "w", "n", {"status": "running"}))
    store.update_node_result("w", "n", {"rows": 1}, timestamp="2030-01-01T00:00:00Z")
    store.update_node_metadata("w", "n", {"a": 1})
    assert calls == [
        ("w", "n", {"result": {"rows": 1}, "status": "completed"}, "2030-01-01T00:00:00Z"),
        ("w", "n", {"metadata": {"a": 1}}, None),
    ]
    store.update_node_status("w", "n", "running", timestamp="2000-01-01T00:00:00Z")  # stale: not applied, not called
    assert len(calls) == 2
    store.on_local_update(lambda *args: 1 / 0)
    store.add_node_log("w", "n", "x")
    assert store.stats.listener_errors == 1 and calls[-1][2] == {"logs": [{"level": "info", "message": "x"}]}
    remove()
    store.update_node_status("w", "n", "paused")
    assert len(calls) == 3
