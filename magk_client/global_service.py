"""The process-wide :class:`~magk_client.service.RealtimeService` of the seed's global functions
(``createGlobalRealtimeService``, ``getGlobalRealtimeService``, ``cleanupGlobalRealtimeService``).

Thread-safe: one lock guards the global; a service is closed (which joins its threads) after the
lock is released, so a slow close never blocks :func:`get_global_realtime_service` or another create.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping, Optional, Union

from .config import ErrorRecoveryConfig, RealtimeConnectionConfig
from .service import RealtimeService

__all__ = ["cleanup_global_realtime_service", "create_global_realtime_service", "get_global_realtime_service"]

_global_lock = threading.Lock()
_global_service: Optional[RealtimeService] = None


def create_global_realtime_service(
    config: Union[RealtimeConnectionConfig, Mapping[str, Any], None] = None,
    error_recovery: Union[ErrorRecoveryConfig, Mapping[str, Any], None] = None,
    **overrides: Any,
) -> RealtimeService:
    """Make the process-wide :class:`RealtimeService` (not connected yet) and return it. A global
    service made before is replaced and closed (its threads end; using it raises
    :class:`ClientClosedError`). Thread-safe: of concurrent calls, the last to take the lock wins and
    every service it replaced is closed exactly once. A bad config raises and keeps the old one."""
    global _global_service
    service = RealtimeService(config, error_recovery, **overrides)
    with _global_lock:
        old, _global_service = _global_service, service
    if old is not None:
        old.close()
    return service


def get_global_realtime_service() -> Optional[RealtimeService]:
    """The process-wide service, or None if none was made (or it was cleaned up)."""
    return _global_service


def cleanup_global_realtime_service() -> bool:
    """Close the process-wide service (it disconnects; its threads end) and forget it. True if there
    was one; of concurrent calls exactly one closes it."""
    global _global_service
    with _global_lock:
        old, _global_service = _global_service, None
    if old is None:
        return False
    old.close()
    return True
