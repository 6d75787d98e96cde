"""The adapter's pure parts: the command table (a hand-advanced clock), the event mapping, the health
answer, the adapter-to-service config, the response transformers."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest

from magk_client import (
    AuthError,
    BackendHealth,
    CommandResponse,
    ConfigError,
    ProtocolError,
    RealtimeAdapterConfig,
    RealtimeConnectionConfig,
    RealtimeMessage,
)
from magk_client.adapter_setup import ResponseTransformers, adapter_config, service_config
from magk_client.backend_health import parse_health
from magk_client.commands import (
    CommandTable,
    Route,
    command_envelope,
    command_payload,
    new_request_id,
    parse_command_response,
)
from magk_client.events import to_node_event, to_workflow_event

# ------------------------------------------------------------------------------------- command table


def table(max_retries: int = 2, retry_delay: float = 1.0) -> CommandTable:
    return CommandTable(max_retries, retry_delay)


def add(t: CommandTable, rid: str, now: float = 0.0, timeout: float = 30.0) -> None:
    t.add(rid, "start_workflow", command_payload("start_workflow", "wf-1", rid), now, timeout, handle=rid)


def test_commands_wait_while_the_link_is_down_and_go_out_on_its_route_when_up() -> None:
    t = table()
    add(t, "a")
    assert t.take_due(0.0) == []
    assert t.link_up(Route.HTTP, 1.0) == []
    sent = t.take_due(1.0)
    assert [(c.request_id, r) for c, r in sent] == [("a", Route.HTTP)]
    assert sent[0][0].attempts == 1
    assert t.take_due(2.0) == []  # awaiting the answer: not sent twice


def test_an_answer_completes_once_then_later_copies_are_counted_as_duplicates() -> None:
    t = table()
    t.link_up(Route.WEBSOCKET, 0.0)
    add(t, "a")
    t.take_due(0.0)
    cmd = t.on_answer("a")
    assert cmd is not None and cmd.handle == "a"
    assert t.on_answer("a") is None
    assert t.on_answer("never-sent") is None
    assert t.on_answer(None) is None
    stats = t.stats()
    assert (stats.answered, stats.duplicate_answers, stats.unknown_answers, stats.missing_id_answers) == (1, 1, 1, 1)
    assert stats.pending == 0 and len(t) == 0


def test_a_command_times_out_at_its_deadline_and_its_answer_is_then_late() -> None:
    t = table()
    t.link_up(Route.WEBSOCKET, 0.0)
    add(t, "a", now=0.0, timeout=5.0)
    t.take_due(0.0)
    assert t.next_wakeup(0.0) == 5.0
    assert t.expire(4.999) == []
    assert [c.request_id for c in t.expire(5.0)] == ["a"]
    assert t.on_answer("a") is None
    assert t.stats().late_answers == 1 and t.stats().timed_out == 1


def test_an_answer_lost_to_a_drop_is_asked_again_with_the_same_id_retry_delay_after_the_send() -> None:
    t = table(max_retries=2, retry_delay=1.0)
    t.link_up(Route.WEBSOCKET, 0.0)
    add(t, "a")
    (first, _), = t.take_due(0.0)
    payload = dict(first.payload)
    assert t.link_down(0.2) == []
    assert t.take_due(0.5) == []  # link down
    assert t.link_up(Route.WEBSOCKET, 0.5) == []
    assert t.take_due(0.9) == []  # retry_delay after the first send not reached
    assert t.next_wakeup(0.9) == 1.0
    (again, route), = t.take_due(1.0)
    assert (again.request_id, again.attempts, route) == ("a", 2, Route.WEBSOCKET)
    assert again.payload == payload
    assert t.stats().resent == 1


def test_a_transport_switch_without_a_drop_also_loses_websocket_answers() -> None:
    t = table(retry_delay=0.0)
    t.link_up(Route.WEBSOCKET, 0.0)
    add(t, "a")
    t.take_due(0.0)
    t.link_up(Route.HTTP, 0.1)  # a forced CONNECTED (switch) with no RECONNECTING between
    (again, route), = t.take_due(0.1)
    assert (again.request_id, route) == ("a", Route.HTTP)


def test_http_commands_in_flight_survive_a_link_change() -> None:
    t = table(retry_delay=0.0)
    t.link_up(Route.HTTP, 0.0)
    add(t, "a")
    t.take_due(0.0)
    t.link_down(0.1)
    t.link_up(Route.HTTP, 0.2)
    assert t.take_due(0.3) == []  # its answer comes in the POST reply
    assert t.on_answer("a") is not None


def test_resends_stop_after_max_retries_and_the_command_fails() -> None:
    t = table(max_retries=1, retry_delay=0.0)
    t.link_up(Route.WEBSOCKET, 0.0)
    add(t, "a")
    t.take_due(0.0)
    assert t.link_down(0.1) == []
    t.link_up(Route.WEBSOCKET, 0.2)
    assert len(t.take_due(0.2)) == 1  # the one resend
    failed = t.link_down(0.3)
    assert [c.request_id for c in failed] == ["a"]
    assert len(t) == 0 and t.stats().failed == 1


def test_max_retries_zero_fails_a_lost_answer_at_once() -> None:
    t = table(max_retries=0)
    t.link_up(Route.WEBSOCKET, 0.0)
    add(t, "a")
    t.take_due(0.0)
    assert [c.request_id for c in t.link_down(0.1)] == ["a"]


def test_a_failed_post_is_retried_retry_delay_later_unless_not_retryable() -> None:
    t = table(max_retries=1, retry_delay=0.5)
    t.link_up(Route.HTTP, 0.0)
    add(t, "a")
    add(t, "b")
    t.take_due(0.0)
    err = RuntimeError("503")
    assert t.on_send_failed("a", 0.1, err, retryable=True) is None
    assert t.take_due(0.5) == []
    assert [c.request_id for c, _ in t.take_due(0.6)] == ["a"]
    failed = t.on_send_failed("a", 0.7, err, retryable=True)  # no resend left
    assert failed is not None and failed.last_error is err
    refused = t.on_send_failed("b", 0.7, err, retryable=False)
    assert refused is not None and refused.request_id == "b"


def test_an_unsent_command_goes_out_at_the_next_link_change_without_using_a_retry() -> None:
    t = table(max_retries=0, retry_delay=10.0)
    t.link_up(Route.WEBSOCKET, 0.0)
    add(t, "a")
    t.take_due(0.0)
    t.unsend("a")  # the send found the service offline
    assert t.take_due(1.0) == []  # no hot loop before the notice
    assert t.link_down(1.0) == []
    t.link_up(Route.WEBSOCKET, 2.0)
    (cmd, _), = t.take_due(2.0)
    assert cmd.attempts == 1 and t.stats().resent == 0


def test_fail_all_empties_the_table_in_submission_order() -> None:
    t = table()
    for rid in ("a", "b", "c"):
        add(t, rid)
    assert [c.request_id for c in t.fail_all()] == ["a", "b", "c"]
    assert len(t) == 0 and t.next_wakeup(0.0) is None


def test_request_ids_are_unique_and_payloads_follow_the_protocol() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    payload = command_payload("skip_node", "wf-1", "req-1", "n-2", {"x": 1})
    assert payload == {"command": "skip_node", "workflowId": "wf-1", "nodeId": "n-2", "data": {"x": 1}, "requestId": "req-1"}
    envelope = command_envelope(payload)
    assert envelope == {"id": "req-1", "type": "workflow_event", "workflowId": "wf-1",
                        "data": {"type": "command", "command": payload}}


def test_command_responses_are_checked() -> None:
    with open("tests/data/command_response.json", encoding="utf-8") as f:
        golden = json.load(f)
    obj = golden["data"]["response"] if "data" in golden else golden
    response = parse_command_response(obj)
    assert response.request_id == obj["requestId"] and response.success is obj["success"]
    for bad in (None, [], {"success": True}, {"requestId": "r", "success": "yes"}, {"requestId": "", "success": True}):
        with pytest.raises(ValueError):
            parse_command_response(bad)


# ------------------------------------------------------------------------------------- events


def msg(mtype: str, data: Dict[str, Any], **kw: Any) -> RealtimeMessage:
    return RealtimeMessage(type=mtype, id=kw.pop("id", "e-1"), workflow_id=kw.pop("workflow_id", "wf-1"),
                           node_id=kw.pop("node_id", "n-1"), data=data, **kw)


@pytest.mark.parametrize(
    ("status", "kind"),
    [("running", "node_started"), ("completed", "node_completed"), ("error", "node_error"),
     ("paused", "paused"), ("pending", "pending"), ("skipped", "skipped")],
)
def test_workflow_event_type_follows_the_node_status(status: str, kind: str) -> None:
    event = to_workflow_event(msg("node_status_update", {"status": status}))
    assert event is not None and event.type == kind and event.status == status


def test_workflow_event_types_of_the_other_messages() -> None:
    result = {"rowCount": 3}
    completed = to_workflow_event(msg("node_result", {"result": result}))
    assert completed is not None and completed.type == "node_completed" and completed.result == result
    progress = to_workflow_event(msg("node_progress_update", {"progress": {"current": 1, "total": 2}}))
    assert progress is not None and progress.type == "node_progress" and progress.progress["current"] == 1
    error = to_workflow_event(msg("node_error", {"error": {"message": "boom"}}))
    assert error is not None and error.type == "node_error" and error.error == {"message": "boom"}
    for kind in ("workflow_started", "workflow_paused", "config_updated", "workflow_failed"):
        event = to_workflow_event(msg("workflow_event", {"type": kind}, node_id=None))
        assert event is not None and event.type == kind and event.node_id is None
    original = msg("workflow_event", {"type": "workflow_completed"})
    event = to_workflow_event(original)
    assert event is not None and event.message is original and event.data is original.data and event.id == "e-1"


def test_command_messages_and_unusable_ones_are_not_workflow_events() -> None:
    for data in ({"type": "command_response", "response": {}}, {"type": "command"}, {}, {"type": 3}):
        assert to_workflow_event(msg("workflow_event", data)) is None
    assert to_workflow_event(msg("node_status_update", {})) is None
    assert to_workflow_event(msg("subscription_ack", {})) is None


def test_node_events_carry_the_field_of_their_type() -> None:
    logs: List[Dict[str, Any]] = [{"timestamp": "t", "level": "info", "message": "m"}]
    cases = {
        "node_status_update": ({"status": "running"}, "status", "running"),
        "node_progress_update": ({"progress": {"current": 1}}, "progress", {"current": 1}),
        "node_error": ({"error": {"message": "x"}}, "error", {"message": "x"}),
        "node_result": ({"result": {"rowCount": 1}}, "result", {"rowCount": 1}),
        "node_metadata": ({"metadata": {"executionTime": 2}}, "metadata", {"executionTime": 2}),
        "node_log": ({"logs": [*logs, "junk"]}, "logs", logs),
    }
    fields = ("status", "progress", "error", "result", "metadata", "logs")
    for mtype, (data, name, expected) in cases.items():
        event = to_node_event(msg(mtype, data))
        assert event is not None and event.type == mtype and event.node_id == "n-1"
        assert getattr(event, name) == expected
        assert all(getattr(event, other) is None for other in fields if other != name)
    assert to_node_event(msg("workflow_event", {"type": "workflow_started"})) is None


# ------------------------------------------------------------------------------------- health answers


def test_health_full_and_minimal_shapes() -> None:
    full = {"status": "degraded", "services": {"database": False, "messaging": True, "junk": "x"},
            "metrics": {"activeConnections": 2, "queueLength": 0, "responseTime": 1.5}}
    health = parse_health(200, json.dumps(full).encode())
    assert health == BackendHealth(status="degraded", services={"database": False, "messaging": True},
                                   metrics=full["metrics"])
    minimal = parse_health(200, b'{"status": "healthy", "service": "magk"}')
    assert minimal.is_healthy and minimal.service == "magk" and minimal.services == {} and minimal.metrics == {}


@pytest.mark.parametrize("body", [b'{"status": "healthy"}', b"oops", b"", b'{"status": "degraded"}'])
def test_health_a_5xx_answer_is_never_healthy(body: bytes) -> None:
    health = parse_health(500, body)
    assert not health.is_healthy
    assert health.status == ("degraded" if b"degraded" in body else "unhealthy")


def test_health_refusals_and_bad_answers_are_errors() -> None:
    with pytest.raises(AuthError):
        parse_health(401, b"")
    with pytest.raises(AuthError):
        parse_health(403, b'{"status": "healthy"}')
    for status, body in ((404, b'{"status": "healthy"}'), (200, b"[]"), (200, b'{"service": "x"}'), (200, b"nope")):
        with pytest.raises(ProtocolError):
            parse_health(status, body)


# ------------------------------------------------------------------------------------- config


def test_the_adapter_config_owns_urls_and_credentials() -> None:
    cfg = RealtimeAdapterConfig(backend_base_url="https://magk.example:9443/api", api_key="k" * 8, auth_token="t" * 8)
    svc = service_config(cfg, {"heartbeatIntervalMs": 50000, "preferred_type": "eventsource", "auth_token": "other"})
    assert svc.websocket_url == "wss://magk.example:9443/api/ws/realtime"
    assert svc.event_source_url == "https://magk.example:9443/api/events/realtime"
    assert svc.messages_url == "https://magk.example:9443/api/messages"
    assert (svc.api_key, svc.auth_token) == ("k" * 8, "t" * 8)
    assert svc.heartbeat_interval_ms == 50000 and svc.preferred_type == "eventsource"
    kept = service_config(RealtimeAdapterConfig(), RealtimeConnectionConfig(auth_token="x" * 8))
    assert kept.auth_token == "x" * 8  # the adapter sets none: the connection config's stays


def test_a_conflicting_connection_url_is_refused_and_none_turns_a_transport_off() -> None:
    cfg = RealtimeAdapterConfig(backend_base_url="http://127.0.0.1:1234")
    with pytest.raises(ConfigError, match="websocket_url"):
        service_config(cfg, {"websocketUrl": "ws://elsewhere:1/ws/realtime"})
    with pytest.raises(ConfigError, match="event_source_url"):
        service_config(cfg, RealtimeConnectionConfig(event_source_url="http://elsewhere:1/events/realtime"))
    off = service_config(cfg, {"websocket_url": None})
    assert off.websocket_url is None and off.event_source_url == "http://127.0.0.1:1234/events/realtime"
    same = service_config(cfg, {"websocket_url": "ws://127.0.0.1:1234/ws/realtime"})
    assert same.websocket_url == "ws://127.0.0.1:1234/ws/realtime"


def test_adapter_config_from_dicts_and_overrides() -> None:
    cfg = adapter_config({"backendBaseUrl": "http://127.0.0.1:1", "maxRetries": 0}, {"retryDelayMs": 5})
    assert (cfg.backend_base_url, cfg.max_retries, cfg.retry_delay_ms) == ("http://127.0.0.1:1", 0, 5)
    with pytest.raises(ConfigError):
        adapter_config(None, {"no_such_field": 1})
    with pytest.raises(ConfigError):
        adapter_config(3, {})  # type: ignore[arg-type]
    assert "secret" not in repr(RealtimeAdapterConfig(api_key="secret", auth_token="secret"))


def test_response_transformers_by_command_then_for_all() -> None:
    transformers = ResponseTransformers()
    seen: List[str] = []

    def tag(name: str) -> Any:
        def fn(r: CommandResponse) -> CommandResponse:
            seen.append(name)
            return CommandResponse(r.request_id, r.command, r.success, r.error, {**(r.data or {}), name: True})
        return fn

    remove = transformers.register("start_workflow", tag("own"))
    transformers.register("*", tag("all"))
    out = transformers.apply(CommandResponse("r", "start_workflow", True))
    assert seen == ["own", "all"] and out.data == {"own": True, "all": True}
    remove()
    seen.clear()
    transformers.apply(CommandResponse("r", "start_workflow", True))
    assert seen == ["all"]
    transformers.register("stop_workflow", lambda r: "nope")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError):
        transformers.apply(CommandResponse("r", "stop_workflow", True))
