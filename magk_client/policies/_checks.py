"""Value checks shared by the policies (pure)."""

from __future__ import annotations

import math
from typing import Optional

from ..errors import ConfigError

__all__ = ["cap_server_wait"]


def _finite_non_negative(value: Optional[float]) -> float:
    """``value`` as a usable delay: ``None``, NaN and negatives become 0.0."""
    if value is None or math.isnan(value) or value < 0:
        return 0.0
    return float(value)


def cap_server_wait(seconds: Optional[float], cap: float) -> float:
    """A wait the server asked for (``Retry-After``, SSE ``retry:``; seconds) as a usable delay:
    ``None``, NaN and negatives become 0.0; anything above ``cap`` becomes ``cap``, so a hostile or
    broken ``Retry-After: 99999999999`` cannot park the client for centuries (or overflow a wait)."""
    return min(_finite_non_negative(seconds), cap)


def _check_seconds(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a finite number > 0 (>= 0 if allowed)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        raise ConfigError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")

