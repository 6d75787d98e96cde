"""How an adapter's settings become the service's settings and its HTTP client (pure, but for
reading a CA file when a TLS context is built), and the response transformers.

- :func:`service_config`: the service's :class:`RealtimeConnectionConfig` from ``connection_config``
  plus what the adapter config owns: the URLs (``backend_base_url`` + ``websocket_path`` /
  ``event_source_path``, and ``/messages`` for sends while on SSE) and, when set, ``auth_token`` and
  ``api_key``. A ``connection_config`` URL other than those is refused (:class:`ConfigError`) rather
  than silently ignored; ``None`` for ``websocket_url`` or ``event_source_url`` turns that transport
  off.
- :func:`build_http_client`: the client of ``POST /commands`` and ``GET /health`` with the service's
  auth headers and TLS context, so plain requests and both transports authenticate alike.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union
from urllib.parse import urlsplit

from .config import RealtimeAdapterConfig, RealtimeConnectionConfig, logging_level
from .errors import ConfigError
from .http_client import HttpClient
from .models import CommandResponse
from .security import auth_headers, build_ssl_context, check_plaintext_credentials

__all__ = [
    "ResponseTransformers",
    "adapter_config",
    "build_http_client",
    "log_level_number",
    "service_config",
]

_URL_FIELDS = ("websocket_url", "event_source_url", "messages_url")


def adapter_config(
    config: Union[RealtimeAdapterConfig, Mapping[str, Any], None], overrides: Mapping[str, Any]
) -> RealtimeAdapterConfig:
    return RealtimeAdapterConfig.coerce(config, overrides)


def _messages_url(cfg: RealtimeAdapterConfig) -> str:
    return cfg.backend_base_url.rstrip("/") + "/messages"


def service_config(
    cfg: RealtimeAdapterConfig,
    connection_config: Union[RealtimeConnectionConfig, Mapping[str, Any], None],
) -> RealtimeConnectionConfig:
    """The service's config (see the module doc)."""
    owned: Dict[str, Optional[str]] = {
        "websocket_url": cfg.websocket_url,
        "event_source_url": cfg.event_source_url,
        "messages_url": _messages_url(cfg),
    }
    if connection_config is None:
        base = RealtimeConnectionConfig()
        given: Dict[str, Any] = {}
    elif isinstance(connection_config, RealtimeConnectionConfig):
        base = connection_config
        defaults = {f.name: f.default for f in dataclasses.fields(RealtimeConnectionConfig) if f.name in _URL_FIELDS}
        given = {name: getattr(base, name) for name in _URL_FIELDS if getattr(base, name) != defaults[name]}
    elif isinstance(connection_config, Mapping):
        base = RealtimeConnectionConfig.from_dict(connection_config)
        given = {name: getattr(base, name) for name in _URL_FIELDS if _named(connection_config, name)}
    else:
        raise ConfigError(
            f"connection_config must be a RealtimeConnectionConfig or a dict, got {type(connection_config).__name__}"
        )
    changes: Dict[str, Any] = dict(owned)
    for name, value in given.items():
        if value is None and name != "messages_url":
            changes[name] = None  # that transport is off
        elif value != owned[name]:
            raise ConfigError(
                f"connection_config.{name} ({value!r}) differs from the adapter's; set backend_base_url, "
                "websocket_path and event_source_path instead"
            )
    if cfg.auth_token is not None:
        changes["auth_token"] = cfg.auth_token
    if cfg.api_key is not None:
        changes["api_key"] = cfg.api_key
    return base.replace(**changes)


def _named(mapping: Mapping[str, Any], name: str) -> bool:
    camel = name.split("_", maxsplit=1)[0] + "".join(part.title() for part in name.split("_")[1:])
    return name in mapping or camel in mapping


def build_http_client(cfg: RealtimeAdapterConfig, service_cfg: RealtimeConnectionConfig) -> HttpClient:
    """The HTTP client of one adapter session (commands or health). Raises :class:`ConfigError` before
    any socket is opened when credentials would cross the network in clear text."""
    base = cfg.backend_base_url
    check_plaintext_credentials(base, service_cfg)
    secure = urlsplit(base).scheme == "https"
    return HttpClient(
        base,
        auth_headers(service_cfg),
        ssl_context=build_ssl_context(service_cfg) if secure else None,
        connect_timeout=service_cfg.connection_timeout_ms / 1000.0,
        max_body=service_cfg.max_message_size,
    )


def log_level_number(name: str) -> int:
    return logging_level(name)


Transformer = Callable[[CommandResponse], CommandResponse]


class ResponseTransformers:
    """Response transformers by command name (``"*"``: every command), applied in that order:
    the command's own, then the ones for every command. Copy-on-write: reads need no lock."""

    def __init__(self) -> None:
        self._map: Dict[str, Tuple[Transformer, ...]] = {}
        self._write = threading.Lock()

    def register(self, command: str, fn: Transformer) -> Callable[[], None]:
        if not isinstance(command, str) or not command:
            raise ConfigError("command must be a non-empty string (or '*')")
        if not callable(fn):
            raise ConfigError("a response transformer must be callable")
        with self._write:
            new = dict(self._map)
            new[command] = (*new.get(command, ()), fn)
            self._map = new

        def remove() -> None:
            with self._write:
                rest = dict(self._map)
                fns = tuple(f for f in rest.get(command, ()) if f is not fn)
                if fns:
                    rest[command] = fns
                else:
                    rest.pop(command, None)
                self._map = rest

        return remove

    def apply(self, response: CommandResponse) -> CommandResponse:
        current = self._map
        for fn in (*current.get(response.command, ()), *current.get("*", ())):
            response = fn(response)
            if not isinstance(response, CommandResponse):
                raise TypeError("a response transformer must return a CommandResponse")
        return response
