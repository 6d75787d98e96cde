"""What the simulated engine says about one node: the ``data`` of its ``node_progress_update``,
``node_log``, ``node_metadata``, ``node_result`` and ``node_error`` events.

The shapes are those of docs/protocol.rst (*Node payloads*), i.e. the original app's
``types/workflow.ts``; they are written out here as plain dicts, not built from
:mod:`magk_client.payloads`, so that the client's types and the backend cannot share one mistake
unnoticed (tests parse these strictly with those types). Pure functions: every time is an argument
(``now`` is ``time.time()`` seconds); the engine calls them on the backend's event loop.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Sequence

__all__ = ["STAGES", "error", "failure_logs", "iso_at", "metadata", "progress", "result", "success_logs"]

#: the stages every simulated node goes through, each a third of its progress steps
STAGES = ("read", "transform", "write")


def iso_at(seconds: float) -> str:
    """``seconds`` since the epoch as UTC ISO-8601 with milliseconds and a ``Z``."""
    whole = int(seconds)
    millis = min(999, int((seconds - whole) * 1000))
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(whole))}.{millis:03d}Z"


def progress(node: str, current: int, total: int, started: float, now: float) -> Dict[str, Any]:
    """Step ``current`` of ``total``, the node having started at ``started``."""
    fraction = current / total
    rate = current / max(now - started, 0.001)  # steps per second
    remaining = (total - current) / rate
    stages: List[Dict[str, Any]] = []
    for i, name in enumerate(STAGES):
        done = min(1.0, max(0.0, fraction * len(STAGES) - i))
        status = "completed" if done >= 0.999 else "running" if done > 0 else "pending"
        stages.append({"name": name, "status": status, "progress": round(100 * done)})
    return {
        "progress": {
            "current": current,
            "total": total,
            "percentage": round(100 * fraction),
            "message": f"{node}: step {current} of {total}",
            "startTime": iso_at(started),
            "estimatedCompletion": iso_at(now + remaining),
            "estimatedTimeRemaining": round(remaining * 1000),
            "throughputRate": round(rate, 3),
            "stages": stages,
        }
    }


def _log(level: str, message: str, now: float, details: Dict[str, Any]) -> Dict[str, Any]:
    return {"timestamp": iso_at(now), "level": level, "message": message, "category": "engine", "details": details}


def success_logs(node: str, rows: int, now: float) -> Dict[str, Any]:
    return {
        "logs": [
            _log("info", f"{node} started", now, {"stages": list(STAGES)}),
            _log("info", f"{node} finished", now, {"rows": rows}),
        ]
    }


def failure_logs(node: str, step: int, total: int, now: float) -> Dict[str, Any]:
    return {"logs": [_log("error", f"{node} failed", now, {"step": step, "total": total})]}


def error(node: str, step: int, total: int, now: float) -> Dict[str, Any]:
    """The failure of a node set as its workflow's ``fail_node`` (it is recoverable)."""
    return {
        "error": {
            "message": f"simulated failure in node {node}",
            "code": "UNKNOWN_ERROR",
            "details": {"step": step, "total": total, "simulated": True},
            "timestamp": iso_at(now),
            "recoverable": True,
            "suggestions": ["clear failNode with update_config", "restart_node"],
        }
    }


def metadata(nodes: Sequence[str], index: int, rows: int, elapsed: float, now: float) -> Dict[str, Any]:
    """Node ``nodes[index]`` processed ``rows`` in ``elapsed`` seconds; it depends on the node before it."""
    return {
        "metadata": {
            "executionTime": round(elapsed * 1000),
            "rowsProcessed": rows,
            "memoryUsage": 1024 * 1024,
            "lastExecuted": iso_at(now),
            "version": "1.0.0",
            "dependencies": list(nodes[index - 1 : index]) if index > 0 else [],
            "performance": {
                "cpuUsage": 12.5,
                "memoryPeak": 2 * 1024 * 1024,
                "diskIO": 64 * rows,
                "networkIO": 0,
                "cacheHitRate": 0.0,
            },
        }
    }


def result(node: str, rows: int) -> Dict[str, Any]:
    """A two-column table of ``rows`` rows (``id``, ``value``); its first two rows as the preview."""
    return {
        "result": {
            "rowCount": rows,
            "columnCount": 2,
            "schema": {
                "fields": [
                    {"name": "id", "type": "number", "nullable": False, "unique": True, "description": "row number"},
                    {"name": "value", "type": "string", "nullable": False, "unique": True, "description": "node-row"},
                ],
                "primaryKey": ["id"],
            },
            "preview": [{"id": 1, "value": f"{node}-1"}, {"id": 2, "value": f"{node}-2"}],
            "statistics": {
                "totalRows": rows,
                "totalColumns": 2,
                "nullValues": 0,
                "duplicateRows": 0,
                "memorySize": 64 * rows,
                "columnStats": {
                    "id": {"min": 1, "max": rows, "distinct": rows},
                    "value": {"distinct": rows},
                },
            },
        }
    }
