"""The one parser of ``Retry-After`` (RFC 9110 section 10.2.3), shared by both transports.

Pure: the wall-clock time is an argument. A server may send a delay in seconds
(``Retry-After: 120``) or an HTTP date (``Retry-After: Fri, 31 Dec 1999 23:59:59 GMT``).
The result is a finite number of seconds, never negative and never more than
:data:`LONGEST`, so no caller can overflow ``threading.Event.wait`` with it; the
service then applies the user's cap (``max_retry_after_ms``). Anything that is
neither form is ``None`` (the header is ignored, as the RFC allows).
"""

from __future__ import annotations

import email.utils
import math
from typing import Mapping, Optional

__all__ = ["LONGEST", "parse_retry_after", "retry_after_from_headers"]

#: The longest wait the parser returns (about 3 years): far above any cap, far below
#: ``threading.TIMEOUT_MAX``.
LONGEST = 1e8


def parse_retry_after(value: Optional[str], now: float) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` value, measured from ``now`` (``time.time()``)."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        # delta-seconds; compare digit counts first so a 10,000-digit value costs nothing
        return LONGEST if len(value) > 9 else min(float(value), LONGEST)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    try:
        seconds = when.timestamp() - now
    except (OverflowError, ValueError, OSError):
        return None
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), LONGEST)


def retry_after_from_headers(headers: Optional[Mapping[str, str]], now: float) -> Optional[float]:
    """:func:`parse_retry_after` of a header mapping (any key case), or ``None``."""
    if not headers:
        return None
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == "retry-after":
            return parse_retry_after(value, now)
    return None
