"""The send rate limit: a token bucket (pure).

``rate`` tokens per second flow into a bucket that holds at most ``burst``; each
outbound message takes one. :meth:`TokenBucket.take` either takes a token (and
returns ``0.0``) or takes nothing and returns how many seconds remain until one
is there, so a caller that waits that long and asks again gets it (unless another
caller took it first). Over any interval of ``t`` seconds at most
``burst + rate * t`` messages pass.

Time is passed in (``now``, :func:`time.monotonic` seconds); the bucket starts
full at the first call. Not thread-safe: the service calls it under its lock.
"""

from __future__ import annotations

import math
from typing import Optional

from .errors import ConfigError

__all__ = ["TokenBucket", "default_burst"]


def default_burst(rate: float) -> int:
    """The burst when none is configured: a tenth of a second's worth of messages, at least 1."""
    return max(1, math.ceil(rate / 10.0))


class TokenBucket:
    """``rate`` messages per second, at most ``burst`` at once.

    Counters (for health): ``taken`` tokens handed out, ``refusals`` calls of
    :meth:`take` that had to be told to wait.
    """

    __slots__ = ("_stamp", "_tokens", "burst", "rate", "refusals", "taken")

    def __init__(self, rate: float, burst: Optional[int] = None) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
            raise ConfigError(f"rate must be a finite number > 0 (messages per second), got {rate!r}")
        if burst is None:
            burst = default_burst(rate)
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ConfigError(f"burst must be an integer >= 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = burst
        self._tokens = float(burst)
        self._stamp: Optional[float] = None
        self.taken = 0
        self.refusals = 0

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate:g}/s, burst={self.burst}, tokens={self._tokens:.2f})"

    def _refill(self, now: float) -> None:
        stamp = self._stamp
        if stamp is None or now < stamp:  # first call, or a clock that went back: no credit
            self._stamp = now
            return
        self._tokens = min(float(self.burst), self._tokens + (now - stamp) * self.rate)
        self._stamp = now

    def take(self, now: float) -> float:
        """Take one token and return ``0.0``; or, when none is there, take nothing and
        return the seconds until one will be (always > 0)."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.taken += 1
            return 0.0
        self.refusals += 1
        # at least a microsecond: a caller told to wait 0 s would spin
        return max((1.0 - self._tokens) / self.rate, 1e-6)

    def available(self, now: float) -> float:
        """How many tokens are there now (no side effect on the counters)."""
        self._refill(now)
        return self._tokens

    def reconfigure(self, rate: float, burst: Optional[int], now: float) -> None:
        """Change rate and burst, keeping the tokens saved up until ``now`` (capped at the new burst)."""
        fresh = TokenBucket(rate, burst)  # validates
        self._refill(now)
        self.rate, self.burst = fresh.rate, fresh.burst
        self._tokens = min(self._tokens, float(self.burst))
