"""What every route handler of the reference backend shares: the options and the working parts."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Optional, Protocol

from .acks import MessageDesk
from .commands import CommandDesk
from .faults import FaultSwitches
from .hub import Hub
from .records import Records

__all__ = ["Context", "Options"]


class Options(Protocol):
    """The backend's options, read when used (the facade's attributes: a test may change them)."""

    host: str
    port: int
    token: Optional[str]
    api_key: Optional[str]
    heartbeat_interval: Optional[float]
    ssl_context: Optional[ssl.SSLContext]
    send_ack: bool
    sse_retry_ms: Optional[int]
    max_body_size: int
    open_health: bool
    close_timeout: float


@dataclass
class Context:
    """The parts the handlers use, made at each start; loop thread.

    ``stopping`` resolves (to the close code) when :meth:`Backend.stop` is called.
    """

    options: Options
    records: Records
    faults: FaultSwitches
    hub: Hub
    desk: CommandDesk
    messages: MessageDesk
    stopping: asyncio.Future[int]
