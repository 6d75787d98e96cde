"""The store's listeners: registration and ordered delivery with no lock held.

:class:`StoreListeners` shares the store's lock. The store calls :meth:`StoreListeners.queue`
while it holds that lock, right after applying an update, so notifications are queued in
exactly the order updates were applied. After releasing the lock, the updating thread
calls :meth:`StoreListeners.drain`: if no other thread is delivering, it becomes the
deliverer and calls listeners (and their filters) from the queue, oldest first, taking
the lock only to pop items; otherwise it returns at once and the thread already
delivering delivers its notifications too, after the ones before them.

Hence: listeners never run under the store's lock; every listener sees updates in the
order they were applied, across all writer threads; a listener may call any store
method (an update it makes is delivered after it returns, on the same thread, not
recursively); one that raises is logged on ``magk_client.store`` and counted, and
delivery goes on. With one writer thread (the integration's dispatcher), listeners run
on that thread, before the update call returns. With several writers overlapping, a
writer's listeners may run on another writer's thread, and its update call may return
before they ran.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from typing import Any, Callable, Deque, Optional, Tuple

from .errors import ConfigError
from .node_state import NodeExecutionState

__all__ = ["Listener", "StateFilter", "StoreListeners"]

logger = logging.getLogger("magk_client.store")

#: ``listener(new_state, old_state)``: ``old_state`` is None for a node's first update,
#: ``new_state`` is None when the node was cleared.
Listener = Callable[[Optional[NodeExecutionState], Optional[NodeExecutionState]], Any]
#: ``filter(state) -> bool``, given the new state (the old one for a clear).
StateFilter = Callable[[NodeExecutionState], bool]

_Item = Tuple[Tuple["_Subscription", ...], Optional[NodeExecutionState], Optional[NodeExecutionState]]


class _Subscription:
    __slots__ = ("active", "callback", "filter", "id", "node_id", "workflow_id")

    def __init__(
        self,
        sub_id: str,
        callback: Listener,
        workflow_id: Optional[str],
        node_id: Optional[str],
        state_filter: Optional[StateFilter],
    ) -> None:
        self.id = sub_id
        self.callback = callback
        self.workflow_id = workflow_id
        self.node_id = node_id
        self.filter = state_filter
        self.active = True

    def wants(self, workflow_id: str, node_id: str) -> bool:
        return (self.workflow_id is None or self.workflow_id == workflow_id) and (
            self.node_id is None or self.node_id == node_id
        )


def _name(fn: Any) -> str:
    return str(getattr(fn, "__qualname__", type(fn).__name__))


class StoreListeners:
    """Listener subscriptions and their ordered delivery (see the module docstring).

    ``lock`` is the store's lock. :meth:`queue` must be called with it held;
    every other method must be called without it.
    """

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._subs: Tuple[_Subscription, ...] = ()
        self._pending: Deque[_Item] = deque()
        self._delivering = False
        self._ids = itertools.count(1)
        self.errors = 0

    def subscribe(
        self,
        callback: Listener,
        workflow_id: Optional[str],
        node_id: Optional[str],
        state_filter: Optional[StateFilter],
    ) -> str:
        if not callable(callback):
            raise ConfigError(f"callback must be callable, got {type(callback).__name__}")
        if state_filter is not None and not callable(state_filter):
            raise ConfigError(f"filter must be callable or None, got {type(state_filter).__name__}")
        for name, value in (("workflow_id", workflow_id), ("node_id", node_id)):
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a string or None, got {value!r}")
        with self._lock:
            sub = _Subscription(f"store-sub-{next(self._ids)}", callback, workflow_id, node_id, state_filter)
            self._subs = (*self._subs, sub)
        return sub.id

    def unsubscribe(self, sub_id: str) -> bool:
        """Remove a subscription; it gets no notification from then on, queued ones included."""
        with self._lock:
            kept = tuple(s for s in self._subs if s.id != sub_id)
            if len(kept) == len(self._subs):
                return False
            for sub in self._subs:
                if sub.id == sub_id:
                    sub.active = False
            self._subs = kept
        return True

    def __len__(self) -> int:
        return len(self._subs)

    def queue(self, new: Optional[NodeExecutionState], old: Optional[NodeExecutionState]) -> bool:
        """Queue a notification (the store's lock held). True: the caller must :meth:`drain`."""
        subs = self._subs
        if not subs:
            return False
        state = new if new is not None else old
        assert state is not None
        wanted = tuple(s for s in subs if s.wants(state.workflow_id, state.node_id))
        if not wanted:
            return False
        self._pending.append((wanted, new, old))
        if self._delivering:
            return False
        self._delivering = True
        return True

    def drain(self) -> None:
        """Deliver queued notifications in order until none is left (no lock held by the caller)."""
        lock = self._lock
        pending = self._pending
        try:
            while True:
                with lock:
                    if not pending:
                        self._delivering = False
                        return
                    subs, new, old = pending.popleft()
                self._deliver(subs, new, old)
        except BaseException:
            # KeyboardInterrupt or SystemExit out of a listener: let the next update deliver the rest.
            with lock:
                self._delivering = False
            raise

    def _deliver(
        self, subs: Tuple[_Subscription, ...], new: Optional[NodeExecutionState], old: Optional[NodeExecutionState]
    ) -> None:
        state = new if new is not None else old
        assert state is not None
        for sub in subs:
            if not sub.active:
                continue
            try:
                if sub.filter is not None and not sub.filter(state):
                    continue
                sub.callback(new, old)
            except Exception:
                logger.exception("store listener %s raised (delivery goes on)", _name(sub.callback))
                with self._lock:
                    self.errors += 1
