"""Pure tests: configs, models, codec, security helpers, error classification."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import pytest

from magk_client import (
    AuthError,
    ConfigError,
    ConnectionType,
    ErrorRecoveryConfig,
    MessageTooLargeError,
    MessageType,
    NetworkError,
    ProtocolError,
    RealtimeAdapterConfig,
    RealtimeConnectionConfig,
    RealtimeMessage,
    RecoveryStrategy,
    ServerError,
    TransportClosed,
    codec,
)
from magk_client.errors import ErrorCategory, classify_close_code, classify_http_status, redact_url
from magk_client.security import auth_headers, check_plaintext_credentials, is_loopback_host, url_with_token
from magk_client.transports.base import SSEEvent

DATA = Path(__file__).parent / "data"


# ---------------------------------------------------------------- config


def test_config_defaults_and_camel_case_keys() -> None:
    cfg = RealtimeConnectionConfig.from_dict(
        {"websocketUrl": "ws://h:1/ws", "maxReconnectAttempts": 3, "heartbeatIntervalMs": 1000,
         "heartbeatTimeoutMs": 500, "preferredType": "eventsource", "authHeaders": {"X-A": "b"}}
    )
    assert cfg.websocket_url == "ws://h:1/ws"
    assert cfg.max_reconnect_attempts == 3
    assert cfg.preferred_type is ConnectionType.EVENTSOURCE
    assert cfg.auth_headers == {"X-A": "b"}
    assert cfg.max_message_size == 16 * 1024 * 1024
    assert cfg.min_stable_connection_ms == 5000
    assert RealtimeConnectionConfig.from_json(json.dumps({"max_queue_size": 7})).max_queue_size == 7


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"heartbeat_interval_ms": 0}, "heartbeat_interval_ms"),
        ({"reconnect_interval_ms": -5}, "reconnect_interval_ms"),
        ({"heartbeat_timeout_ms": 60000}, "heartbeat_timeout_ms"),
        ({"preferred_type": "carrier-pigeon"}, "preferred_type"),
        ({"websocket_url": "http://h/ws"}, "websocket_url"),
        ({"event_source_url": "ws://h/events"}, "event_source_url"),
        ({"max_queue_size": 1.5}, "max_queue_size"),
        ({"reconnect_backoff_multiplier": 0.5}, "reconnect_backoff_multiplier"),
        ({"log_level": "loud"}, "log_level"),
        ({"auth_token": "a\r\nb"}, "auth_token"),
        ({"no_such_field": 1}, "no_such_field"),
        ({"max_reconnect_interval_ms": 1, "reconnect_interval_ms": 10}, "max_reconnect_interval_ms"),
    ],
)
def test_config_bad_values_name_the_field(changes: Dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        RealtimeConnectionConfig.from_dict(changes)
    assert field in str(info.value)
    assert isinstance(info.value, ValueError)


def test_config_repr_hides_secrets_and_replace_validates() -> None:
    cfg = RealtimeConnectionConfig(auth_token="tok-123", api_key="key-456", auth_headers={"X-S": "hdr-789"})
    text = repr(cfg)
    for secret in ("tok-123", "key-456", "hdr-789"):
        assert secret not in text
    assert cfg.replace(maxQueueSize=3).max_queue_size == 3
    with pytest.raises(ConfigError):
        cfg.replace(max_queue_size=0)


def test_adapter_and_recovery_configs() -> None:
    adapter = RealtimeAdapterConfig.from_dict({"backendBaseUrl": "https://magk.example:9000", "apiKey": "k"})
    assert adapter.websocket_url == "wss://magk.example:9000/ws/realtime"
    assert adapter.event_source_url == "https://magk.example:9000/events/realtime"
    assert "k'" not in repr(adapter)
    recovery = ErrorRecoveryConfig()
    assert recovery.strategies_for(ErrorCategory.NETWORK) == [RecoveryStrategy.RECONNECT, RecoveryStrategy.QUEUE_OFFLINE]
    assert recovery.strategies_for(ErrorCategory.AUTH) == [RecoveryStrategy.NOTIFY_ONLY]
    assert recovery.strategies_for(ErrorCategory.SERVER) == [
        RecoveryStrategy.RECONNECT,
        RecoveryStrategy.FALLBACK_CONNECTION,
    ]
    custom = ErrorRecoveryConfig.from_dict({"authErrors": ["escalate", "notify_only"]})
    assert custom.auth_errors == [RecoveryStrategy.ESCALATE, RecoveryStrategy.NOTIFY_ONLY]
    with pytest.raises(ConfigError):
        ErrorRecoveryConfig.from_dict({"networkErrors": ["pray"]})
    with pytest.raises(ConfigError):
        ErrorRecoveryConfig.from_dict({"networkErrors": "reconnect"})


# ---------------------------------------------------------------- models and codec


def test_message_type_is_a_str_enum_and_unknown_types_stay_strings() -> None:
    assert MessageType.NODE_PROGRESS_UPDATE == "node_progress_update"
    msg = codec.decode('{"type": "node_progress_update", "id": "e-1"}')
    assert msg.type is MessageType.NODE_PROGRESS_UPDATE
    other = codec.decode('{"type": "from_the_future", "id": "e-2"}')
    assert other.type == "from_the_future" and not isinstance(other.type, MessageType)
    assert other.data == {}


def test_decode_envelope_fields_and_round_trip() -> None:
    text = json.dumps(
        {"id": "e-42", "type": "node_progress_update", "timestamp": "2026-11-26T10:00:00.000Z",
         "workflowId": "wf-1", "nodeId": "n-1", "data": {"progress": {"current": 3, "total": 10}}, "version": 1}
    )
    msg = codec.decode(text, received_at=123.0)
    assert (msg.id, msg.workflow_id, msg.node_id, msg.version, msg.received_at) == ("e-42", "wf-1", "n-1", 1, 123.0)
    again = codec.decode(codec.encode(msg))
    assert again == msg
    assert RealtimeMessage.from_json(msg.to_json()) == msg
    assert "receivedAt" not in msg.to_dict()


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '"a string"',
        "{}",
        '{"type": 5}',
        '{"type": "node_log", "data": "text"}',
        '{"type": "node_log", "id": {"a": 1}}',
        '{"type": "node_log", "workflowId": 7}',
        '{"type": "node_log", "data": {"x": NaN}}',
        '{"type": "node_log", "data": {"x": Infinity}}',
        '{"type": "node_log", "data": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"type": "node_log", "data": {"n": ' + "9" * 5000 + "}}",
        '{"type": "node_log", "data": ' + "[" * 200 + "]" * 200 + "}",
    ],
)
def test_decode_rejects_hostile_input_with_invalid_message(text: str) -> None:
    with pytest.raises(codec.InvalidMessage):
        codec.decode(text, max_depth=128)


def test_legacy_node_execution_format_is_normalised() -> None:
    started = codec.decode('{"type": "node_started", "workflowId": "w", "nodeId": "n", "timestamp": "t", "data": {}}')
    assert started.type is MessageType.NODE_STATUS_UPDATE and started.data["status"] == "running"
    progress = codec.decode('{"type": "node_progress", "workflowId": "w", "nodeId": "n", "data": {"current": 1}}')
    assert progress.type is MessageType.NODE_PROGRESS_UPDATE and progress.data["progress"] == {"current": 1}
    done = codec.decode('{"type": "node_completed", "workflowId": "w", "nodeId": "n", "data": {}}')
    assert done.data["status"] == "completed"
    wf = codec.decode('{"type": "workflow_completed", "workflowId": "w", "data": {}}')
    assert wf.type is MessageType.WORKFLOW_EVENT and wf.data["type"] == "workflow_completed"
    assert wf.id == ""


def test_encode_dict_and_reject_unencodable() -> None:
    out = json.loads(codec.encode({"type": "node_log", "workflowId": "w", "nodeId": None}))
    assert out["type"] == "node_log" and "nodeId" not in out and out["timestamp"].endswith("Z")
    with pytest.raises(codec.InvalidMessage):
        codec.encode({"data": {}})
    with pytest.raises(codec.InvalidMessage):
        codec.encode({"type": "x", "data": {"v": float("nan")}})
    with pytest.raises(TypeError):
        codec.encode(42)  # type: ignore[arg-type]


def test_sse_events_and_transformers() -> None:
    registry = codec.TransformerRegistry()
    plain = codec.from_backend_message(SSEEvent('{"type": "node_log", "id": "e-9"}', "message", "e-9"), registry)
    assert plain is not None and plain.id == "e-9"
    control = codec.from_backend_message(SSEEvent('{"type": "subscription_ack"}', "message", "e-9"), registry)
    assert control is not None and control.id == ""  # the SSE buffer's id is not inherited
    started = codec.from_backend_message(
        SSEEvent('{"data": {"workflowId": "wf-1"}, "id": "b-1"}', "workflow_started", "b-1"), registry
    )
    assert started is not None and started.type is MessageType.WORKFLOW_EVENT
    assert started.workflow_id == "wf-1" and started.data["type"] == "workflow_started"
    update = codec.from_backend_message(
        SSEEvent('{"data": {"workflowId": "w", "nodeId": "n", "status": "running"}}', "node_execution_update"),
        registry,
    )
    assert update is not None and update.type is MessageType.NODE_STATUS_UPDATE and update.node_id == "n"
    with pytest.raises(codec.InvalidMessage):
        codec.from_backend_message(SSEEvent("{}", "mystery"), registry)
    remove = registry.register("mystery", lambda m: {"type": "node_log", "data": {"from": m["event"]}})
    custom = codec.from_backend_message(SSEEvent("{}", "mystery"), registry)
    assert custom is not None and custom.data == {"from": "mystery"}
    remove()
    registry.register("boom", lambda m: 1 / 0)  # type: ignore[arg-type,return-value]
    with pytest.raises(codec.InvalidMessage):
        codec.from_backend_message(SSEEvent("{}", "boom"), registry)


def test_golden_wire_files_decode() -> None:
    files = sorted(DATA.glob("*.json"))
    if not files:
        pytest.skip("no golden files yet")
    decoded = 0
    for path in files:
        obj = json.loads(path.read_text())
        if isinstance(obj, dict) and isinstance(obj.get("type"), str) and "command" not in obj:
            msg = codec.decode_object(obj)
            assert msg.type == obj["type"] or obj["type"] in ("node_started", "node_progress", "node_completed",
                                                             "workflow_completed")
            decoded += 1
    assert decoded > 5


# ---------------------------------------------------------------- errors and security


def test_close_code_and_status_classification() -> None:
    assert isinstance(classify_close_code(1000), TransportClosed)
    assert isinstance(classify_close_code(None), NetworkError)
    assert isinstance(classify_close_code(1006), NetworkError)
    for code in (1008, 4401, 4403):
        err = classify_close_code(code)
        assert isinstance(err, AuthError) and err.terminal
    assert isinstance(classify_close_code(1009), MessageTooLargeError)
    assert classify_close_code(1002).terminal
    for code in (1011, 1012, 1013, 1014):
        err = classify_close_code(code)
        assert isinstance(err, ServerError) and not err.terminal
    assert isinstance(classify_http_status(401, "x"), AuthError)
    assert isinstance(classify_http_status(403, "x"), AuthError)
    err = classify_http_status(503, "x", retry_after=3)
    assert isinstance(err, ServerError) and err.retry_after == 3
    assert isinstance(classify_http_status(404, "x"), ProtocolError)


def test_redaction_and_plaintext_rules() -> None:
    assert "s3cret" not in redact_url("wss://user:s3cret@h/ws?token=s3cret&x=1")
    assert redact_url("wss://h/ws?token=abc&x=1").endswith("token=***&x=1")
    cfg = RealtimeConnectionConfig(auth_token="t0k", api_key="k3y", auth_headers={"X-Extra": "1"})
    assert auth_headers(cfg) == {"Authorization": "Bearer t0k", "X-API-Key": "k3y", "X-Extra": "1"}
    assert is_loopback_host("127.0.0.2") and is_loopback_host("localhost") and is_loopback_host("::1")
    assert not is_loopback_host("10.0.0.1")
    check_plaintext_credentials("ws://127.0.0.1:1/ws", cfg)
    with pytest.raises(ConfigError):
        check_plaintext_credentials("ws://magk.example/ws", cfg)
    check_plaintext_credentials("wss://magk.example/ws", cfg)
    check_plaintext_credentials("ws://magk.example/ws", cfg.replace(allow_insecure_auth=True))
    assert url_with_token("ws://h/ws", cfg) == "ws://h/ws"
    assert url_with_token("ws://h/ws?a=1", cfg.replace(token_in_query=True)) == "ws://h/ws?a=1&token=t0k"
