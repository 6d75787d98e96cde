"""The one background thread of the reference backend, its event loop, and calls into it.

:class:`LoopThread` starts the ``magk-backend-loop`` thread, which runs a ``serve`` coroutine until
:meth:`LoopThread.stop`; any other thread runs code on the loop with :meth:`LoopThread.call` (a plain
function) or :meth:`LoopThread.submit` (a coroutine). The caller serialises start and stop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Awaitable, Callable, Optional, TypeVar

__all__ = ["LoopThread", "Serve"]

logger = logging.getLogger("magk_client.testing.backend")

T = TypeVar("T")

#: The server's main coroutine: reports the bound port through ``started``, returns once ``stopping``
#: (resolved to the close code) is done and it has shut down.
Serve = Callable[["concurrent.futures.Future[int]", "asyncio.Future[int]"], Awaitable[None]]


class LoopThread:
    """An event loop in a named daemon thread, started and stopped from other threads."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stopping: Optional[asyncio.Future[int]] = None

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self, serve: Serve, timeout: float) -> int:
        """Start the thread and ``serve``; returns the port ``serve`` reports (raises what it raises)."""
        if self.running:
            raise RuntimeError("backend is already running")
        started: concurrent.futures.Future[int] = concurrent.futures.Future()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self._main, args=(loop, serve, started), name=self.name, daemon=True)
        self._loop = loop
        self._thread = thread
        thread.start()
        try:
            return started.result(timeout)
        except BaseException:
            self._loop = None
            thread.join(timeout)
            self._thread = None
            raise

    def stop(self, close_code: int, timeout: float) -> bool:
        """Resolve ``stopping`` with ``close_code`` and join the thread; False when it was not started."""
        loop, thread, stopping = self._loop, self._thread, self._stopping
        if thread is None or loop is None:
            return False
        if stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(_set_result_once, stopping, close_code)
            except RuntimeError:  # loop already closed
                pass
        thread.join(timeout)
        if thread.is_alive():
            logger.error("backend thread did not stop within %.1f s", timeout)
        self._thread = None
        self._loop = None
        self._stopping = None
        return True

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run ``fn`` on the loop thread (directly when the loop is not running) and return its result."""
        loop = self._loop
        if loop is None or self._stopping is None or not self.running:
            return fn()
        if threading.current_thread() is self._thread:
            return fn()
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                    fut.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return fut.result(timeout)

    def submit(self, coro_fn: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
        """Run ``coro_fn()`` on the running loop and wait for its result (not from the loop thread)."""
        loop = self._loop
        if loop is None or not self.running:
            raise RuntimeError("backend is not running")
        if threading.current_thread() is self._thread:
            raise RuntimeError("cannot wait for the backend loop from the backend loop")

        async def wrapper() -> T:
            return await coro_fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), loop).result(timeout)

    def _main(
        self, loop: asyncio.AbstractEventLoop, serve: Serve, started: concurrent.futures.Future[int]
    ) -> None:
        """The thread: run ``serve`` to the end, then cancel what is left and close the loop."""
        asyncio.set_event_loop(loop)
        try:
            stopping: asyncio.Future[int] = loop.create_future()
            self._stopping = stopping
            loop.run_until_complete(serve(started, stopping))
        except BaseException as exc:  # pragma: no cover - reported through ``started`` when possible
            if not started.done():
                started.set_exception(exc)
            logger.exception("backend loop crashed")
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()


def _set_result_once(fut: asyncio.Future[int], value: int) -> None:
    if not fut.done():
        fut.set_result(value)
