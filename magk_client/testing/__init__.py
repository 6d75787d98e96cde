"""Test support: the reference MAGK backend and a fault-injecting TCP proxy (needs the ``server`` extra)."""

from __future__ import annotations

import warnings
from typing import Any

from .backend import (
    BAD_KINDS,
    COMMANDS_PATH,
    HEALTH_PATH,
    MESSAGES_PATH,
    SSE_PATH,
    WS_PATH,
    Backend,
    CommandRecord,
    FaultControls,
    ReceivedMessage,
    ScriptedResponse,
    iso_now,
)
from .engine import COMMANDS, EngineCommandRejected
from .proxy import FaultProxy
from .recorder import Recorder, StateRecorder
from .replay import LoggedEvent, ReplayLog

__all__ = [
    "BAD_KINDS",
    "COMMANDS",
    "COMMANDS_PATH",
    "HEALTH_PATH",
    "MESSAGES_PATH",
    "SSE_PATH",
    "WS_PATH",
    "Backend",
    "CommandRecord",
    "EngineCommandRejected",
    "FaultControls",
    "FaultProxy",
    "LoggedEvent",
    "ReceivedMessage",
    "Recorder",
    "ReplayLog",
    "ScriptedResponse",
    "StateRecorder",
    "iso_now",
]


def __getattr__(name: str) -> Any:
    # The engine's exception used to be exported as ``CommandError``, the name of the client's
    # magk_client.errors.CommandError (a different thing); the old name still works, with a warning.
    if name == "CommandError":
        warnings.warn(
            "magk_client.testing.CommandError is now EngineCommandRejected "
            "(magk_client.CommandError is the client's exception)",
            DeprecationWarning,
            stacklevel=2,
        )
        return EngineCommandRejected
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
