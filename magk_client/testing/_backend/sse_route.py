"""``GET /events/realtime``: Server-Sent Events sessions of the reference backend, and scripted answers.

Runs on the loop thread. A session is write-only: the request handler itself drains the connection.
"""

from __future__ import annotations

import asyncio
import logging
from typing import List

from aiohttp import web

from .auth import handshake_refusal
from .context import Context
from .faults import ScriptedResponse

__all__ = ["SSE_PATH", "SseRoute"]

logger = logging.getLogger("magk_client.testing.backend")

SSE_PATH = "/events/realtime"


class _CloseDelimitedResponse(web.StreamResponse):
    """A response with neither Content-Length nor chunked encoding: the body ends when the socket closes."""

    _length_check = False


class SseRoute:
    """The SSE endpoint: a queued script, else auth, faults, then one event stream per request."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def routes(self) -> List[web.RouteDef]:
        return [web.get(SSE_PATH, self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ctx = self._ctx
        ctx.records.count("sse_attempts")
        if ctx.faults.sse_scripts:
            script = ctx.faults.sse_scripts.popleft()
            ctx.records.handshake("sse", request, f"scripted {script.status}", None)
            return await self._serve_script(request, script)
        refused = handshake_refusal(ctx, request, "sse", ctx.faults.refuse_sse, "event stream")
        if refused is not None:
            return refused
        conn = ctx.hub.new_connection("sse", request)
        resp = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                "X-Connection-Id": conn.id,
            },
        )
        await resp.prepare(request)
        conn.sse = resp
        ctx.records.handshake("sse", request, "accepted", conn.id)
        retry_ms = ctx.options.sse_retry_ms
        if retry_ms is not None and not ctx.faults.silent:
            conn.push(f"retry: {int(retry_ms)}\n\n".encode("ascii"))
        ctx.hub.attach(conn, request)
        try:
            await ctx.hub.write_loop(conn)
        finally:
            ctx.hub.detach(conn)
        return resp

    async def _serve_script(self, request: web.Request, script: ScriptedResponse) -> web.StreamResponse:
        resp: web.StreamResponse
        if script.chunked:
            resp = web.StreamResponse(status=script.status)
        else:
            resp = _CloseDelimitedResponse(status=script.status)
            resp.force_close()
        for name, value in script.headers.items():
            resp.headers[name] = value
        if script.content_type is not None:
            resp.headers["Content-Type"] = script.content_type
        await resp.prepare(request)
        try:
            for i, chunk in enumerate(script.chunks):
                if i and script.chunk_delay > 0:
                    await asyncio.sleep(script.chunk_delay)
                if chunk:
                    await resp.write(chunk)
            if script.abort:
                transport = request.transport
                if transport is not None:
                    transport.abort()
                return resp
            if script.hold_open:
                await asyncio.shield(self._ctx.stopping)
            await resp.write_eof()
        except (ConnectionError, RuntimeError) as exc:
            logger.debug("scripted SSE response: %r", exc)
        return resp
