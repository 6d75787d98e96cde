"""The plain HTTP endpoints of the reference backend: ``POST /commands``, ``POST /messages``, ``GET /health``.

Handlers run on the loop thread. To add an endpoint: a handler method on :class:`HttpRoutes` and a row in
:meth:`HttpRoutes.routes`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, List, Optional

from aiohttp import web

from .auth import auth_error
from .commands import BadPayload, Command, command_of, is_command_envelope, parse_command
from .connection import reset_transport
from .context import Context
from .faults import CommandFault, refusal_response
from .wire import command_response, dumps, pong_for

__all__ = ["COMMANDS_PATH", "HEALTH_PATH", "MESSAGES_PATH", "HttpRoutes"]

COMMANDS_PATH = "/commands"
MESSAGES_PATH = "/messages"
HEALTH_PATH = "/health"


class HttpRoutes:
    """The plain HTTP handlers; each one counts itself in ``http_requests``."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def routes(self) -> List[web.RouteDef]:
        return [
            web.post(COMMANDS_PATH, self.commands),
            web.post(MESSAGES_PATH, self.messages),
            web.get(HEALTH_PATH, self.health),
        ]

    async def health(self, request: web.Request) -> web.Response:
        ctx = self._ctx
        ctx.records.count("http_requests")
        if not ctx.options.open_health:
            denied = auth_error(ctx, request)
            if denied is not None:
                return denied
        began = time.perf_counter()
        health = ctx.faults.health
        http_status = health["http_status"]
        if health["minimal"]:
            body = {"status": health["status"], "service": "magk-reference-backend"}
            return web.json_response(body, status=http_status)
        services = {"database": True, "messaging": True, "workflows": True}
        services.update(health["services"])
        body = {
            "status": health["status"],
            "service": "magk-reference-backend",
            "services": services,
            "metrics": {
                "activeConnections": len(ctx.hub.conns),
                "queueLength": ctx.hub.queue_length(),
                "responseTime": round((time.perf_counter() - began) * 1000, 3),
            },
        }
        return web.json_response(body, status=http_status)

    async def commands(self, request: web.Request) -> web.Response:
        """One command: run (once per request id) and answered 200 with its response, unless a
        ``POST /commands`` fault is queued (``Backend.faults``): then answered by the fault instead."""
        denied = await self._gate(request)
        if denied is not None:
            return denied
        try:
            cmd = parse_command(await self._read_json(request))
        except (BadPayload, web.HTTPRequestEntityTooLarge) as exc:
            return self._error_response(exc)
        fault = self._ctx.faults.take_command_fault()
        if fault is not None:
            return self._fault(request, cmd, fault)
        response = self._ctx.desk.run(cmd, "commands")
        await self._answer_delay()
        return web.json_response(response)

    async def messages(self, request: web.Request) -> web.Response:
        """One client message. A command envelope is run and answered 200 with its response; a ping is
        answered 200 with its pong; anything else goes to the ``MessageDesk`` and is answered 202 (the
        acknowledgement, naming the id while acks are on)."""
        ctx = self._ctx
        denied = await self._gate(request)
        if denied is not None:
            return denied
        conn_id = request.headers.get("X-Connection-Id")
        try:
            body = await self._read_json(request)
            if not isinstance(body, dict):
                raise BadPayload("a message must be a JSON object")
            if not isinstance(body.get("type"), str):
                raise BadPayload("a message needs a string 'type'")
            if not is_command_envelope(body):
                receipt = ctx.messages.take("http", conn_id, body, dumps(body))
                if body["type"] == "ping":
                    return web.json_response({"accepted": True, "response": pong_for(body)}, status=200)
                if receipt.ack_id is not None:
                    ctx.records.acked(1, message=False)
                return web.json_response(receipt.http_body(), status=202)
            ctx.records.received("http", conn_id, body, dumps(body))
            cmd = command_of(body)
        except (BadPayload, web.HTTPRequestEntityTooLarge) as exc:
            return self._error_response(exc)
        response = ctx.desk.run(cmd, "messages", conn_id)
        conn = ctx.hub.conns.get(conn_id or "")
        if conn is not None:
            ctx.hub.send_answer(conn, command_response(response, cmd.workflow_id), ctx.faults.answer_delay)
        await self._answer_delay()
        return web.json_response({"accepted": True, "response": response}, status=200)

    # -- plumbing ------------------------------------------------------------------------------------

    async def _gate(self, request: web.Request) -> Optional[web.Response]:
        """Count, apply silence and delay, check auth: the common start of every plain HTTP endpoint."""
        ctx = self._ctx
        ctx.records.count("http_requests")
        await ctx.faults.until_audible()
        if ctx.faults.delay > 0:
            await asyncio.sleep(ctx.faults.delay)
        return auth_error(ctx, request)

    def _fault(self, request: web.Request, cmd: Command, fault: CommandFault) -> web.Response:
        """Answer a command with a queued fault instead of running it (recorded in the command log)."""
        self._ctx.desk.refuse(cmd, "commands", fault.name)
        if fault.status is None:
            reset_transport(request.transport)
            return web.Response(status=500)  # never written: the connection is gone
        return refusal_response((fault.status, fault.retry_after), f"POST {COMMANDS_PATH}", fault.error)

    async def _answer_delay(self) -> None:
        delay = self._ctx.faults.answer_delay
        if delay > 0:
            await asyncio.sleep(delay)

    async def _read_json(self, request: web.Request) -> Any:
        limit = self._ctx.options.max_body_size
        length = request.content_length
        if length is not None and length > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
        body = await request.read()
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise BadPayload(f"body is not valid JSON: {exc.__class__.__name__}") from None

    def _error_response(self, exc: BaseException) -> web.Response:
        if isinstance(exc, web.HTTPRequestEntityTooLarge):
            self._ctx.records.count("too_large")
            return web.json_response(
                {"error": f"body larger than {self._ctx.options.max_body_size} bytes"}, status=413
            )
        self._ctx.records.count("bad_messages")
        return web.json_response({"error": str(exc)}, status=400)
