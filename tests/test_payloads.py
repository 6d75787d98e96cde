"""Typed node payloads (magk_client.payloads): lenient parsing, wire names, the message accessor, and
the reference engine's payloads parsed strictly as a real client receives them."""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import magk_client
from magk_client import RealtimeMessage, RealtimeService
from magk_client.codec import decode
from magk_client.payloads import (
    DataSchema,
    DataStatistics,
    ErrorCode,
    LogLevel,
    NodeError,
    NodeLog,
    NodeLogs,
    NodeMetadata,
    NodeProgress,
    NodeResult,
    PayloadError,
    PerformanceMetrics,
    ProgressStage,
    SchemaField,
    SchemaFieldType,
    parse_payload,
)
from magk_client.testing import Backend

T = "2026-11-26T10:00:00.000Z"

FULL: Dict[type, Dict[str, Any]] = {
    NodeProgress: {
        "current": 2,
        "total": 4,
        "percentage": 50.0,
        "message": "half",
        "startTime": T,
        "estimatedCompletion": "2026-11-26T10:00:02.500+00:00",
        "estimatedTimeRemaining": 2500,
        "throughputRate": 0.8,
        "stages": [{"name": "read", "status": "completed", "progress": 100, "message": "read 10 rows"}],
    },
    NodeError: {
        "message": "no such file",
        "code": "FILE_NOT_FOUND",
        "details": {"path": "/x"},
        "stack": "at read()",
        "timestamp": T,
        "recoverable": False,
        "suggestions": ["check the path"],
    },
    NodeResult: {
        "data": [{"id": 1}],
        "rowCount": 1,
        "columnCount": 1,
        "schema": {
            "fields": [
                {
                    "name": "id",
                    "type": "number",
                    "nullable": False,
                    "unique": True,
                    "format": "int64",
                    "description": "row id",
                }
            ],
            "primaryKey": ["id"],
            "foreignKeys": [{"field": "id", "table": "t"}],
        },
        "preview": [{"id": 1}],
        "statistics": {
            "totalRows": 1,
            "totalColumns": 1,
            "nullValues": 0,
            "duplicateRows": 0,
            "memorySize": 64,
            "columnStats": {"id": {"min": 1}},
        },
    },
    NodeMetadata: {
        "executionTime": 12.5,
        "rowsProcessed": 10,
        "memoryUsage": 1024,
        "lastExecuted": T,
        "version": "1.0.0",
        "dependencies": ["n-0"],
        "performance": {"cpuUsage": 5.5, "memoryPeak": 2048, "diskIO": 10, "networkIO": 0, "cacheHitRate": 0.5},
    },
    NodeLogs: {
        "logs": [{"timestamp": T, "level": "warn", "message": "slow", "category": "io", "details": {"ms": 900}}]
    },
}


@pytest.mark.parametrize("cls", list(FULL), ids=lambda c: c.__name__)
def test_full_payload_parses_without_problems_and_round_trips(cls: Any) -> None:
    wire = FULL[cls]
    obj = cls.from_wire(wire, strict=True)
    assert obj.problems == () and obj.extra == {} and obj.unknown_keys() == []
    assert obj.raw is wire
    assert obj.to_wire() == wire
    assert cls.from_wire(obj.to_wire()) == obj


ALL_TYPES = (
    NodeProgress, ProgressStage, NodeError, NodeResult, DataSchema, SchemaField, DataStatistics,
    NodeMetadata, PerformanceMetrics, NodeLog, NodeLogs,
)


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.__name__)
def test_every_type_parses_an_empty_object_reporting_only_required_fields(cls: Any) -> None:
    obj = cls.from_wire({})
    required = {
        NodeProgress: ("current", "total"), ProgressStage: ("name", "status"), NodeError: ("message",),
        DataSchema: ("fields",), SchemaField: ("name", "type"), NodeLog: ("timestamp", "level", "message"),
        NodeLogs: ("logs",),
    }.get(cls, ())
    assert obj.problems == tuple(f"{name}: missing" for name in required)
    assert obj == cls() and obj.raw == {}
    assert cls.from_wire(obj.to_wire()) == obj


def test_fields_are_typed_and_snake_case() -> None:
    progress = NodeProgress.from_wire(FULL[NodeProgress])
    assert progress.estimated_time_remaining == 2500 and progress.start_time == T
    assert progress.stages == [ProgressStage(name="read", status="completed", progress=100, message="read 10 rows")]
    error = NodeError.from_wire(FULL[NodeError])
    assert error.code is ErrorCode.FILE_NOT_FOUND and error.recoverable is False
    result = NodeResult.from_wire(FULL[NodeResult])
    assert isinstance(result.schema, DataSchema) and result.schema.primary_key == ["id"]
    assert result.schema.fields[0].type is SchemaFieldType.NUMBER and result.schema.fields[0].format == "int64"
    assert isinstance(result.statistics, DataStatistics) and result.statistics.memory_size == 64
    metadata = NodeMetadata.from_wire(FULL[NodeMetadata])
    assert metadata.performance == PerformanceMetrics(
        cpu_usage=5.5, memory_peak=2048, disk_io=10, network_io=0, cache_hit_rate=0.5
    )
    logs = NodeLogs.from_wire(FULL[NodeLogs]).logs
    assert logs[0].level is LogLevel.WARN and logs[0].details == {"ms": 900}


def test_wire_names_are_camel_case_with_the_originals_exceptions() -> None:
    wire = PerformanceMetrics(cpu_usage=1.0, disk_io=2.0, network_io=3.0, cache_hit_rate=0.5).to_wire()
    assert wire == {"cpuUsage": 1.0, "diskIO": 2.0, "networkIO": 3.0, "cacheHitRate": 0.5}
    assert SchemaField(name="a", type=SchemaFieldType.DATE).to_wire() == {"name": "a", "type": "date"}
    assert type(SchemaField(name="a", type=SchemaFieldType.DATE).to_wire()["type"]) is str


def test_unknown_keys_are_kept_at_every_level_and_written_back() -> None:
    wire = copy.deepcopy(FULL[NodeResult])
    wire["engine"] = "x"
    wire["schema"]["fields"][0]["precision"] = 2
    wire["statistics"]["nullCount"] = 0
    result = NodeResult.from_wire(wire)
    assert result.problems == ()
    assert result.extra == {"engine": "x"} and result.statistics is not None
    assert result.statistics.extra == {"nullCount": 0}
    assert result.unknown_keys() == [
        "engine: not a field of NodeResult",
        "schema.fields[0].precision: not a field of SchemaField",
        "statistics.nullCount: not a field of DataStatistics",
    ]
    assert result.to_wire() == wire
    with pytest.raises(PayloadError) as caught:
        NodeResult.from_wire(wire, strict=True)
    assert caught.value.problems == tuple(result.unknown_keys())


def test_malformed_payload_is_reported_not_raised() -> None:
    wire: Dict[str, Any] = {
        "current": "2",
        "percentage": True,
        "startTime": "yesterday",
        "stages": [1, {"name": 3, "status": "running"}, {"name": "ok", "status": "done"}],
    }
    before = copy.deepcopy(wire)
    progress = NodeProgress.from_wire(wire)
    assert progress.problems == (
        "current: expected a number, got string",
        "total: missing",
        "percentage: expected a number, got boolean",
        "startTime: 'yesterday' is not an ISO-8601 time",
        "stages[0]: expected an object, got number",
        "stages[1].name: expected a string, got number",
    )
    assert progress.current is None and progress.total is None and progress.start_time is None
    # a bad item is left out of its list; the good ones stay; the stage keeps its own problems
    assert progress.stages is not None and [s.status for s in progress.stages] == ["running", "done"]
    assert progress.stages[0].problems == ("name: expected a string, got number",)
    assert progress.raw is wire and wire == before


def test_unknown_enum_values_are_kept_as_strings_and_reported() -> None:
    error = NodeError.from_wire({"message": "m", "code": "NODE_FAILED"})
    assert error.code == "NODE_FAILED" and not isinstance(error.code, ErrorCode)
    assert error.problems and error.problems[0].startswith("code: 'NODE_FAILED' is not one of NETWORK_ERROR")
    field = SchemaField.from_wire({"name": "id", "type": "integer"})
    assert field.type == "integer" and field.problems[0].startswith("type: 'integer' is not one of string")
    log = NodeLog.from_wire({"timestamp": T, "level": "fatal", "message": "x"})
    assert log.level == "fatal" and len(log.problems) == 1


def test_nulls_non_objects_and_integral_floats() -> None:
    assert NodeError.from_wire({"message": None}).problems == ("message: null",)
    assert NodeError.from_wire({"message": "m", "stack": None}).problems == ()
    for bad in ([], "x", 3, None):
        obj = NodeMetadata.from_wire(bad)
        assert obj.raw is None and obj.problems[0].startswith("expected an object, got")
    stats = DataStatistics.from_wire({"totalRows": 100.0, "nullValues": 1.5})
    assert stats.total_rows == 100 and type(stats.total_rows) is int
    assert stats.problems == ("nullValues: expected an integer, got number",)


def test_strict_raises_a_magk_error_naming_every_problem() -> None:
    with pytest.raises(PayloadError, match=r"malformed NodeLog: timestamp: missing; level: missing") as caught:
        NodeLog.from_wire({"message": "m"}, strict=True)
    assert isinstance(caught.value, magk_client.MagkError) and isinstance(caught.value, ValueError)
    assert caught.value.problems == ("timestamp: missing", "level: missing")


def test_parse_payload_by_message_type() -> None:
    progress = parse_payload("node_progress_update", {"progress": {"current": 1}})
    assert isinstance(progress, NodeProgress) and progress.problems == ("progress.total: missing",)
    missing = parse_payload("node_error", {"err": "boom"})
    assert isinstance(missing, NodeError) and missing.problems == ("error: missing",) and missing.raw is None
    wrong = parse_payload("node_result", {"result": [1]})
    assert isinstance(wrong, NodeResult) and wrong.problems == ("result: expected an object, got array",)
    logs = parse_payload("node_log", {"logs": [{"timestamp": T, "level": "info"}]})
    assert isinstance(logs, NodeLogs) and logs.problems == ("logs[0].message: missing",)
    assert isinstance(parse_payload("node_metadata", {"metadata": {}}), NodeMetadata)
    for other in ("node_status_update", "workflow_event", "heartbeat", "something_new"):
        assert parse_payload(other, {"status": "running"}) is None


def test_message_payload_is_parsed_on_access_and_cached() -> None:
    message = decode(json.dumps({"type": "node_progress_update", "id": "e-1", "data": {"progress": FULL[NodeProgress]}}))
    assert "_payload" not in vars(message)  # decoding does not parse
    payload = message.payload
    assert isinstance(payload, NodeProgress) and payload.current == 2
    assert message.payload is payload
    assert message == decode(json.dumps({"type": "node_progress_update", "id": "e-1", "data": {"progress": FULL[NodeProgress]}}))
    message.data = {"progress": {"current": 3, "total": 4}}  # a new data object is parsed again
    again = message.payload
    assert isinstance(again, NodeProgress) and again.current == 3
    assert RealtimeMessage(type="pong", data={"pingId": "p"}).payload is None
    assert "_payload" not in message.to_dict()


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["current", "total", "stages", "name", "status", "schema", "fields", "type", "logs", "x"]),
            inner,
            max_size=4,
        ),
        max_leaves=12,
    )
)
def test_any_json_parses_without_raising(value: Any) -> None:
    for cls in (NodeProgress, NodeError, NodeResult, NodeMetadata, NodeLogs):
        obj = cls.from_wire(value)
        assert isinstance(obj.problems, tuple)
        again = cls.from_wire(obj.to_wire())
        assert again == obj  # what was kept survives a round trip


# -- the reference engine, seen by a real client -------------------------------------------------

NODE_TYPES = ("node_progress_update", "node_error", "node_result", "node_metadata", "node_log")
DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", [*NODE_TYPES, "legacy_node_progress", "legacy_node_error"])
def test_golden_node_payloads_fit_the_types_exactly(name: str) -> None:
    message = decode((DATA / f"{name}.json").read_text(encoding="utf-8"))
    payload = message.payload
    assert payload is not None and payload.problems == () and payload.unknown_keys() == []


def run_and_collect(backend: Backend, workflow: str, end: str) -> List[RealtimeMessage]:
    got: List[RealtimeMessage] = []
    done = threading.Event()
    unparsed: List[str] = []

    def on_message(message: RealtimeMessage) -> None:
        if "_payload" in vars(message):
            unparsed.append(message.id)  # somebody parsed it before the callback asked
        got.append(message)
        if message.type == "workflow_event" and message.data.get("type") == end:
            done.set()

    with RealtimeService(websocket_url=backend.websocket_url, event_source_url=backend.event_source_url) as service:
        service.subscribe(None, on_message, workflow_id=workflow)
        assert backend.execute_command("start_workflow", workflow)["success"]
        assert done.wait(20), f"no {end} from {workflow}"
    assert unparsed == []
    return got


def test_reference_engine_payloads_fit_the_types_exactly() -> None:
    with Backend(pace=0.0) as backend:
        backend.add_workflow("ok", ["a", "b"], progress_steps=3)
        backend.add_workflow("bad", ["a", "b"], fail_node="b", progress_steps=4)
        messages = run_and_collect(backend, "ok", "workflow_completed")
        messages += run_and_collect(backend, "bad", "workflow_failed")
    node_messages = [m for m in messages if m.type in NODE_TYPES]
    assert {m.type for m in node_messages} == set(NODE_TYPES)
    for message in node_messages:
        payload = message.payload
        assert payload is not None
        assert payload.problems == () and payload.unknown_keys() == [], (message.type, message.data)
    by_type = {m.type: m.payload for m in node_messages}
    progress = by_type["node_progress_update"]
    assert isinstance(progress, NodeProgress) and progress.stages and progress.start_time is not None
    result = by_type["node_result"]
    assert isinstance(result, NodeResult) and result.schema is not None and result.statistics is not None
    assert result.schema.fields and all(isinstance(f.type, SchemaFieldType) for f in result.schema.fields)
    metadata = by_type["node_metadata"]
    assert isinstance(metadata, NodeMetadata) and metadata.performance is not None
    error = by_type["node_error"]
    assert isinstance(error, NodeError) and isinstance(error.code, ErrorCode)
    logs = by_type["node_log"]
    assert isinstance(logs, NodeLogs) and logs.logs and all(isinstance(e.level, LogLevel) for e in logs.logs)
