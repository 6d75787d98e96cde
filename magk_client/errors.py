"""The one exception hierarchy of magk-client.

Every error the SDK raises or reports is a :class:`MagkError`. Errors of the
libraries underneath (websocket-client, requests, the socket module, json) are
translated at the transport boundary, so user code never has to import them::

    MagkError
     +-- ConfigError (also ValueError)        a bad config value or argument
     +-- ClientClosedError                    use after close()
     +-- ConnectCancelledError                a waiting connect() ended by disconnect()/close()
     +-- NotConnectedError                    send while offline with no queue
     +-- QueueFullError                       the offline queue refused a message
     +-- MagkConnectionError                     something went wrong with a connection
     |    +-- NetworkError                    refused, reset, unreachable, dropped
     |    +-- MagkTimeoutError (also TimeoutError)  connect, send or heartbeat timeout
     |    |    +-- WorkflowWaitTimeout        a workflow did not end within wait_until_complete's timeout
     |    +-- AuthError                       401/403, close 1008/4401/4403
     |    +-- ServerError                     5xx, close 1011/1012/1013/1014
     |    +-- ProtocolError                   bad frames, bad JSON, wrong content type
     |    |    +-- MessageTooLargeError       over max_message_size (close 1009)
     |    +-- TransportClosed                 the server ended the stream (1000/1001, 204, EOF)
     +-- CircuitOpenError                     too many failures in a row; waiting before a probe
     +-- ResumeGapError                       the server could not replay what we missed
     +-- CommandError                         a workflow command failed or was refused
     |    +-- CommandTimeout (also TimeoutError)  no answer in time
     +-- CallbackError                        a user callback raised (reported, not raised)

Each connection error carries an :class:`ErrorCategory`, which the recovery
plan (``ErrorRecoveryConfig``) maps to strategies. Messages never contain
credentials: URLs are redacted with :func:`redact_url` before they are put in
an error.
"""

from __future__ import annotations

import enum
import re
from typing import Any, Optional

__all__ = [
    "AuthError",
    "CallbackError",
    "CircuitOpenError",
    "ClientClosedError",
    "CommandError",
    "CommandTimeout",
    "ConnectCancelledError",
    "ConfigError",
    "DeliveryError",
    "DeliveryTimeout",
    "MagkConnectionError",
    "ErrorCategory",
    "MagkError",
    "MagkTimeoutError",
    "MessageRefusedError",
    "MessageTooLargeError",
    "NetworkError",
    "NotConnectedError",
    "ProtocolError",
    "QueueFullError",
    "ResumeGapError",
    "ServerError",
    "TransportClosed",
    "WorkflowWaitTimeout",
    "classify_close_code",
    "classify_http_status",
    "redact_url",
]


class ErrorCategory(str, enum.Enum):
    """What kind of failure an error is; the recovery plan is keyed by it."""

    NETWORK = "network"
    TIMEOUT = "timeout"
    AUTH = "auth"
    SERVER = "server"
    PROTOCOL = "protocol"
    UNKNOWN = "unknown"


class MagkError(Exception):
    """Base class of every error magk-client raises or reports."""


class ConfigError(MagkError, ValueError):
    """A configuration value or an argument is invalid. The message names the field."""


def check_non_empty(name: str, value: Any) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a non-empty string (an id, a name)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}")


class ClientClosedError(MagkError):
    """The client was closed; it cannot be used again."""


class ConnectCancelledError(MagkError):
    """A :meth:`connect` that was waiting ended because :meth:`disconnect` or :meth:`close`
    was called (from another thread or a callback) before the connection was made."""


class NotConnectedError(MagkError):
    """Not connected, and the offline queue is off (or the message cannot wait)."""


class QueueFullError(MagkError):
    """The offline queue is full and its overflow policy refuses new messages."""


class MagkConnectionError(MagkError):
    """A connection failed or was lost.

    Attributes:
        category: the :class:`ErrorCategory` that selects the recovery strategies.
        status: the HTTP status of a refused handshake or request, if any.
        close_code: the WebSocket close code, if the connection was closed with one.
        retry_after: seconds the server asked us to wait (``Retry-After`` or SSE ``retry:``).
        terminal: True when reconnecting cannot help (auth, 204, a TLS verification failure).
    """

    category: ErrorCategory = ErrorCategory.UNKNOWN
    default_terminal: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        close_code: Optional[int] = None,
        retry_after: Optional[float] = None,
        terminal: Optional[bool] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.close_code = close_code
        self.retry_after = retry_after
        self.terminal = self.default_terminal if terminal is None else terminal


class NetworkError(MagkConnectionError):
    """Connection refused, reset, unreachable, or dropped without a close frame."""

    category = ErrorCategory.NETWORK


class MagkTimeoutError(MagkConnectionError, TimeoutError):
    """A connect, send or heartbeat deadline passed."""

    category = ErrorCategory.TIMEOUT


class WorkflowWaitTimeout(MagkTimeoutError):
    """A workflow did not end (completed, failed or stopped) within the ``timeout`` given to
    ``wait_until_complete``. The connection itself may be fine; the workflow goes on.

    Attributes:
        workflow_id: the workflow waited for.
        timeout: the seconds waited.
        last_status: the workflow's status as last reported by its events (``running``,
            ``paused``...), None if no event of it was seen.
    """

    def __init__(self, workflow_id: str, timeout: float, last_status: Optional[str]) -> None:
        seen = f"last seen {last_status}" if last_status else "no event of it seen"
        super().__init__(f"workflow {workflow_id!r} did not end within {timeout:g} s ({seen})")
        self.workflow_id = workflow_id
        self.timeout = timeout
        self.last_status = last_status


class AuthError(MagkConnectionError):
    """The server refused our credentials. Never retried in a loop."""

    category = ErrorCategory.AUTH
    default_terminal = True


class ServerError(MagkConnectionError):
    """The server failed (5xx, close 1011) or asked us to come back later."""

    category = ErrorCategory.SERVER


class ProtocolError(MagkConnectionError):
    """The peer broke the protocol: bad frames, bad JSON, a wrong content type."""

    category = ErrorCategory.PROTOCOL


class MessageTooLargeError(ProtocolError):
    """A message was larger than ``max_message_size``, or (``server_refused``) the server closed
    the WebSocket with 1009: one of our messages was too large for it."""

    #: True when the server closed with 1009 (see :func:`classify_close_code`)
    server_refused = False


class TransportClosed(MagkConnectionError):
    """The server ended the connection in an orderly way (close 1000/1001, end of stream)."""

    category = ErrorCategory.NETWORK


class CircuitOpenError(MagkError):
    """The circuit breaker is open: connection attempts pause until ``retry_in`` seconds pass."""

    def __init__(self, failures: int, retry_in: float) -> None:
        super().__init__(
            f"circuit breaker open after {failures} consecutive failures; "
            f"next probe in {retry_in:.1f} s"
        )
        self.failures = failures
        self.retry_in = retry_in


class ResumeGapError(MagkError):
    """The server no longer held the events after ``last_event_id``: some may be missed."""

    def __init__(self, last_event_id: Optional[str]) -> None:
        super().__init__(
            f"the server could not resume after event {last_event_id!r}; events may have been missed"
        )
        self.last_event_id = last_event_id


class CommandError(MagkError):
    """A workflow command failed, was refused, or got no answer in time.

    Attributes:
        request_id: the command's request id (its idempotency key).
        server_error: the server's ``error`` text when it answered ``success: false``.
        response: the server's answer (a :class:`~magk_client.models.CommandResponse`), if any.
    """

    def __init__(
        self,
        message: str,
        *,
        request_id: Optional[str] = None,
        server_error: Optional[str] = None,
        response: Optional[Any] = None,
    ) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.server_error = server_error
        self.response = response


class CommandTimeout(CommandError, TimeoutError):
    """No answer to a workflow command within its timeout (``command_timeout_ms`` or ``timeout=``)."""


class DeliveryError(MagkError):
    """A message the caller waited for (``send_message(..., wait=True)``, ``submit_message``) was
    not confirmed: dropped over the offline queue's bounds, or ``disconnect()`` came first.

    Attributes:
        message_id: the message's id.
        outcome: why (``"dropped"``, ``"refused"``, ``"cancelled"``, ``"timeout"``).
    """

    def __init__(self, message: str, *, message_id: Optional[str] = None, outcome: str = "") -> None:
        super().__init__(message)
        self.message_id = message_id
        self.outcome = outcome


class MessageRefusedError(DeliveryError):
    """The server refused a message for good (``subscription_error`` ``bad_message`` naming its id,
    ``POST /messages`` answered 400 or 413, or a WebSocket closed with 1009): sending it again
    would not help."""


class DeliveryTimeout(DeliveryError, TimeoutError):
    """A message was not acknowledged within ``timeout``; it is still held and may yet be delivered."""


class CallbackError(MagkError):
    """A user callback raised. Reported to error listeners and counted; delivery goes on."""


_AUTH_CLOSE = frozenset({1008, 4001, 4003, 4401, 4403})
_TERMINAL_PROTOCOL_CLOSE = frozenset({1002, 1003, 1007, 1010})
_SERVER_CLOSE = frozenset({1011, 1012, 1013, 1014})


def classify_close_code(code: Optional[int], reason: str = "") -> MagkConnectionError:
    """Turn a WebSocket close code received from the server into an error (pure)."""
    text = f"server closed the WebSocket with code {code}"
    if reason:
        text += f" ({reason[:120]})"
    if code is None or code == 1006:
        return NetworkError("connection lost without a close frame", close_code=code)
    if code in (1000, 1001):
        return TransportClosed(text, close_code=code)
    if code in _AUTH_CLOSE:
        return AuthError(text, close_code=code)
    if code == 1009:
        too_large = MessageTooLargeError(text, close_code=code)
        too_large.server_refused = True
        return too_large
    if code in _TERMINAL_PROTOCOL_CLOSE:
        return ProtocolError(text, close_code=code, terminal=True)
    if code in _SERVER_CLOSE:
        return ServerError(text, close_code=code)
    if code == 4029:
        return ServerError(text, close_code=code)
    return NetworkError(text, close_code=code)


def classify_http_status(
    status: int, what: str, retry_after: Optional[float] = None
) -> MagkConnectionError:
    """Turn a refused handshake or request (non-2xx/101 status) into an error (pure)."""
    text = f"{what} was refused with HTTP {status}"
    if status in (401, 403):
        return AuthError(text, status=status)
    if status in (429, 503) or 500 <= status < 600:
        return ServerError(text, status=status, retry_after=retry_after)
    if status in (408,):
        return MagkTimeoutError(text, status=status, retry_after=retry_after)
    return ProtocolError(text, status=status)


_CRED_RE = re.compile(r"(?i)([?&](?:token|access_token|api_key|apikey|key)=)[^&#]*")
_USERINFO_RE = re.compile(r"//[^/@]*@")


def redact_url(url: str) -> str:
    """Remove credentials (user:password@ and token-like query values) from a URL."""
    url = _USERINFO_RE.sub("//***@", url)
    return _CRED_RE.sub(r"\1***", url)
