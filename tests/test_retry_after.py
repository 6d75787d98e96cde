"""The one Retry-After parser (magk_client/retry_after.py): pure, the clock passed in."""

from __future__ import annotations

import email.utils
import threading

import pytest

from magk_client.retry_after import LONGEST, parse_retry_after, retry_after_from_headers

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    "value, expected",
    [
        ("0", 0.0),
        ("3", 3.0),
        (" 120 ", 120.0),
        ("99999999999", LONGEST),
        ("9" * 10_000, LONGEST),
        ("", None),
        ("   ", None),
        (None, None),
        ("-1", None),
        ("1.5", None),
        ("soon", None),
        ("\u0663", None),  # a non-ASCII digit is not delta-seconds
    ],
)
def test_delta_seconds(value: object, expected: object) -> None:
    assert parse_retry_after(value, NOW) == expected  # type: ignore[arg-type]


def test_http_date_in_the_future_and_in_the_past() -> None:
    later = email.utils.formatdate(NOW + 30, usegmt=True)
    earlier = email.utils.formatdate(NOW - 30, usegmt=True)
    assert parse_retry_after(later, NOW) == pytest.approx(30.0)
    assert parse_retry_after(earlier, NOW) == 0.0


def test_far_dates_stay_finite_and_waitable() -> None:
    seconds = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", NOW)
    assert seconds == LONGEST
    assert LONGEST < threading.TIMEOUT_MAX
    assert parse_retry_after("Mon, 32 Foo 99999 99:99:99 GMT", NOW) is None


def test_headers_any_case() -> None:
    assert retry_after_from_headers({"Retry-After": "7"}, NOW) == 7.0
    assert retry_after_from_headers({"retry-after": "7"}, NOW) == 7.0
    assert retry_after_from_headers({"content-type": "x"}, NOW) is None
    assert retry_after_from_headers(None, NOW) is None
