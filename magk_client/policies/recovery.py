"""The recovery plan: what to do about one connection error (pure)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

from ..config import ErrorRecoveryConfig, RecoveryStrategy
from ..errors import MagkConnectionError
from ._checks import cap_server_wait

__all__ = ["RecoveryPlan", "close_code_floor", "recovery_plan"]

#: Server-mandated waits by WebSocket close code, as (lo, hi) seconds; the service
#: draws the floor uniformly from that range (:meth:`RecoveryPlan.draw_floor`).
#: 1012 service restart: "reconnect after a randomized 5-30 s" (docs/faults.rst, close codes).
#: 1013 try again later, 4029 rate limited: a long wait, 10-60 s, unless the
#: server gave a Retry-After (which then sets ``delay_floor``).
_CLOSE_CODE_FLOORS: Mapping[int, Tuple[float, float]] = {
    1012: (5.0, 30.0),
    1013: (10.0, 60.0),
    4029: (10.0, 60.0),
}


def close_code_floor(code: Optional[int]) -> Tuple[float, float]:
    """The (lo, hi) seconds range of the minimum reconnect delay after close ``code``.

    ``(0.0, 0.0)`` for every code without a policy (normal backoff applies).
    """
    if code is None:
        return (0.0, 0.0)
    return _CLOSE_CODE_FLOORS.get(code, (0.0, 0.0))


@dataclass(frozen=True)
class RecoveryPlan:
    """What to do about one connection error (an immutable value).

    ``delay_floor`` is the server's explicit wait (``Retry-After``/SSE ``retry:``,
    seconds); ``floor_range`` the close-code policy range. The actual floor for
    :meth:`Backoff.delay` is :meth:`draw_floor`.
    """

    reconnect: bool
    fallback: bool
    queue_offline: bool
    notify: bool
    escalate: bool
    delay_floor: float = 0.0
    floor_range: Tuple[float, float] = (0.0, 0.0)
    terminal: bool = False

    def draw_floor(self, rng: random.Random) -> float:
        """``max(delay_floor, uniform(*floor_range))`` (no draw when the range is empty)."""
        lo, hi = self.floor_range
        drawn = rng.uniform(lo, hi) if hi > 0 else 0.0
        return max(self.delay_floor, drawn)


def recovery_plan(
    error: MagkConnectionError,
    recovery: ErrorRecoveryConfig,
    *,
    auto_reconnect: bool,
    fallback_available: bool,
    max_delay_floor: float = math.inf,
) -> RecoveryPlan:
    """Map an error to a :class:`RecoveryPlan` through the category's strategies.

    ``delay_floor`` is the error's ``retry_after`` capped at ``max_delay_floor`` seconds
    (the service passes ``max_retry_after_ms``; see :func:`cap_server_wait`).

    * ``reconnect`` needs ``RECONNECT`` among the strategies and ``auto_reconnect``.
    * ``fallback`` needs ``FALLBACK_CONNECTION`` and ``fallback_available`` (the
      caller knows whether the other transport is configured); it does not depend
      on ``auto_reconnect``, so a failing first ``connect()`` may still switch.
    * ``error.terminal`` (auth, SSE 204, TLS verification, 1002/1003/1007/1010)
      forces ``reconnect`` and ``fallback`` off whatever the strategies say, and
      forces ``notify`` on: the user must hear about an error we will not retry.
    * ``queue_offline``/``notify``/``escalate``: the strategies as configured.
    """
    strategies = recovery.strategies_for(error.category)
    terminal = bool(error.terminal)
    return RecoveryPlan(
        reconnect=auto_reconnect and RecoveryStrategy.RECONNECT in strategies and not terminal,
        fallback=fallback_available and RecoveryStrategy.FALLBACK_CONNECTION in strategies and not terminal,
        queue_offline=RecoveryStrategy.QUEUE_OFFLINE in strategies,
        notify=terminal or RecoveryStrategy.NOTIFY_ONLY in strategies,
        escalate=RecoveryStrategy.ESCALATE in strategies,
        delay_floor=cap_server_wait(error.retry_after, max_delay_floor),
        floor_range=close_code_floor(error.close_code),
        terminal=terminal,
    )
