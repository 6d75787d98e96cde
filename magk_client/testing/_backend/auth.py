"""Who may in: bearer token and API key on every endpoint, and injected handshake refusals (loop thread)."""

from __future__ import annotations

from typing import Optional

from aiohttp import web

from .context import Context
from .faults import Refusal, refusal_response

__all__ = ["auth_error", "handshake_refusal"]


def handshake_refusal(
    ctx: Context, request: web.Request, transport: str, refusal: Optional[Refusal], what: str
) -> Optional[web.Response]:
    """The answer that turns a WebSocket / SSE handshake away (auth first, then ``refusal``), logged in
    the connections log; None lets it in."""
    denied = auth_error(ctx, request)
    if denied is not None:
        ctx.records.handshake(transport, request, f"http {denied.status}", None)
        return denied
    if refusal is not None:
        ctx.records.count("refused")
        ctx.records.handshake(transport, request, f"http {refusal[0]}", None)
        return refusal_response(refusal, what)
    return None


def auth_error(ctx: Context, request: web.Request) -> Optional[web.Response]:
    """The 401/403 answer when ``request`` lacks the token or API key the backend requires, else None."""
    token, api_key = ctx.options.token, ctx.options.api_key
    if token is not None:
        header = request.headers.get("Authorization")
        supplied: Optional[str] = None
        if header is not None:
            scheme, _, value = header.partition(" ")
            supplied = value.strip() if scheme.lower() == "bearer" else ""
        elif "token" in request.query:
            supplied = request.query["token"]
        if supplied is None:
            return _deny(ctx, 401, "missing bearer token", 'Bearer realm="magk"')
        if supplied != token:
            return _deny(ctx, 403, "invalid bearer token", None)
    if api_key is not None:
        key = request.headers.get("X-API-Key")
        if key is None:
            return _deny(ctx, 401, "missing X-API-Key", None)
        if key != api_key:
            return _deny(ctx, 403, "invalid X-API-Key", None)
    return None


def _deny(ctx: Context, status: int, message: str, challenge: Optional[str]) -> web.Response:
    ctx.records.count("auth_failures")
    headers = {"WWW-Authenticate": challenge} if challenge else None
    return web.json_response({"error": message}, status=status, headers=headers)
