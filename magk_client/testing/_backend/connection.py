"""One live WebSocket or SSE connection of the reference backend, and the writer that drains it.

Everything here runs on the loop thread. Items (wire bytes) are queued by :meth:`Connection.push` and
written in order, in batches, by one writer coroutine (:meth:`Connection.write_loop`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from aiohttp import web

from .faults import FaultSwitches

__all__ = ["Connection", "reset_transport"]

logger = logging.getLogger("magk_client.testing.backend")

#: Above this many bytes waiting in a connection's socket buffer its writer waits for the peer.
_HIGH_WATER = 1024 * 1024


def reset_transport(transport: Optional[asyncio.BaseTransport]) -> None:
    """Abort ``transport`` with a TCP reset (RST, not FIN): the peer sees an abrupt loss."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()  # type: ignore[attr-defined]


class Connection:
    """One live WebSocket or SSE connection; items are written in order by one writer."""

    def __init__(self, conn_id: str, transport: str, request: web.Request) -> None:
        self.id = conn_id
        self.transport = transport
        self.request = request
        self.ws: Optional[web.WebSocketResponse] = None
        self.sse: Optional[web.StreamResponse] = None
        self.items: Deque[Tuple[float, bytes]] = deque()  # (queued at, wire bytes)
        self.wakeup = asyncio.Event()
        self.close_request: Optional[Tuple[int, str]] = None
        self.done = asyncio.Event()
        self.sent = 0
        self.drop_after: Optional[int] = None
        self.writer_task: Optional[asyncio.Task[None]] = None
        self.pending_acks: List[str] = []  # ids to acknowledge in the next ``ack`` (see Hub.queue_ack)
        self.delayed_answers: Deque[Tuple[float, Dict[str, Any]]] = deque()  # (due, answer): Hub.send_answer

    @property
    def websocket(self) -> bool:
        return self.transport == "websocket"

    def push(self, item: bytes) -> None:
        if self.close_request is None:
            self.items.append((time.monotonic(), item))
            self.wakeup.set()

    def request_close(self, code: int, reason: str) -> None:
        if self.close_request is None:
            self.close_request = (code, reason)
            self.items.clear()
            self.wakeup.set()

    def abort(self) -> None:
        reset_transport(self.request.transport)

    async def write_loop(self, faults: FaultSwitches, dropped: Callable[[], None]) -> None:
        """Write the queued items in order, in batches; apply delay, silence and drop_after.

        ``dropped()`` is called when drop_after aborts the connection.
        """
        try:
            while self.close_request is None:
                if not self.items:
                    self.wakeup.clear()
                    await self.wakeup.wait()
                    continue
                delay = faults.delay
                if delay > 0:
                    wait = self.items[0][0] + delay - time.monotonic()
                    if wait > 0:
                        self.wakeup.clear()
                        try:
                            await asyncio.wait_for(self.wakeup.wait(), wait)
                        except asyncio.TimeoutError:
                            pass
                        continue
                    batch = [self.items.popleft()[1]]
                else:
                    batch = [item for _, item in self.items]
                    self.items.clear()
                if faults.silent:
                    continue
                if self.drop_after is not None and self.sent + len(batch) >= self.drop_after:
                    batch = batch[: max(0, self.drop_after - self.sent)]
                    await self._write_batch(batch)
                    self.sent += len(batch)
                    dropped()
                    self.abort()
                    return
                await self._write_batch(batch)
                self.sent += len(batch)
            code, reason = self.close_request
            if self.ws is not None:
                await self.ws.close(code=code, message=reason.encode("utf-8"))
            elif self.sse is not None:
                await self.sse.write_eof()
        except (ConnectionError, RuntimeError, asyncio.TimeoutError) as exc:
            logger.debug("connection %s: write failed: %r", self.id, exc)
            self.abort()

    async def _write_batch(self, batch: List[bytes]) -> None:
        if not batch:
            return
        data = batch[0] if len(batch) == 1 else b"".join(batch)
        if self.sse is not None:
            await self.sse.write(data)
            return
        ws = self.ws
        transport = self.request.transport
        if ws is None or ws.closed or transport is None or transport.is_closing():
            raise ConnectionResetError("connection closed")
        transport.write(data)
        # flow control without awaiting a drain per message: wait only when the peer falls behind
        while transport.get_write_buffer_size() > _HIGH_WATER:
            if transport.is_closing():
                raise ConnectionResetError("connection closed")
            await asyncio.sleep(0.005)
