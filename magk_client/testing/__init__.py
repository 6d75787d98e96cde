"""Test support: the reference MAGK backend and a fault-injecting TCP proxy (needs the ``server`` extra)."""

from __future__ import annotations

from .backend import (
    BAD_KINDS,
    COMMANDS_PATH,
    HEALTH_PATH,
    MESSAGES_PATH,
    SSE_PATH,
    WS_PATH,
    Backend,
    ReceivedMessage,
    ScriptedResponse,
    iso_now,
)
from .engine import COMMANDS, CommandError
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
    "CommandError",
    "FaultProxy",
    "LoggedEvent",
    "ReceivedMessage",
    "Recorder",
    "ReplayLog",
    "ScriptedResponse",
    "StateRecorder",
    "iso_now",
]
