"""magk-client: a synchronous, threaded SDK for the MAGK real-time workflow protocol.

Background threads own the socket, the heartbeat timer and the retry loop; a
thread-safe queue hands events to your callbacks. See README.rst.
"""

from typing import TYPE_CHECKING, Any

from . import payloads as _payloads
from .commands import CommandStats
from .config import (
    ErrorRecoveryConfig,
    RealtimeAdapterConfig,
    RealtimeConnectionConfig,
    RecoveryStrategy,
    ServiceIntegrationConfig,
)
from .errors import (
    AuthError,
    CallbackError,
    CircuitOpenError,
    ClientClosedError,
    CommandError,
    CommandTimeout,
    ConfigError,
    ConnectCancelledError,
    DeliveryError,
    DeliveryTimeout,
    ErrorCategory,
    MagkConnectionError,
    MagkError,
    MagkTimeoutError,
    MessageRefusedError,
    MessageTooLargeError,
    NetworkError,
    NotConnectedError,
    ProtocolError,
    QueueFullError,
    ResumeGapError,
    ServerError,
    TransportClosed,
    WorkflowWaitTimeout,
)
from .events import NODE_EVENT_TYPES, WORKFLOW_EVENT_TYPES, NodeEvent, WorkflowEvent
from .models import (
    BackendHealth,
    CircuitState,
    CommandResponse,
    ConnectionHealth,
    ConnectionState,
    ConnectionType,
    MessageType,
    RealtimeMessage,
    SendResult,
    WorkflowCommand,
)
from .node_state import ConnectionSnapshot, NodeExecutionState, NodeStatus
from .payloads import *  # noqa: F403  (the typed node payloads: payloads.__all__)
from .store import ApplyResult, NodeExecutionStore, StoreConfig, StoreStats

if TYPE_CHECKING:
    from .adapter import AdapterStatus, RealtimeAdapter
    from .factories import (
        WorkflowController,
        create_realtime_adapter,
        create_realtime_service,
        subscribe_to_node,
        subscribe_to_workflow,
    )
    from .global_service import (
        cleanup_global_realtime_service,
        create_global_realtime_service,
        get_global_realtime_service,
    )
    from .integration import IntegrationStatus, RealtimeIntegration
    from .integration_handles import NodeRealtime, WorkflowRealtime, WorkflowResult
    from .service import MessageStream, RealtimeService

_LAZY = {
    "RealtimeService": "service",
    "MessageStream": "service",
    "RealtimeAdapter": "adapter",
    "AdapterStatus": "adapter",
    "WorkflowController": "factories",
    "create_realtime_adapter": "factories",
    "create_realtime_service": "factories",
    "subscribe_to_node": "factories",
    "subscribe_to_workflow": "factories",
    "RealtimeIntegration": "integration",
    "IntegrationStatus": "integration",
    "WorkflowRealtime": "integration_handles",
    "NodeRealtime": "integration_handles",
    "WorkflowResult": "integration_handles",
    "create_global_realtime_service": "global_service",
    "get_global_realtime_service": "global_service",
    "cleanup_global_realtime_service": "global_service",
}


def __getattr__(name: str) -> Any:
    # The threaded layers are imported on first use, so ``import magk_client.testing``
    # or the models stay light.
    module = _LAZY.get(name)
    if module is not None:
        import importlib

        return getattr(importlib.import_module(f".{module}", __name__), name)
    raise AttributeError(f"module 'magk_client' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "NODE_EVENT_TYPES",
    "WORKFLOW_EVENT_TYPES",
    "AdapterStatus",
    "ApplyResult",
    "AuthError",
    "BackendHealth",
    "CallbackError",
    "CircuitOpenError",
    "CircuitState",
    "ClientClosedError",
    "CommandError",
    "CommandResponse",
    "CommandStats",
    "CommandTimeout",
    "ConfigError",
    "ConnectCancelledError",
    "ConnectionHealth",
    "ConnectionSnapshot",
    "ConnectionState",
    "ConnectionType",
    "DeliveryError",
    "DeliveryTimeout",
    "ErrorCategory",
    "ErrorRecoveryConfig",
    "MagkConnectionError",
    "MagkError",
    "MagkTimeoutError",
    "MessageRefusedError",
    "MessageStream",
    "MessageTooLargeError",
    "MessageType",
    "NetworkError",
    "NodeEvent",
    "NodeExecutionState",
    "NodeExecutionStore",
    "NodeStatus",
    "NotConnectedError",
    "ProtocolError",
    "QueueFullError",
    "RealtimeAdapter",
    "RealtimeAdapterConfig",
    "RealtimeConnectionConfig",
    "RealtimeMessage",
    "RealtimeService",
    "RecoveryStrategy",
    "ResumeGapError",
    "SendResult",
    "ServerError",
    "StoreConfig",
    "StoreStats",
    "TransportClosed",
    "WorkflowCommand",
    "WorkflowController",
    "WorkflowEvent",
    "__version__",
    "create_realtime_adapter",
    "create_realtime_service",
    "subscribe_to_node",
    "subscribe_to_workflow",
    "IntegrationStatus",
    "NodeRealtime",
    "RealtimeIntegration",
    "ServiceIntegrationConfig",
    "WorkflowRealtime",
    "WorkflowResult",
    "WorkflowWaitTimeout",
    "cleanup_global_realtime_service",
    "create_global_realtime_service",
    "get_global_realtime_service",
]
__all__ += _payloads.__all__
