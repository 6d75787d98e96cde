"""The dispatch room: the dispatcher thread (``magk-dispatcher-N``) and :class:`MessageStream`.

The dispatcher takes batches and notices from the session's ``SimpleQueue`` in order and calls
subscriptions, the command-answer handler and listeners with no lock held. A callback that
raises is logged, counted and reported to error listeners; delivery goes on. A callback may
call any public method, ``disconnect()`` included. Once ``disconnect()`` ends delivery
(:attr:`DispatchControl.discard`) it calls nothing more and counts what is left
(``discarded_on_close``).
"""

from __future__ import annotations

import queue
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Optional, Tuple

from ..errors import CallbackError, ConfigError, MagkError, ResumeGapError
from ..models import ConnectionState, MessageType, RealtimeMessage
from ..reclaim import StepGate
from ..router import Subscription
from ..sending import Settlement
from .state import STOP, Notice, Session

if TYPE_CHECKING:
    from ..service import RealtimeService

__all__ = ["Dispatch", "DispatchControl", "MessageStream", "dispatcher_main"]

StateListener = Callable[[ConnectionState, Optional[BaseException]], Any]
ErrorListener = Callable[[MagkError], Any]
GapListener = Callable[[ResumeGapError], Any]
MessageCallback = Callable[[RealtimeMessage], Any]
Remover = Callable[[], None]

#: ``data.type`` of a command answer (a ``workflow_event`` that is no event: see set_command_answer_handler)
_ANSWER = "command_response"


class DispatchControl:
    """Shared by one dispatcher thread and ``disconnect()``: set ``discard`` and the dispatcher
    calls nothing more; what is still queued is counted in ``discarded_on_close`` and dropped."""

    __slots__ = ("discard",)

    def __init__(self) -> None:
        self.discard = False


class Dispatch:
    """Delivery to the application (dispatcher thread), and the listeners it calls.

    The listener tuples and ``answer_handler`` are replaced whole (under the session's lock),
    read without it by the dispatcher. ``thread`` and ``control`` belong to the dispatcher
    of the current session (see :meth:`start_locked`)."""

    def __init__(self, session: Session, gate: StepGate) -> None:
        self._s = session
        self._gate = gate
        self.state_listeners: Tuple[StateListener, ...] = ()
        self.error_listeners: Tuple[ErrorListener, ...] = ()
        self.gap_listeners: Tuple[GapListener, ...] = ()
        #: set by set_command_answer_handler: command answers go there instead of to subscriptions
        self.answer_handler: Optional[MessageCallback] = None
        self.thread: Optional[threading.Thread] = None
        self.control = DispatchControl()

    def start_locked(self) -> None:
        """Start a dispatcher unless one is running (any thread, lock held). It gets a fresh
        queue (the session's ``dispatch_q``) and holds this room only weakly."""
        if self.thread is not None and self.thread.is_alive():
            return
        s = self._s
        s.dispatch_q = queue.SimpleQueue()
        self.control = DispatchControl()
        self.thread = threading.Thread(
            target=dispatcher_main,
            args=(weakref.ref(self), self._gate, s.dispatch_q, self.control),
            name=f"magk-dispatcher-{s.number}",
            daemon=True,
        )
        self.thread.start()

    def post_locked(self, item: Settlement) -> bool:
        """Queue ``item`` for the dispatcher (any thread, lock held); False when none runs."""
        thread = self.thread
        if thread is None or not thread.is_alive():
            return False
        self._s.dispatch_q.put(item)
        return True

    def add_listener(self, kind: str, listener: Callable[..., Any]) -> Remover:
        """Add to ``<kind>_listeners`` (any thread); returns the function that removes it."""
        if not callable(listener):
            raise ConfigError("a listener must be callable")
        attr = f"{kind}_listeners"
        lock = self._s.lock
        with lock:
            setattr(self, attr, (*getattr(self, attr), listener))

        def remove() -> None:
            with lock:
                setattr(self, attr, tuple(x for x in getattr(self, attr) if x is not listener))

        return remove

    # ------------------------------------------------------------------ dispatcher thread

    def deliver(self, item: Any, control: DispatchControl) -> None:
        """Deliver one batch or notice (dispatcher thread, no lock held), until ``control.discard``."""
        if type(item) is Notice:
            self._deliver_notice(item)
            return
        if type(item) is Settlement:  # outcomes of submit_message futures: their callbacks run here
            item.run()
            return
        stats = self._s.stats
        match = self._s.router.match
        answers, workflow_event = self.answer_handler, MessageType.WORKFLOW_EVENT
        notices = 0
        for index, message in enumerate(item):  # the per-message hot path: keep it to lookups and calls
            if control.discard:  # disconnect() ended delivery
                stats.delivered += index - notices
                stats.dispatched += index
                self._discard_batch(item[index:])
                return
            if type(message) is Notice:
                notices += 1
                self._deliver_notice(message)
                continue
            if answers is not None and message.type is workflow_event and message.data.get("type") == _ANSWER:
                try:
                    answers(message)
                except Exception:
                    self._s.logger.warning("command answer handler raised", exc_info=True)
                continue
            for sub in match(message):
                check = sub.filter
                try:
                    if check is None or check(message):
                        sub.callback(message)
                except Exception as exc:  # noqa: BLE001 - user code: reported, delivery goes on
                    self._callback_failed(sub, exc)
        stats.delivered += len(item) - notices
        stats.dispatched += len(item)
        if stats.dispatched == stats.enqueued:
            stats.caught_up.set()

    def discard_queued(self, item: Any, q: queue.SimpleQueue[Any]) -> None:
        """Count ``item`` and everything still queued as discarded (dispatcher, after ``disconnect()``)."""
        while True:
            if type(item) is list:
                self._discard_batch(item)
            elif type(item) is Settlement:  # a future always ends
                item.run()
            try:
                item = q.get_nowait()
            except queue.Empty:
                break
            if item is STOP:
                break
        stats = self._s.stats
        if stats.dispatched == stats.enqueued:
            stats.caught_up.set()

    def _discard_batch(self, batch: List[Any]) -> None:
        """Count a batch that will not be delivered (dispatcher, after ``disconnect()``)."""
        stats = self._s.stats
        stats.discarded_on_close += sum(1 for m in batch if type(m) is not Notice)
        stats.dispatched += len(batch)

    def _callback_failed(self, sub: Subscription, exc: Exception) -> None:
        """A callback (or its filter) raised: log, count, report to error listeners; go on."""
        self._s.stats.callback_errors += 1
        self._s.logger.warning("callback of subscription %s raised %s", sub.id, type(exc).__name__, exc_info=True)
        err = CallbackError(f"callback of subscription {sub.id} raised {type(exc).__name__}: {exc}"[:500])
        err.__cause__ = exc
        self._call_listeners(self.error_listeners, err)

    def _deliver_notice(self, notice: Notice) -> None:
        if notice.kind == "state":
            assert notice.state is not None
            self._call_state_listeners(notice.state, notice.error)
        elif notice.kind == "gap":
            assert isinstance(notice.error, ResumeGapError)
            self._call_listeners(self.gap_listeners, notice.error)
            self._call_state_listeners(self._s.state, notice.error)
        elif isinstance(notice.error, MagkError):
            self._call_listeners(self.error_listeners, notice.error)

    def _call_state_listeners(self, state: ConnectionState, error: Optional[BaseException]) -> None:
        for listener in self.state_listeners:
            try:
                listener(state, error)
            except Exception:
                self._s.stats.callback_errors += 1
                self._s.logger.warning("state listener raised", exc_info=True)

    def _call_listeners(self, listeners: Tuple[Callable[[Any], Any], ...], error: MagkError) -> None:
        for listener in listeners:
            try:
                listener(error)
            except Exception:
                self._s.stats.callback_errors += 1
                self._s.logger.warning("listener raised", exc_info=True)


def dispatcher_main(
    ref: weakref.ReferenceType[Dispatch],
    gate: StepGate,
    q: queue.SimpleQueue[Any],
    control: DispatchControl,
) -> None:
    """Dispatcher thread: deliver batches and notices in order, no lock held; once
    ``disconnect()`` sets ``control.discard``, count what is left and end. Holds the room
    only between ``gate`` brackets, never while it waits on the queue."""
    while True:
        item = q.get()
        if item is STOP:
            return
        token = gate.enter()
        try:
            room = ref()
            if room is None:
                return
            if control.discard:
                room.discard_queued(item, q)
                return
            room.deliver(item, control)
            del room
        finally:
            gate.leave(token)


class MessageStream(Iterator[RealtimeMessage]):
    """An iterator over incoming messages (the pull API for scripts and notebooks).

    It subscribes when created, so nothing that arrives after the call is missed.
    Iteration stops when no message arrives for ``timeout`` seconds (``None``: wait
    forever) or when the stream is closed. Use it as a context manager, or call
    :meth:`close`, to unsubscribe. The dispatcher thread fills it; any one thread reads it.
    """

    def __init__(self, service: RealtimeService, timeout: Optional[float], **subscribe_args: Any) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._timeout = timeout
        self._service = service
        self._closed = False
        self._sub_id = service.subscribe(callback=self._queue.put, **subscribe_args)

    def __next__(self) -> RealtimeMessage:
        if self._closed:
            raise StopIteration
        try:
            item = self._queue.get(timeout=self._timeout)
        except queue.Empty:
            self.close()
            raise StopIteration from None
        if item is STOP:
            raise StopIteration
        assert isinstance(item, RealtimeMessage)
        return item

    def set_timeout(self, timeout: Optional[float]) -> None:
        """The quiet period that ends iteration, from the next wait on."""
        self._timeout = timeout

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._service.unsubscribe(self._sub_id)
            self._queue.put(STOP)

    def __enter__(self) -> MessageStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
