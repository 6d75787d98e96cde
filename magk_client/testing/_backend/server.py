"""The aiohttp application of the reference backend: its routes, its startup and its shutdown.

:meth:`Server.serve` is the main coroutine of the ``magk-backend-loop`` thread (see :mod:`.loop`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures

from aiohttp import web

from ..engine import Engine
from .acks import MessageDesk
from .commands import CommandDesk
from .context import Context, Options
from .faults import FaultSwitches
from .http_routes import HttpRoutes
from .hub import Hub
from .records import Records
from .sse_route import SseRoute
from .ws_route import WebSocketRoute

__all__ = ["Server"]


class Server:
    """Serves the backend's parts on ``options.host``/``options.port`` for one run of the loop thread."""

    def __init__(
        self,
        options: Options,
        records: Records,
        faults: FaultSwitches,
        hub: Hub,
        desk: CommandDesk,
        messages: MessageDesk,
        engine: Engine,
    ) -> None:
        self._options = options
        self._records = records
        self._faults = faults
        self._hub = hub
        self._desk = desk
        self._messages = messages
        self._engine = engine

    def app(self, ctx: Context) -> web.Application:
        app = web.Application(client_max_size=self._options.max_body_size)
        for endpoint in (WebSocketRoute(ctx), SseRoute(ctx), HttpRoutes(ctx)):
            app.add_routes(endpoint.routes())
        return app

    async def serve(self, started: concurrent.futures.Future[int], stopping: asyncio.Future[int]) -> None:
        """Bind, report the port through ``started``, serve until ``stopping`` resolves, shut down."""
        options = self._options
        ctx = Context(options, self._records, self._faults, self._hub, self._desk, self._messages, stopping)
        self._faults.loop_started()
        runner = web.AppRunner(
            self.app(ctx), handle_signals=False, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        try:
            await runner.setup()
            site = web.TCPSite(
                runner, options.host, options.port, ssl_context=options.ssl_context, reuse_address=True
            )
            await site.start()
            port = int(runner.addresses[0][1])
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that called start()
            await runner.cleanup()
            started.set_exception(exc)
            return
        self._engine.attach()
        loop = asyncio.get_running_loop()
        interval = options.heartbeat_interval
        heartbeat = loop.create_task(self._hub.heartbeat_loop(interval)) if interval else None
        started.set_result(port)
        close_code = await stopping
        if heartbeat is not None:
            heartbeat.cancel()
        self._engine.detach()
        await self._hub.shut_down(close_code, options.close_timeout + 0.5)
        await runner.cleanup()
        self._hub.conns.clear()
