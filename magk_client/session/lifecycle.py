"""Starting and ending sessions: what ``connect()``, ``disconnect()`` and ``close()`` do.

Runs on the calling thread (any user thread, or a callback on the dispatcher thread). A
*session* is one run of a supervisor thread, from ``connect()`` to its end (connected and
lost any number of times in between); the dispatcher thread outlives sessions while
``connect()`` is called again before it is stopped.
"""

from __future__ import annotations

import queue
import threading
import time
import weakref
from typing import Any, Optional

from ..errors import ConnectCancelledError, MagkError, MagkTimeoutError
from ..models import ConnectionState
from .connecting import bounded_wait
from .dispatch import Dispatch
from .state import STOP, Handles, Session
from .supervisor import Supervisor, supervisor_main

__all__ = ["Lifecycle", "release"]

#: The end of disconnect()'s timeout kept for the dispatcher to discard what is left (seconds).
_DISCARD_GRACE = 0.1


class Lifecycle:
    """The supervisor thread of the current session, and how sessions start and end."""

    def __init__(self, session: Session, supervisor: Supervisor, dispatch: Dispatch) -> None:
        self._s = session
        self._supervisor = supervisor
        self._dispatch = dispatch
        self.thread: Optional[threading.Thread] = None

    def running_locked(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start_locked(self) -> None:
        """Start a session: a supervisor thread (and the dispatcher, unless it runs). Lock held."""
        s = self._s
        s.stop = threading.Event()
        s.wake = threading.Event()
        s.error = None
        s.stats.session_connects = 0
        s.tracker.reset()
        # A half-open probe of an earlier session that ended without an outcome is given back.
        s.breaker.release_probe(time.monotonic())
        s.ctype = s.config.preferred_type
        self._dispatch.start_locked()
        s.handles.stop, s.handles.wake, s.handles.queue = s.stop, s.wake, s.dispatch_q
        s.set_state_locked(ConnectionState.CONNECTING, None)  # into this session's queue
        self.thread = threading.Thread(
            target=supervisor_main,
            args=(weakref.ref(self._supervisor), self._supervisor.gate, s.stop, s.wake),
            name=f"magk-supervisor-{s.number}",
            daemon=True,
        )
        self.thread.start()

    def wait_connected(self, session: threading.Event, connects: int, timeout: Optional[float]) -> None:
        """Block until the session ``session`` connects (or did, ``connects`` being the count when
        the wait began); on its failure, a ``timeout`` or a cancellation end it and raise."""
        s = self._s
        deadline = None if timeout is None else time.monotonic() + timeout
        err: Optional[MagkError] = None
        with s.lock:
            while True:
                if s.state is ConnectionState.CONNECTED:
                    return
                if s.stop is session and s.stats.session_connects > connects:
                    return  # it connected, and lost that connection before this thread woke up
                if session.is_set() or s.error is not None:
                    # the session ended: gave up, or ended by disconnect()/close()/another connect()
                    if s.stop is session and s.error is not None:
                        err = s.error
                    else:  # ...and another session has started since
                        err = ConnectCancelledError("connect() was cancelled by disconnect()")
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    err = None
                    break
                s.changed.wait(remaining if remaining is None else min(remaining, 1.0))
        if err is None:
            errors = s.stats.errors
            last = errors[-1] if errors else "no attempt finished"
            err = MagkTimeoutError(f"could not connect within {timeout} s (last error: {last})")
        self.shutdown(5.0, ConnectionState.ERROR, err, session=session)
        raise err

    def shutdown(
        self,
        timeout: float,
        final: ConnectionState,
        error: Optional[MagkError],
        *,
        cause: str = "disconnect()",
        session: Optional[threading.Event] = None,
    ) -> None:
        """End the session (``session``: only if it is still that one) within ``timeout`` s (any thread)."""
        s = self._s
        current = threading.current_thread()
        deadline = time.monotonic() + max(0.0, timeout)
        with s.lock:
            if session is not None and s.stop is not session:
                return  # that session was ended, and another started, meanwhile
            supervisor = self.thread
            dispatcher, control = self._dispatch.thread, self._dispatch.control
            stop = s.stop
            stop.set()
            s.wake.set()
            if s.error is None:  # what a connect() waiting for this session raises, now
                s.error = error or ConnectCancelledError(f"connect() was cancelled by {cause}")
            s.changed.notify_all()
            conn, opening = s.conn, s.opening
            s.direct_send = False
        if opening is not None:
            opening.close()
        if conn is not None:
            conn.transport.close()
        if supervisor is not None and supervisor is not current:
            supervisor.join(bounded_wait(deadline - time.monotonic()))
            if supervisor.is_alive():
                s.logger.warning("supervisor thread did not end within the disconnect timeout")
        with s.lock:
            if self.thread is supervisor:
                self.thread = None
            if s.stop is not stop:
                return  # a connect() in another thread started a new session meanwhile: it owns the dispatcher
            if s.state is not final and s.state is not ConnectionState.CLOSED:
                if final is ConnectionState.ERROR and error is not None:
                    s.fail_session_locked(error)  # connect() timed out
                else:
                    s.set_state_locked(final, error)
            self._dispatch.thread = None
            s.dispatch_q.put(STOP)
        if dispatcher is None:
            return
        if dispatcher is current:
            control.discard = True  # called from a callback: nothing more once it returns
            return
        dispatcher.join(bounded_wait(deadline - _DISCARD_GRACE - time.monotonic()))
        if dispatcher.is_alive():
            control.discard = True
            dispatcher.join(bounded_wait(deadline - time.monotonic()))
            if dispatcher.is_alive():
                s.logger.warning("a callback is still running after the disconnect timeout; nothing more is delivered")


def release(handles: Handles) -> None:
    """Finalizer of a service that was dropped while running: stop its threads."""
    if handles.stop is not None:
        handles.stop.set()
    if handles.wake is not None:
        handles.wake.set()
    for transport in list(handles.transports):
        transport.close()
    q: Optional[queue.SimpleQueue[Any]] = handles.queue
    if q is not None:
        q.put(STOP)
