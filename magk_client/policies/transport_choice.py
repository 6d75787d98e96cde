"""Which transport next: switch or give up after a failure, and when to probe the preferred one again.

Pure: the supervisor passes in what it knows (the error, its recovery plan, the attempt count,
the clock) and acts on the value returned. Not thread-safe on their own: the supervisor calls
:class:`PreferredRetry` with the service's lock held.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional, Tuple

from ..errors import MagkConnectionError
from ..models import ConnectionType
from .recovery import RecoveryPlan

__all__ = ["FailureDecision", "GiveUp", "PreferredRetry", "decide_after_failure"]

#: HTTP statuses with which a server refuses the WebSocket upgrade (it will refuse it again)
REFUSED_UPGRADE = frozenset({400, 404, 405, 426, 501})


class GiveUp(enum.Enum):
    """Why the session ends after a failure."""

    REFUSED_UPGRADE = "refused upgrade"  # and no other transport to fall back to (docs/faults.rst row 13)
    NO_RECONNECT = "no reconnect"  # terminal, auto_reconnect off, or no RECONNECT strategy
    EXHAUSTED = "attempts exhausted"  # max_reconnect_attempts


@dataclass(frozen=True)
class FailureDecision:
    """What the supervisor does after a failed attempt or a lost connection: end the session
    (``give_up`` says why) or retry, over ``switch_to`` when set (else the same transport)."""

    give_up: Optional[GiveUp] = None
    switch_to: Optional[ConnectionType] = None


def decide_after_failure(
    error: MagkConnectionError,
    plan: RecoveryPlan,
    *,
    ctype: ConnectionType,
    other: Optional[ConnectionType],
    connected: bool,
    attempts: int,
    exhausted: bool,
) -> FailureDecision:
    """Switch transports or give up after ``error`` on ``ctype``.

    ``other`` is the transport a fallback would use (None: none configured, or fallback off);
    ``connected``: a live connection was lost (else an attempt failed); ``attempts`` and
    ``exhausted``: the reconnect tracker after it counted this failure.

    Repeated failed attempts alternate transports every second retry (either may be the one that
    is down); a refused upgrade, or a plan with ``fallback``, switches at once. A refused upgrade
    with nothing to fall back to gives up: it will be refused again. A terminal error never
    switches.
    """
    refused_upgrade = not connected and ctype is ConnectionType.WEBSOCKET and error.status in REFUSED_UPGRADE
    repeated = not connected and attempts >= 2 and attempts % 2 == 0
    switch = other is not None and not error.terminal and (plan.fallback or refused_upgrade or repeated)
    if refused_upgrade and not switch:
        return FailureDecision(give_up=GiveUp.REFUSED_UPGRADE)
    if not plan.reconnect and not (switch and refused_upgrade):
        return FailureDecision(give_up=GiveUp.NO_RECONNECT)
    if exhausted:
        return FailureDecision(give_up=GiveUp.EXHAUSTED)
    return FailureDecision(switch_to=other if switch else None)


class PreferredRetry:
    """When to probe the preferred transport again while connected over the other one.

    :meth:`schedule` when a connection over the secondary opens, :meth:`cancel` when a fallback
    goes back to the preferred transport; :meth:`check` on every watch turn of the supervisor.
    """

    __slots__ = ("next_at",)

    def __init__(self) -> None:
        self.next_at: Optional[float] = None

    def schedule(self, now: float, interval: float) -> None:
        self.next_at = now + interval

    def cancel(self) -> None:
        self.next_at = None

    def check(self, now: float, interval: float) -> Tuple[bool, Optional[float]]:
        """``(probe now, when to look again)``; a probe due now schedules the next one
        ``interval`` seconds on (a failed probe is retried then). ``(False, None)`` when
        nothing is scheduled."""
        at = self.next_at
        if at is None:
            return False, None
        if now >= at:
            self.next_at = now + interval
            return True, self.next_at
        return False, at
