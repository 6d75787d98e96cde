"""Security decisions made once per connection attempt (pure, no I/O but reading a CA file).

- :func:`build_ssl_context`: one ``ssl.SSLContext`` for every TLS connection the SDK
  makes (WebSocket and SSE alike), verification on by default; a configured CA
  bundle wins over ``REQUESTS_CA_BUNDLE`` and friends because the transports are
  handed this context instead of reading the environment.
- :func:`auth_headers`: ``Authorization``, ``X-API-Key`` and extra headers.
- :func:`check_plaintext_credentials`: refuses to send credentials in clear text
  to a host that is not loopback, unless the user opted in.
"""

from __future__ import annotations

import ipaddress
import ssl
from typing import Dict, Optional
from urllib.parse import quote, urlsplit

from .config import RealtimeConnectionConfig
from .errors import ConfigError, redact_url

__all__ = [
    "auth_headers",
    "build_ssl_context",
    "check_plaintext_credentials",
    "is_loopback_host",
    "url_with_token",
]


def build_ssl_context(cfg: RealtimeConnectionConfig) -> ssl.SSLContext:
    """The TLS context of a service: system CAs, or ``ca_bundle``; client cert if set."""
    try:
        ctx = ssl.create_default_context(cafile=cfg.ca_bundle)
        if cfg.client_cert:
            ctx.load_cert_chain(cfg.client_cert, cfg.client_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS files (ca_bundle/client_cert): {exc}") from None
    if not cfg.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def auth_headers(cfg: RealtimeConnectionConfig) -> Dict[str, str]:
    """Headers sent on every handshake and request."""
    headers = dict(cfg.auth_headers)
    if cfg.auth_token:
        headers["Authorization"] = f"Bearer {cfg.auth_token}"
    if cfg.api_key:
        headers["X-API-Key"] = cfg.api_key
    return headers


def is_loopback_host(host: Optional[str]) -> bool:
    if not host:
        return False
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_plaintext_credentials(url: str, cfg: RealtimeConnectionConfig) -> None:
    """Raise :class:`ConfigError` before any socket is opened if credentials would
    travel in clear text (ws:// or http://) to a host that is not loopback."""
    if not cfg.has_credentials or cfg.allow_insecure_auth:
        return
    parts = urlsplit(url)
    if parts.scheme in ("ws", "http") and not is_loopback_host(parts.hostname):
        raise ConfigError(
            f"refusing to send credentials over unencrypted {parts.scheme}:// to "
            f"{redact_url(url)}; use wss:// or https://, or set allow_insecure_auth=True"
        )


def url_with_token(url: str, cfg: RealtimeConnectionConfig) -> str:
    """Append ``token=`` to the query string, only if the user turned ``token_in_query`` on."""
    if not (cfg.token_in_query and cfg.auth_token):
        return url
    sep = "&" if urlsplit(url).query else "?"
    return f"{url}{sep}token={quote(cfg.auth_token, safe='')}"
