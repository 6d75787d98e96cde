"""Pure policies: backoff, reconnect bookkeeping, circuit breaker, heartbeat, recovery plan.

Nothing here opens a socket, starts a thread or reads a clock. Time is always
passed in as ``now`` (float seconds from :func:`time.monotonic`), randomness
comes from an injected :class:`random.Random`. The service (the threads) drives
these objects and acts on their answers, the way ``websockets``' ``sync``
connection drives its sans-I/O protocol; so each object here can be tested in
microseconds with a hand-advanced clock.

:class:`Backoff` and :class:`RecoveryPlan` are immutable values (like urllib3's
``Retry``) and safe to share. :class:`ReconnectTracker`, :class:`CircuitBreaker`
and :class:`HeartbeatMonitor` hold mutable state and are **not thread-safe** on
their own: the service calls them with its lock held.

The objects live in one module each (:mod:`.backoff`, :mod:`.breaker`, :mod:`.heartbeat`,
:mod:`.recovery`, :mod:`.transport_choice`); this package re-exports them.
"""

from __future__ import annotations

from ._checks import cap_server_wait
from .backoff import Backoff, ReconnectTracker
from .breaker import CircuitBreaker
from .heartbeat import HeartbeatMonitor
from .recovery import RecoveryPlan, close_code_floor, recovery_plan
from .transport_choice import FailureDecision, GiveUp, PreferredRetry, decide_after_failure

__all__ = [
    "Backoff",
    "CircuitBreaker",
    "cap_server_wait",
    "HeartbeatMonitor",
    "ReconnectTracker",
    "RecoveryPlan",
    "close_code_floor",
    "recovery_plan",
    "FailureDecision",
    "GiveUp",
    "PreferredRetry",
    "decide_after_failure",
]
