"""Recorders: callbacks that remember what they were called with, and let a test
wait for a condition on that record (no sleeping as synchronisation).

    recorder = Recorder()
    service.subscribe(None, recorder)
    recorder.wait_for(lambda items: len(items) >= 10, timeout=5)
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Generic, List, Optional, Tuple, TypeVar

__all__ = ["Recorder", "StateRecorder"]

T = TypeVar("T")


class Recorder(Generic[T]):
    """A thread-safe callable that appends what it is called with.

    ``wait_for(predicate, timeout)`` blocks until ``predicate(items)`` is true and
    returns a copy of the items, or raises ``AssertionError`` with the record.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: List[T] = []
        self._times: List[float] = []

    def __call__(self, item: T) -> None:
        with self._cond:
            self._items.append(item)
            self._times.append(time.monotonic())
            self._cond.notify_all()

    @property
    def items(self) -> List[T]:
        with self._cond:
            return list(self._items)

    @property
    def times(self) -> List[float]:
        """``time.monotonic()`` of each call."""
        with self._cond:
            return list(self._times)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def clear(self) -> None:
        with self._cond:
            self._items.clear()
            self._times.clear()

    def wait_for(self, predicate: Callable[[List[T]], bool], timeout: float = 10.0, what: str = "") -> List[T]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self._items):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    tail = self._items[-5:]
                    raise AssertionError(
                        f"timed out after {timeout} s waiting for {what or 'a condition'}; "
                        f"{len(self._items)} items recorded, last: {tail!r}"
                    )
                self._cond.wait(remaining)
            return list(self._items)

    def wait_count(self, count: int, timeout: float = 10.0) -> List[T]:
        return self.wait_for(lambda items: len(items) >= count, timeout, f"{count} items")


class StateRecorder(Recorder[Tuple[Any, Optional[BaseException]]]):
    """A recorder for ``on_connection_state_change``: called as ``listener(state, error)``."""

    def __call__(self, state: Any, error: Optional[BaseException] = None) -> None:
        super().__call__((state, error))

    def states(self) -> List[Any]:
        return [state for state, _ in self.items]

    def wait_state(
        self, state: Any, timeout: float = 10.0, *, count: int = 1
    ) -> List[Tuple[Any, Optional[BaseException]]]:
        return self.wait_for(
            lambda items: sum(1 for s, _ in items if s == state) >= count, timeout, f"state {state} x{count}"
        )
