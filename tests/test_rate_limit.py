"""Pure tests of magk_client.rate_limit.TokenBucket (clock passed in) and the rate limit's config."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from magk_client.config import RealtimeConnectionConfig
from magk_client.errors import ConfigError
from magk_client.rate_limit import TokenBucket, default_burst


def test_starts_full_then_paces_at_the_rate() -> None:
    bucket = TokenBucket(10.0, burst=3)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = bucket.take(0.0)
    assert wait == pytest.approx(0.1)
    assert bucket.take(0.05) == pytest.approx(0.05)  # half a token so far
    assert bucket.take(0.1) == 0.0
    assert bucket.taken == 4 and bucket.refusals == 2


def test_tokens_never_exceed_the_burst() -> None:
    bucket = TokenBucket(100.0, burst=5)
    bucket.take(0.0)
    assert bucket.available(1000.0) == 5.0
    assert sum(1 for _ in range(20) if bucket.take(1000.0) == 0.0) == 5


def test_a_clock_going_back_gives_no_credit() -> None:
    bucket = TokenBucket(1.0, burst=1)
    assert bucket.take(10.0) == 0.0
    assert bucket.take(5.0) > 0
    assert bucket.take(5.5) == pytest.approx(0.5)


def test_default_burst_is_a_tenth_of_a_second() -> None:
    assert default_burst(1.0) == 1
    assert default_burst(0.01) == 1
    assert default_burst(250.0) == 25
    assert TokenBucket(33.0).burst == 4


def test_reconfigure_keeps_saved_tokens_within_the_new_burst() -> None:
    bucket = TokenBucket(10.0, burst=10)
    bucket.take(0.0)
    bucket.reconfigure(1.0, 2, 0.0)
    assert bucket.available(0.0) == 2.0
    assert bucket.rate == 1.0 and bucket.burst == 2


@pytest.mark.parametrize("rate", [0, -1, float("nan"), float("inf"), True, "5"])
def test_bad_rates_are_config_errors(rate: object) -> None:
    with pytest.raises(ConfigError):
        TokenBucket(rate)  # type: ignore[arg-type]


@pytest.mark.parametrize("burst", [0, -1, 1.5, True])
def test_bad_bursts_are_config_errors(burst: object) -> None:
    with pytest.raises(ConfigError):
        TokenBucket(1.0, burst)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.5, 1000.0),
    burst=st.integers(1, 50),
    steps=st.lists(st.floats(0.0, 0.05), min_size=1, max_size=300),
)
def test_never_more_than_burst_plus_rate_times_t(rate: float, burst: int, steps: list) -> None:  # type: ignore[type-arg]
    """Whatever the calling pattern, over [0, t] at most burst + rate * t tokens are taken."""
    bucket = TokenBucket(rate, burst)
    now = 0.0
    for step in steps:
        now += step
        bucket.take(now)
        assert bucket.taken <= burst + rate * now + 1e-6


def test_a_caller_that_waits_as_told_gets_the_rate() -> None:
    """Waiting exactly what take() says gives rate messages per second (to within one)."""
    bucket = TokenBucket(50.0, burst=1)
    now, sent = 0.0, 0
    while now < 2.0:
        wait = bucket.take(now)
        if wait == 0.0:
            sent += 1
        else:
            now += wait
    assert 100 <= sent <= 102


# -- config ------------------------------------------------------------------------------------


def test_the_limit_is_off_by_default() -> None:
    cfg = RealtimeConnectionConfig()
    assert cfg.max_messages_per_second is None and cfg.max_message_burst is None


def test_camel_case_keys_are_accepted() -> None:
    cfg = RealtimeConnectionConfig.from_dict({"maxMessagesPerSecond": 20, "maxMessageBurst": 4})
    assert cfg.max_messages_per_second == 20 and cfg.max_message_burst == 4
    assert cfg.replace(maxMessagesPerSecond=None).max_messages_per_second is None  # off again; burst ignored


@pytest.mark.parametrize(
    "changes",
    [
        {"max_messages_per_second": 0},
        {"max_messages_per_second": -3},
        {"max_messages_per_second": float("inf")},
        {"max_messages_per_second": float("nan")},
        {"max_messages_per_second": "10"},
        {"max_messages_per_second": True},
        {"max_message_burst": 0},
        {"max_message_burst": 2.5},
        {"max_message_burst": False},
    ],
)
def test_bad_limits_name_the_field(changes: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match=next(iter(changes))):
        RealtimeConnectionConfig(**changes)
