"""Pure tests of the supervisor's transport decisions (magk_client.policies.transport_choice):
switch or give up after a failure, and when to probe the preferred transport again. No sockets."""

from __future__ import annotations

from typing import Optional

import pytest

from magk_client.config import ErrorRecoveryConfig, RecoveryStrategy
from magk_client.errors import AuthError, MagkConnectionError, NetworkError, classify_http_status
from magk_client.models import ConnectionType
from magk_client.policies import (
    FailureDecision,
    GiveUp,
    PreferredRetry,
    RecoveryPlan,
    decide_after_failure,
    recovery_plan,
)

WS, SSE = ConnectionType.WEBSOCKET, ConnectionType.EVENTSOURCE


def plan_for(error: MagkConnectionError, *, auto_reconnect: bool = True, fallback: bool = True) -> RecoveryPlan:
    return recovery_plan(error, ErrorRecoveryConfig(), auto_reconnect=auto_reconnect, fallback_available=fallback)


def decide(
    error: MagkConnectionError,
    *,
    ctype: ConnectionType = WS,
    other: Optional[ConnectionType] = SSE,
    connected: bool = False,
    attempts: int = 1,
    exhausted: bool = False,
    plan: Optional[RecoveryPlan] = None,
) -> FailureDecision:
    return decide_after_failure(
        error,
        plan if plan is not None else plan_for(error, fallback=other is not None),
        ctype=ctype,
        other=other,
        connected=connected,
        attempts=attempts,
        exhausted=exhausted,
    )


def test_a_first_network_failure_retries_the_same_transport() -> None:
    assert decide(NetworkError("refused")) == FailureDecision()


def test_failed_attempts_alternate_transports_every_second_retry() -> None:
    switches = [decide(NetworkError("refused"), attempts=n).switch_to for n in range(1, 7)]
    assert switches == [None, SSE, None, SSE, None, SSE]


def test_a_lost_connection_does_not_alternate() -> None:
    assert decide(NetworkError("reset"), connected=True, attempts=2).switch_to is None


@pytest.mark.parametrize("status", [400, 404, 405, 426, 501])
def test_a_refused_upgrade_switches_at_once(status: int) -> None:
    error = classify_http_status(status, "the WebSocket upgrade")
    assert decide(error, attempts=1) == FailureDecision(switch_to=SSE)


def test_a_refused_upgrade_switches_even_without_the_reconnect_strategy() -> None:
    error = classify_http_status(404, "the WebSocket upgrade")
    no_reconnect = plan_for(error, auto_reconnect=False)
    assert not no_reconnect.reconnect
    assert decide(error, plan=no_reconnect) == FailureDecision(switch_to=SSE)


def test_a_refused_upgrade_with_nothing_to_fall_back_to_gives_up() -> None:
    error = classify_http_status(426, "the WebSocket upgrade")
    assert decide(error, other=None) == FailureDecision(give_up=GiveUp.REFUSED_UPGRADE)


def test_a_refused_sse_request_is_no_refused_upgrade() -> None:
    error = classify_http_status(404, "the SSE request")
    assert decide(error, ctype=SSE, other=WS).give_up is None


def test_a_terminal_error_gives_up_and_never_switches() -> None:
    error = AuthError("bad token", status=401)
    assert decide(error, attempts=2) == FailureDecision(give_up=GiveUp.NO_RECONNECT)


def test_without_auto_reconnect_a_failure_gives_up() -> None:
    error = NetworkError("refused")
    assert decide(error, plan=plan_for(error, auto_reconnect=False)).give_up is GiveUp.NO_RECONNECT


def test_exhausted_attempts_give_up() -> None:
    assert decide(NetworkError("refused"), attempts=5, exhausted=True).give_up is GiveUp.EXHAUSTED


def test_the_fallback_strategy_switches_on_the_first_failure() -> None:
    error = NetworkError("refused")
    recovery = ErrorRecoveryConfig(
        network_errors=[RecoveryStrategy.RECONNECT, RecoveryStrategy.FALLBACK_CONNECTION]
    )
    plan = recovery_plan(error, recovery, auto_reconnect=True, fallback_available=True)
    assert decide(error, plan=plan, attempts=1).switch_to is SSE


def test_preferred_retry_is_idle_until_scheduled() -> None:
    retry = PreferredRetry()
    assert retry.check(100.0, 5.0) == (False, None)


def test_preferred_retry_probes_when_due_and_reschedules() -> None:
    retry = PreferredRetry()
    retry.schedule(now=10.0, interval=5.0)
    assert retry.check(12.0, 5.0) == (False, 15.0)  # not yet: look again at 15
    assert retry.check(15.0, 5.0) == (True, 20.0)  # due: probe, the next one (a failed probe) at 20
    assert retry.check(16.0, 5.0) == (False, 20.0)


def test_preferred_retry_takes_the_current_interval_when_it_reschedules() -> None:
    retry = PreferredRetry()
    retry.schedule(now=0.0, interval=5.0)
    assert retry.check(6.0, 1.0) == (True, 7.0)  # update_config shortened the interval


def test_preferred_retry_cancelled_by_a_fallback_to_the_preferred_transport() -> None:
    retry = PreferredRetry()
    retry.schedule(now=0.0, interval=5.0)
    retry.cancel()
    assert retry.check(100.0, 5.0) == (False, None)
