"""magk-client: a synchronous, threaded SDK for the MAGK real-time workflow protocol.

Background threads own the socket, the heartbeat timer and the retry loop; a
thread-safe queue hands events to your callbacks. See README.rst.
"""

from typing import TYPE_CHECKING, Any

from .config import ErrorRecoveryConfig, RealtimeAdapterConfig, RealtimeConnectionConfig, RecoveryStrategy
from .errors import (
    AuthError,
    CallbackError,
    CircuitOpenError,
    ClientClosedError,
    CommandError,
    ConfigError,
    ConnectCancelledError,
    ErrorCategory,
    MagkConnectionError,
    MagkError,
    MagkTimeoutError,
    MessageTooLargeError,
    NetworkError,
    NotConnectedError,
    ProtocolError,
    QueueFullError,
    ResumeGapError,
    ServerError,
    TransportClosed,
)
from .models import (
    BackendHealth,
    CircuitState,
    CommandResponse,
    ConnectionHealth,
    ConnectionState,
    ConnectionType,
    MessageType,
    RealtimeMessage,
    WorkflowCommand,
)

if TYPE_CHECKING:
    from .service import MessageStream, RealtimeService


def __getattr__(name: str) -> Any:
    # The threaded layers are imported on first use, so ``import magk_client.testing``
    # or the models stay light.
    if name in ("RealtimeService", "MessageStream"):
        from . import service

        return getattr(service, name)
    raise AttributeError(f"module 'magk_client' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "BackendHealth",
    "CallbackError",
    "CircuitOpenError",
    "CircuitState",
    "ClientClosedError",
    "CommandError",
    "CommandResponse",
    "ConfigError",
    "ConnectCancelledError",
    "ConnectionHealth",
    "ConnectionState",
    "ConnectionType",
    "ErrorCategory",
    "ErrorRecoveryConfig",
    "MagkConnectionError",
    "MagkError",
    "MagkTimeoutError",
    "MessageStream",
    "MessageTooLargeError",
    "MessageType",
    "NetworkError",
    "NotConnectedError",
    "ProtocolError",
    "QueueFullError",
    "RealtimeAdapterConfig",
    "RealtimeConnectionConfig",
    "RealtimeMessage",
    "RealtimeService",
    "RecoveryStrategy",
    "ResumeGapError",
    "ServerError",
    "TransportClosed",
    "WorkflowCommand",
    "__version__",
]
