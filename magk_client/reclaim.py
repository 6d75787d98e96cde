"""Reclaiming a dropped service whose own threads held it when the garbage collector looked.

A service's threads hold it only through a weak reference, except for the short *steps*
in which they work on it (decode a batch, call the callbacks, one turn of the retry loop).
A service dropped without ``disconnect()`` in a reference cycle (a callback that uses the
service: the usual notebook case) is reclaimed only by a full collection; if that
collection runs while one of its threads is in a step, the service survives it, keeping
its threads, socket and server connection until the next full collection, which may not
come for a long time.

So the threads of a service bracket their steps with a :class:`StepGate`. When a full
collection run by someone else (the user's ``gc.collect()``, or the interpreter's own)
overlapped a step, the thread that ends the last step then in progress, holding nothing
any more, collects once more. Collections we run ourselves do not count, so services do
not set each other off; one collection answers every request made before it started. The
cost: at most one extra full collection per foreign one that met a busy service.

``_GcWatch`` is fed by a ``gc.callbacks`` hook installed at import; it takes no lock
(the collector may run it in a thread that holds any of ours).
"""

from __future__ import annotations

import _thread
import gc
import threading
import time
from typing import Any, Dict, Optional

__all__ = ["StepGate"]


class _GcWatch:
    """Counts the full collections that others run, and runs ours: one at a time, and one
    covers every request made before it started."""

    def __init__(self) -> None:
        self.started = 0  # full collections by others that have started...
        self.stopped = 0  # ...and ended
        self._owner: Optional[int] = None  # the thread running our own collection
        self._lock = threading.Lock()
        self._collecting = threading.Lock()
        self._issued = 0
        self._covered = 0

    def on_gc(self, phase: str, info: Dict[str, Any]) -> None:
        """The ``gc.callbacks`` hook (runs inside a collection: no lock, no allocation worth naming).

        A Ctrl-C that lands while this runs would be swallowed by the collector ("Exception
        ignored in ..."), and a script would not stop: it is handed back to the main thread."""
        try:
            if info.get("generation") == 2 and threading.get_ident() != self._owner:
                if phase == "start":
                    self.started += 1
                else:
                    self.stopped += 1
        except KeyboardInterrupt:
            _thread.interrupt_main()

    def token(self) -> int:
        """Taken when a step starts: the collections started so far, or -1 if one is running."""
        started = self.started
        return started if self.stopped == started else -1

    def met(self, token: int) -> bool:
        """Did a collection by others run during the step that took ``token``?"""
        return self.started != token

    def recollect(self) -> None:
        """Collect once more, unless a collection started after this call (no lock held)."""
        with self._lock:
            self._issued += 1
            ticket = self._issued
        with self._collecting:
            # While another collection is under way (running finalizers), gc.collect() does nothing.
            deadline = time.monotonic() + 1.0
            while self.started != self.stopped:
                if time.monotonic() > deadline:
                    self.stopped = self.started  # a "stop" we never saw: do not wait for it again
                    break
                time.sleep(0.001)
            with self._lock:
                if self._covered >= ticket:
                    return
                self._covered = self._issued  # every request made so far
            self._owner = threading.get_ident()
            try:
                gc.collect()
            finally:
                self._owner = None


_gc_watch = _GcWatch()
gc.callbacks.append(_gc_watch.on_gc)


class StepGate:
    """Brackets the steps of one service's threads: the only moments they hold it strongly.

    ``token = gate.enter()`` before taking the strong reference, ``gate.leave(token)``
    after dropping it (in a ``finally``). Thread-safe; holds no reference to the service.
    """

    __slots__ = ("_lock", "busy", "pending")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.busy = 0  # steps in progress
        self.pending = False  # a foreign full collection met a step since the last recollect

    def enter(self) -> int:
        with self._lock:
            self.busy += 1
        return _gc_watch.token()

    def leave(self, token: int) -> None:
        with self._lock:
            self.busy -= 1
            if _gc_watch.met(token):
                self.pending = True
            if self.busy or not self.pending:
                return
            self.pending = False
        _gc_watch.recollect()
