"""Redaction of websocket-client's trace output (the ``websocket`` logger).

With ``websocket.enableTrace(True)`` (or the ``websocket`` logger at DEBUG) websocket-client logs
the handshake verbatim: the request headers we send (``Authorization``, ``X-API-Key``, the URL
with a ``token=`` query) and the response's status line and headers, which a hostile or
misconfigured server can make echo those credentials back under any name.

One :class:`logging.Filter` on that logger (installed once per process by
:func:`install_trace_filter`, idempotent, also across a reload of this module) rewrites every
record before any handler sees it:

* the credentials of every transport that is handshaking right now, by value, with the
  transport's own :meth:`~magk_client.transports.base.Transport.scrub` (registered for the
  duration of the handshake with :func:`handshake_secrets`; the trace is written during the
  handshake only, as we use websocket-client for nothing else);
* by name, the values of credential-looking header lines (``Authorization``, ``Cookie``,
  ``*token*``, ``*api-key*``, ...), whoever sent them;
* credential-bearing URLs (user info, ``token=``-like query values).

Thread use: the filter runs on whichever thread logs (the one in ``open()``); the registry is
guarded by a lock that is never held while scrubbing.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from typing import Callable, Iterator, List

from ..errors import redact_url

__all__ = ["handshake_secrets", "install_trace_filter"]

Scrub = Callable[[str], str]

_HEADER = re.compile(
    r"(?im)^((?:authorization|proxy-authorization|cookie|set-cookie|"
    r"[\w-]*(?:token|secret|api-?key|auth)[\w-]*)\s*:)[^\r\n]*"
)
#: marks our filter on the ``websocket`` logger (after a reload of this module the class differs)
_MARK = "_magk_client_redacts"
_install_lock = threading.Lock()


class _RedactingFilter(logging.Filter):
    """Rewrites ``websocket`` records; holds the scrubs of the handshakes in progress (the
    registry lives on the installed filter, so there is one per process whatever is reloaded)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.active: List[Scrub] = []
        setattr(self, _MARK, True)

    def redact(self, text: str) -> str:
        with self.lock:
            scrubs = list(self.active)
        for scrub in scrubs:
            text = scrub(text)
        text = _HEADER.sub(r"\1 ***", text)
        return "\n".join(redact_url(line) for line in text.split("\n"))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
            redacted = self.redact(message)
            if redacted != message:
                record.msg = redacted
                record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = self.redact(record.exc_text)
        except Exception:  # noqa: BLE001 - a malformed record is not ours to fix
            return True
        return True


def install_trace_filter() -> logging.Filter:
    """Put the redacting filter on the ``websocket`` logger unless one is there; return it."""
    lib_logger = logging.getLogger("websocket")
    with _install_lock:
        for existing in lib_logger.filters:
            if isinstance(existing, logging.Filter) and getattr(existing, _MARK, False):
                return existing
        redacting = _RedactingFilter()
        lib_logger.addFilter(redacting)
        return redacting


@contextlib.contextmanager
def handshake_secrets(scrub: Scrub) -> Iterator[None]:
    """While the block runs, every ``websocket`` log record is passed through ``scrub``."""
    installed = install_trace_filter()
    lock: threading.Lock = getattr(installed, "lock")  # noqa: B009 - duck-typed across reloads
    active: List[Scrub] = getattr(installed, "active")  # noqa: B009
    with lock:
        active.append(scrub)
    try:
        yield
    finally:
        with lock:
            active.remove(scrub)
