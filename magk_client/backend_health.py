"""Backend health: ``GET /health`` read into a :class:`~magk_client.models.BackendHealth`, and a
background poller.

:func:`parse_health` decides what an answer means (pure):

- 2xx with a JSON object carrying a string ``status``: that health. The full shape (``services``,
  ``metrics``) and the minimal ``{"status", "service"}`` of real MAGK servers are both accepted;
  missing parts stay empty.
- 401/403: :class:`~magk_client.errors.AuthError`.
- 5xx (and 429): the backend answered, but is not well: the body's status when it names one other
  than ``healthy``, else ``unhealthy``. Never ``healthy``.
- any other status, or a 2xx whose body is not such an object:
  :class:`~magk_client.errors.ProtocolError`.

:class:`HealthPoller` runs one named thread, ``magk-adapter-N-health``, that checks every
``interval`` seconds (the first check at once) and keeps the latest result; ``stop()`` wakes it,
aborts a check in progress and joins it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from .errors import AuthError, MagkError, ProtocolError, classify_http_status
from .models import BackendHealth

__all__ = ["HEALTH_PATH", "HealthPoller", "HealthResult", "parse_health"]

logger = logging.getLogger("magk_client.adapter.health")

HEALTH_PATH = "/health"
_NOT_HEALTHY = ("degraded", "unhealthy")


def _json_object(body: bytes) -> Optional[Dict[str, Any]]:
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _health_from(obj: Dict[str, Any], status: str) -> BackendHealth:
    service = obj.get("service")
    services = obj.get("services")
    metrics = obj.get("metrics")
    return BackendHealth(
        status=status,
        service=service if isinstance(service, str) else None,
        services=(
            {k: v for k, v in services.items() if isinstance(k, str) and isinstance(v, bool)}
            if isinstance(services, dict)
            else {}
        ),
        metrics=dict(metrics) if isinstance(metrics, dict) else {},
    )


def parse_health(status_code: int, body: bytes, where: str = "GET /health") -> BackendHealth:
    """What a ``/health`` answer says (pure; see the module doc). Raises a classified error."""
    obj = _json_object(body)
    if 200 <= status_code < 300:
        status = obj.get("status") if obj is not None else None
        if not isinstance(status, str) or not status:
            raise ProtocolError(f"{where} answered {status_code} without a health status")
        assert obj is not None
        return _health_from(obj, status)
    if status_code in (401, 403):
        raise AuthError(f"{where} was refused with HTTP {status_code}", status=status_code)
    if status_code >= 500 or status_code == 429:
        stated = obj.get("status") if obj is not None else None
        status = stated if isinstance(stated, str) and stated and stated != "healthy" else "unhealthy"
        return _health_from(obj or {}, status)
    raise classify_http_status(status_code, where)


@dataclass(frozen=True)
class HealthResult:
    """The outcome of one health check: a health, or the error that prevented it."""

    checked_at: float
    health: Optional[BackendHealth] = None
    error: Optional[MagkError] = None


class HealthPoller:
    """Calls ``check()`` every ``interval`` seconds on one named thread and keeps the latest result.

    ``check`` returns a :class:`BackendHealth` or raises a :class:`MagkError`; ``abort`` (called by
    :meth:`stop` from the stopping thread) must make a check in progress return promptly.
    """

    def __init__(
        self,
        check: Callable[[], BackendHealth],
        interval: float,
        name: str,
        abort: Callable[[], None],
        on_result: Optional[Callable[[HealthResult], None]] = None,
    ) -> None:
        self._check = check
        self._interval = interval
        self._abort = abort
        self._on_result = on_result
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.latest: Optional[HealthResult] = None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        """The poller thread: check, record, wait ``interval`` (woken at once by ``stop``)."""
        while not self._stop.is_set():
            try:
                result = HealthResult(time.time(), health=self._check())
            except MagkError as err:
                result = HealthResult(time.time(), error=err)
            except Exception as exc:
                logger.warning("health check failed unexpectedly", exc_info=True)
                result = HealthResult(time.time(), error=MagkError(f"health check failed: {type(exc).__name__}"))
            if self._stop.is_set():
                return
            self.latest = result
            if result.error is not None:
                logger.info("backend health check failed: %s", result.error)
            if self._on_result is not None:
                self._on_result(result)
            self._stop.wait(self._interval)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling; a check in progress is aborted. Joins the thread (unless called on it)."""
        self._stop.set()
        self._abort()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("health poller thread did not end within %.1f s", timeout)
