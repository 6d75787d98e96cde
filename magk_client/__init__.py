"""magk-client: a synchronous, threaded SDK for the MAGK real-time workflow protocol.

Background threads own the socket, the heartbeat timer and the retry loop; a
thread-safe queue hands events to your callbacks. See README.rst.
"""

from .config import ErrorRecoveryConfig, RealtimeAdapterConfig, RealtimeConnectionConfig, RecoveryStrategy
from .errors import (
    AuthError,
    CallbackError,
    CircuitOpenError,
    ClientClosedError,
    CommandError,
    ConfigError,
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
from .service import MessageStream, RealtimeService

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
