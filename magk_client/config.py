"""Configuration: connection, adapter and error-recovery settings.

The configs are dataclasses (with dataclasses-json). Durations keep the seed's
milliseconds (``*_ms``). ``from_dict``/``from_json`` accept snake_case keys and
the TypeScript app's camelCase keys alike; an unknown key or a bad value raises
:class:`~magk_client.errors.ConfigError` (a ``ValueError``) naming the field.
Configs are validated on construction and are treated as immutable values:
``replace()`` returns a validated copy.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type, TypeVar, Union
from urllib.parse import urlsplit

from dataclasses_json import DataClassJsonMixin

from .errors import ConfigError, ErrorCategory
from .models import ConnectionType, StrEnum

__all__ = [
    "ErrorRecoveryConfig",
    "RealtimeAdapterConfig",
    "RealtimeConnectionConfig",
    "RecoveryStrategy",
    "ServiceIntegrationConfig",
]

_C = TypeVar("_C", bound="_ConfigBase")

_CAMEL_RE = re.compile(r"(?<!^)(?=[A-Z])")
_LOG_LEVELS = ("debug", "info", "warn", "warning", "error")
_LEVEL_NUMBERS = {
    "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
    "error": logging.ERROR,
}


def logging_level(name: str) -> int:
    """The :mod:`logging` level of a config's ``log_level`` (INFO for anything unknown)."""
    return _LEVEL_NUMBERS.get(name, logging.INFO)


def _snake(key: str) -> str:
    return _CAMEL_RE.sub("_", key).lower()


class RecoveryStrategy(StrEnum):
    """What to do about a connection error of a given category (README, "Errors").

    ``RECONNECT``: retry with backoff (with ``auto_reconnect``); without it the session
    ends in state ``error``. ``FALLBACK_CONNECTION``: the next attempt uses the other
    transport. ``QUEUE_OFFLINE``: until the next connect ``send_message`` queues;
    without it, it raises ``NotConnectedError``. ``NOTIFY_ONLY``: ``on_error``
    listeners get the error. ``ESCALATE``: logged at ERROR, and listeners get it.
    Terminal errors are never retried and always reach the listeners.
    """

    RECONNECT = "reconnect"
    FALLBACK_CONNECTION = "fallback_connection"
    QUEUE_OFFLINE = "queue_offline"
    NOTIFY_ONLY = "notify_only"
    ESCALATE = "escalate"


class _ConfigBase(DataClassJsonMixin):
    """Shared behaviour: camelCase-tolerant ``from_dict``, ``replace``, safe ``repr``."""

    _secret_fields: Tuple[str, ...] = ()

    @classmethod
    def from_dict(cls: Type[_C], kvs: Any, *, infer_missing: bool = True) -> _C:
        if isinstance(kvs, cls):
            return kvs
        if not isinstance(kvs, Mapping):
            raise ConfigError(f"{cls.__name__} needs a mapping, got {type(kvs).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        normalised: Dict[str, Any] = {}
        for key, value in kvs.items():
            if not isinstance(key, str):
                raise ConfigError(f"{cls.__name__}: config keys must be strings, got {key!r}")
            name = key if key in names else _snake(key)
            if name not in names:
                raise ConfigError(f"{cls.__name__}: unknown field {key!r}")
            normalised[name] = value
        try:
            return cls(**normalised)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{cls.__name__}: {exc}") from None

    @classmethod
    def from_json(  # type: ignore[override]
        cls: Type[_C], s: Union[str, bytes], *, infer_missing: bool = True, **kw: Any
    ) -> _C:
        try:
            data = json.loads(s, **kw)
        except ValueError as exc:
            raise ConfigError(f"{cls.__name__}: invalid JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def coerce(cls: Type[_C], config: Union[_C, Mapping[str, Any], None], overrides: Mapping[str, Any]) -> _C:
        """``config`` as an instance (None: the defaults; a dict: :meth:`from_dict`), with ``overrides``."""
        if config is None:
            cfg = cls()
        elif isinstance(config, cls):
            cfg = config
        elif isinstance(config, Mapping):
            cfg = cls.from_dict(dict(config))
        else:
            raise ConfigError(f"config must be a {cls.__name__} or a dict, got {type(config).__name__}")
        return cfg.replace(**overrides) if overrides else cfg

    def replace(self: _C, **changes: Any) -> _C:
        """Return a validated copy with ``changes`` applied (camelCase keys accepted)."""
        merged = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        for key, value in changes.items():
            name = key if key in merged else _snake(key)
            if name not in merged:
                raise ConfigError(f"{type(self).__name__}: unknown field {key!r}")
            merged[name] = value
        return type(self)(**merged)

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name in self._secret_fields and value:
                value = "***"
            parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


def _positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or math.isnan(value):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _check_url(name: str, value: Optional[str], schemes: Tuple[str, ...]) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string URL, got {type(value).__name__}")
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(f"{name} must be a {'/'.join(schemes)} URL with a host")


def _check_headers(name: str, value: Any) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"{name} must be a dict of str to str")
    for k, v in value.items():
        if any(c in k + v for c in "\r\n\0"):
            raise ConfigError(f"{name}: header {k!r} contains a line break or NUL")


@dataclass(repr=False)
class RealtimeConnectionConfig(_ConfigBase):
    """Settings of :class:`~magk_client.service.RealtimeService` (the seed's fields, snake_case).

    Durations are milliseconds. Python additions: ``api_key``, ``max_message_size``,
    ``max_json_depth``, TLS (``verify_tls``, ``ca_bundle``, ``client_cert``),
    ``min_stable_connection_ms``, ``preferred_retry_interval_ms``, the circuit
    breaker, dispatch and de-duplication bounds, ``max_retry_after_ms`` (the cap
    on a wait the server asks for), the send rate limit (``max_messages_per_second``,
    ``max_message_burst``; off by default), and the opt-ins
    ``token_in_query`` and ``allow_insecure_auth``.

    With only one of ``websocket_url`` and ``event_source_url`` set,
    ``preferred_type`` becomes that transport (whatever was passed): there is
    nothing else to prefer. A later ``replace()`` that adds the other URL keeps
    it; pass ``preferred_type`` as well to change it.

    ``log_level`` is the level of the service's own logger
    (``magk_client.service.<n>``); ``enable_debug_logging`` lowers it to DEBUG and
    adds a DEBUG line per message sent or received (type, id, size; never the
    data or credentials). The application's logging configuration still decides
    what is shown.
    """

    _secret_fields = ("auth_token", "api_key", "auth_headers")

    # Connection URLs
    websocket_url: Optional[str] = "ws://localhost:8000/ws/realtime"
    event_source_url: Optional[str] = "http://localhost:8000/events/realtime"
    #: where client messages go while on SSE (default: ``/messages`` on the SSE host)
    messages_url: Optional[str] = None
    # Connection preferences
    preferred_type: ConnectionType = ConnectionType.WEBSOCKET
    fallback_to_secondary: bool = True
    # Reconnection
    auto_reconnect: bool = True
    max_reconnect_attempts: int = 10
    reconnect_interval_ms: float = 1000
    max_reconnect_interval_ms: float = 30000
    reconnect_backoff_multiplier: float = 1.5
    # Heartbeat
    heartbeat_interval_ms: float = 30000
    heartbeat_timeout_ms: float = 10000
    enable_heartbeat: bool = True
    # Offline queue
    max_queue_size: int = 1000
    #: bound on the offline queue's total UTF-8 size (oldest dropped first; one bigger message is refused)
    max_queue_bytes: int = 64 * 1024 * 1024
    enable_offline_queue: bool = True
    queue_retention_ms: float = 300000
    # Security and authentication
    auth_token: Optional[str] = None
    auth_headers: Dict[str, str] = field(default_factory=dict)
    api_key: Optional[str] = None
    token_in_query: bool = False
    allow_insecure_auth: bool = False
    verify_tls: bool = True
    ca_bundle: Optional[str] = None
    client_cert: Optional[str] = None
    client_key: Optional[str] = None
    # Timeouts
    connection_timeout_ms: float = 10000
    message_timeout_ms: float = 5000
    # Debug
    enable_debug_logging: bool = False
    log_level: str = "info"
    # Python additions
    max_message_size: int = 16 * 1024 * 1024
    max_json_depth: int = 128
    min_stable_connection_ms: float = 5000
    preferred_retry_interval_ms: float = 60000
    circuit_breaker_threshold: int = 5
    circuit_breaker_reset_ms: float = 30000
    max_dispatch_queue: int = 100000
    dedup_window: int = 10000
    #: the longest wait a server may ask for (``Retry-After``, SSE ``retry:``); longer ones are capped
    max_retry_after_ms: float = 300000
    # Send rate limit (off by default): a token bucket for client messages
    #: at most this many client messages per second (``None``: no limit)
    max_messages_per_second: Optional[float] = None
    #: how many may go at once after a quiet spell (``None``: a tenth of a second's worth, at least 1;
    #: ignored without ``max_messages_per_second``)
    max_message_burst: Optional[int] = None

    def __post_init__(self) -> None:
        try:
            self.preferred_type = ConnectionType(self.preferred_type)
        except ValueError:
            raise ConfigError(
                f"preferred_type must be 'websocket' or 'eventsource', got {self.preferred_type!r}"
            ) from None
        _check_url("websocket_url", self.websocket_url, ("ws", "wss"))
        _check_url("event_source_url", self.event_source_url, ("http", "https"))
        _check_url("messages_url", self.messages_url, ("http", "https"))
        if self.websocket_url is None and self.event_source_url is None:
            raise ConfigError("websocket_url and event_source_url cannot both be None")
        # One URL, one transport: preferred_type names the transport that has a URL.
        if self.websocket_url is None:
            self.preferred_type = ConnectionType.EVENTSOURCE
        elif self.event_source_url is None:
            self.preferred_type = ConnectionType.WEBSOCKET
        for name in (
            "reconnect_interval_ms",
            "max_reconnect_interval_ms",
            "heartbeat_interval_ms",
            "heartbeat_timeout_ms",
            "queue_retention_ms",
            "connection_timeout_ms",
            "message_timeout_ms",
            "preferred_retry_interval_ms",
            "circuit_breaker_reset_ms",
            "max_retry_after_ms",
        ):
            _positive(name, getattr(self, name))
        _positive("min_stable_connection_ms", self.min_stable_connection_ms, allow_zero=True)
        for name in (
            "max_reconnect_attempts",
            "max_queue_size",
            "max_queue_bytes",
            "max_message_size",
            "max_json_depth",
            "circuit_breaker_threshold",
            "max_dispatch_queue",
            "dedup_window",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            _positive(name, value, allow_zero=name == "max_reconnect_attempts")
        _positive("reconnect_backoff_multiplier", self.reconnect_backoff_multiplier)
        if self.reconnect_backoff_multiplier < 1:
            raise ConfigError(
                f"reconnect_backoff_multiplier must be >= 1, got {self.reconnect_backoff_multiplier!r}"
            )
        if self.max_reconnect_interval_ms < self.reconnect_interval_ms:
            raise ConfigError("max_reconnect_interval_ms must be >= reconnect_interval_ms")
        if self.enable_heartbeat and self.heartbeat_timeout_ms > self.heartbeat_interval_ms:
            raise ConfigError(
                "heartbeat_timeout_ms must not be longer than heartbeat_interval_ms "
                "(a ping's answer would still be awaited when the next ping is due)"
            )
        _check_headers("auth_headers", self.auth_headers)
        for name in ("auth_token", "api_key", "ca_bundle", "client_cert", "client_key"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a string or None")
        for name in ("auth_token", "api_key"):
            value = getattr(self, name)
            if value is not None and any(c in value for c in "\r\n\0"):
                raise ConfigError(f"{name} contains a line break or NUL")
        if self.log_level not in _LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {_LOG_LEVELS}, got {self.log_level!r}")
        rate = self.max_messages_per_second
        if rate is not None:
            _positive("max_messages_per_second", rate)
            if not math.isfinite(rate):
                raise ConfigError(f"max_messages_per_second must be finite (None: no limit), got {rate!r}")
        burst = self.max_message_burst
        if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
            raise ConfigError(f"max_message_burst must be an integer >= 1 or None, got {burst!r}")

    @property
    def has_credentials(self) -> bool:
        return bool(self.auth_token or self.api_key or self.auth_headers)


@dataclass(repr=False)
class RealtimeAdapterConfig(_ConfigBase):
    """Settings of the adapter layer (the seed's fields, snake_case; durations in ms)."""

    _secret_fields = ("api_key", "auth_token")

    backend_base_url: str = "http://localhost:8000"
    websocket_path: str = "/ws/realtime"
    event_source_path: str = "/events/realtime"
    api_key: Optional[str] = None
    auth_token: Optional[str] = None
    enable_message_transformation: bool = True
    enable_command_pipeline: bool = True
    enable_health_check: bool = True
    command_timeout_ms: float = 30000
    max_retries: int = 3
    retry_delay_ms: float = 1000
    health_check_interval_ms: float = 60000
    log_messages: bool = False
    log_level: str = "info"

    def __post_init__(self) -> None:
        _check_url("backend_base_url", self.backend_base_url, ("http", "https"))
        for name in ("websocket_path", "event_source_path"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.startswith("/"):
                raise ConfigError(f"{name} must be a path starting with '/', got {value!r}")
        for name in ("command_timeout_ms", "retry_delay_ms", "health_check_interval_ms"):
            _positive(name, getattr(self, name))
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise ConfigError(f"max_retries must be an integer, got {self.max_retries!r}")
        _positive("max_retries", self.max_retries, allow_zero=True)
        if self.log_level not in _LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {_LOG_LEVELS}, got {self.log_level!r}")

    @property
    def websocket_url(self) -> str:
        base = self.backend_base_url.rstrip("/")
        scheme, rest = base.split("://", 1)
        return ("wss" if scheme == "https" else "ws") + "://" + rest + self.websocket_path

    @property
    def event_source_url(self) -> str:
        return self.backend_base_url.rstrip("/") + self.event_source_path


def _strategies(*items: RecoveryStrategy) -> Any:
    return field(default_factory=lambda: list(items))


@dataclass(repr=True)
class ErrorRecoveryConfig(_ConfigBase):
    """Recovery strategies per error category (the seed's defaults; protocol is our addition)."""

    network_errors: List[RecoveryStrategy] = _strategies(
        RecoveryStrategy.RECONNECT, RecoveryStrategy.QUEUE_OFFLINE
    )
    timeout_errors: List[RecoveryStrategy] = _strategies(RecoveryStrategy.RECONNECT)
    auth_errors: List[RecoveryStrategy] = _strategies(RecoveryStrategy.NOTIFY_ONLY)
    server_errors: List[RecoveryStrategy] = _strategies(
        RecoveryStrategy.RECONNECT, RecoveryStrategy.FALLBACK_CONNECTION
    )
    protocol_errors: List[RecoveryStrategy] = _strategies(
        RecoveryStrategy.RECONNECT, RecoveryStrategy.NOTIFY_ONLY
    )
    unknown_errors: List[RecoveryStrategy] = _strategies(
        RecoveryStrategy.RECONNECT, RecoveryStrategy.NOTIFY_ONLY
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (str, RecoveryStrategy)) or not isinstance(value, (list, tuple)):
                raise ConfigError(f"{f.name} must be a list of recovery strategies")
            try:
                setattr(self, f.name, [RecoveryStrategy(v) for v in value])
            except ValueError:
                raise ConfigError(
                    f"{f.name}: unknown strategy in {value!r}; "
                    f"choose from {[s.value for s in RecoveryStrategy]}"
                ) from None

    def strategies_for(self, category: ErrorCategory) -> List[RecoveryStrategy]:
        """The strategies for an error category (pure)."""
        return list(getattr(self, f"{ErrorCategory(category).value}_errors"))


@dataclass(repr=True)
class ServiceIntegrationConfig(_ConfigBase):
    """Settings of :class:`~magk_client.integration.RealtimeIntegration` (the seed's
    ``ServiceIntegrationConfig``, snake_case; camelCase keys accepted by ``from_dict``).

    ====================  ===========================================================================
    field                 what it does in this SDK
    ====================  ===========================================================================
    backend_base_url      the backend the integration's adapter talks to (WebSocket, SSE, commands,
                          health URLs derive from it); None: ``http://localhost:8000``, or the given
                          adapter's own
    enable_auto_reconnect the service's ``auto_reconnect``: off, a lost connection ends the session
                          in state ``error`` (no retry; call ``connect()`` again)
    prefer_websocket      the service's ``preferred_type``: ``websocket`` (on) or ``eventsource``
                          (off); fallback to the other transport stays as the connection config says
    enable_offline_sync   the service's ``enable_offline_queue``: on, messages sent while offline
                          (store changes sent by ``sync_bidirectional`` included) are queued and sent
                          after the next connect; off, they raise ``NotConnectedError`` (a store
                          change is then not sent, and counted in ``sync_failed``)
    enable_store_sync     on, every node event of a subscribed workflow or node is applied to the
                          store, once; off, the store is not fed (its connection state still is)
    sync_bidirectional    on, changes made with the store's action methods (``update_node_status``
                          ...) are sent to the backend as node messages; events that came from the
                          backend are never sent back
    enable_debug_logging  the service's ``enable_debug_logging`` (its logger at DEBUG, one line per
                          message sent or received) and the integration's DEBUG lines
    ====================  ===========================================================================
    """

    backend_base_url: Optional[str] = None
    enable_auto_reconnect: bool = True
    prefer_websocket: bool = True
    enable_offline_sync: bool = True
    enable_store_sync: bool = True
    sync_bidirectional: bool = False
    enable_debug_logging: bool = False

    def __post_init__(self) -> None:
        _check_url("backend_base_url", self.backend_base_url, ("http", "https"))
        for f in dataclasses.fields(self):
            if f.name != "backend_base_url" and not isinstance(getattr(self, f.name), bool):
                raise ConfigError(f"{f.name} must be a bool, got {getattr(self, f.name)!r}")
