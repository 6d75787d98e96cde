"""``GET /ws/realtime``: WebSocket sessions of the reference backend and their message handlers.

Runs on the loop thread. A session reads frames and hands each text message, by its ``type``, to a
handler of :attr:`WebSocketRoute.handlers`; to handle a new message type, add a method and a row there.
A message no row names goes to the ``MessageDesk`` (processed once per id, acknowledged while acks are on).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable, Dict, List, Optional

from aiohttp import WSMsgType, web

from .acks import message_id
from .auth import handshake_refusal
from .commands import BadPayload, command_of, is_command_envelope
from .connection import Connection
from .context import Context
from .wire import command_response, pong_for, subscription_error

__all__ = ["WS_PATH", "WebSocketRoute"]

logger = logging.getLogger("magk_client.testing.backend")

WS_PATH = "/ws/realtime"

#: A handler of one client message type: (connection, message, its raw text).
MessageHandler = Callable[[Connection, Dict[str, Any], str], None]


class WebSocketRoute:
    """The WebSocket endpoint: handshake (auth, faults, ack and replay), then one session per socket."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        #: message type -> handler; any other type goes to :meth:`_on_message`
        self.handlers: Dict[str, MessageHandler] = {
            "ping": self._on_ping,
            "workflow_event": self._on_workflow_event,
        }

    def routes(self) -> List[web.RouteDef]:
        return [web.get(WS_PATH, self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ctx = self._ctx
        ctx.records.count("ws_attempts")
        refused = handshake_refusal(ctx, request, "websocket", ctx.faults.refuse_ws, "WebSocket upgrade")
        if refused is not None:
            return refused
        ws = web.WebSocketResponse(
            max_msg_size=ctx.options.max_body_size,
            autoping=True,
            compress=False,
            timeout=ctx.options.close_timeout,
            writer_limit=256 * 1024,
        )
        if not ws.can_prepare(request).ok:
            return web.json_response({"error": "expected a WebSocket upgrade"}, status=400)
        await ws.prepare(request)
        conn = ctx.hub.new_connection("websocket", request)
        conn.ws = ws
        ctx.records.handshake("websocket", request, "accepted", conn.id)
        close_code = ctx.faults.accept_then_close
        if close_code is not None:
            ctx.records.count("ws_connects")
            await ws.close(code=close_code, message=b"accept_then_close")
            return ws
        ctx.hub.attach(conn, request)
        conn.writer_task = asyncio.get_running_loop().create_task(ctx.hub.write_loop(conn))
        try:
            await self._session(conn, ws)
        finally:
            if conn.writer_task is not None and conn.close_request is None:
                conn.writer_task.cancel()
            ctx.hub.detach(conn)
        return ws

    async def _session(self, conn: Connection, ws: web.WebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                self.on_text(conn, msg.data)
            elif msg.type == WSMsgType.BINARY:
                self._reject(conn, "binary frames are not accepted")
            elif msg.type == WSMsgType.ERROR:
                logger.debug("connection %s: %s", conn.id, ws.exception())
                break

    def on_text(self, conn: Connection, text: str) -> None:
        """One text message: decode, check, hand to the handler of its type."""
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError):
            self._reject(conn, "message is not valid JSON", None, text)
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            self._reject(conn, "message must be a JSON object with a string 'type'", msg, text)
            return
        self.handlers.get(msg["type"], self._on_message)(conn, msg, text)

    def _reject(self, conn: Connection, problem: str, msg: Any = None, text: Optional[str] = None) -> None:
        """A bad message: counted, recorded when it was text, answered with ``subscription_error`` (which
        names the message's id, if it had one: the refusal is final, it is never acknowledged)."""
        self._ctx.records.count("bad_messages")
        if text is not None:
            self._ctx.records.received("websocket", conn.id, msg, text)
        error: Dict[str, Any] = {"code": "bad_message", "message": problem}
        mid = message_id(msg)
        if mid is not None:
            error["id"] = mid
        self._ctx.hub.send_control(conn, subscription_error(error))

    # -- handlers ------------------------------------------------------------------------------------

    def _on_message(self, conn: Connection, msg: Dict[str, Any], text: str) -> None:
        """A plain message: processed once per id, its id acknowledged (see :class:`MessageDesk`)."""
        receipt = self._ctx.messages.take("websocket", conn.id, msg, text)
        if receipt.ack_id is not None:
            self._ctx.hub.queue_ack(conn, receipt.ack_id)

    def _on_ping(self, conn: Connection, msg: Dict[str, Any], text: str) -> None:
        self._ctx.records.count("pings")
        self._ctx.hub.send_control(conn, pong_for(msg))

    def _on_workflow_event(self, conn: Connection, msg: Dict[str, Any], text: str) -> None:
        """A command envelope: run (once per request id); its answer is its acknowledgement."""
        if not is_command_envelope(msg):
            self._on_message(conn, msg, text)
            return
        ctx = self._ctx
        ctx.records.received("websocket", conn.id, msg, text)
        try:
            cmd = command_of(msg)
        except BadPayload as exc:
            ctx.records.count("bad_messages")
            envelope_id = msg.get("id")
            response = {
                "requestId": envelope_id if isinstance(envelope_id, str) else None,
                "command": None,
                "success": False,
                "error": f"malformed command: {exc}",
            }
            wid = msg.get("workflowId")
            self._answer(conn, command_response(response, wid if isinstance(wid, str) else None))
            return
        self._answer(conn, command_response(ctx.desk.run(cmd, "ws", conn.id), cmd.workflow_id))

    def _answer(self, conn: Connection, answer: Dict[str, Any]) -> None:
        """Send a command answer, unless ``Backend.faults`` withholds it (and then drops the connection)
        or delays it."""
        ctx = self._ctx
        then_drop = ctx.faults.take_answer_drop()
        if then_drop is None:
            ctx.hub.send_answer(conn, answer, ctx.faults.answer_delay)
            return
        ctx.records.count("answers_dropped")
        if then_drop:
            ctx.hub.drop(conn)
