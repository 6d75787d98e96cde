"""``Backend.faults``: the command-level fault controls of the reference backend (any thread).

They queue work on :class:`~.faults.FaultSwitches` (deques are appended here and taken by the loop
thread, one item per request or answer); the routes apply them: ``POST /commands`` faults in
``http_routes``, WebSocket answer drops in ``ws_route``, answer delays in both and in ``Hub.send_answer``.
"""

from __future__ import annotations

from typing import Optional

from .faults import CommandFault, FaultSwitches

__all__ = ["FaultControls"]


class FaultControls:
    """Faults that hit commands only (``backend.faults``); every method may be called from any thread.

    ``POST /commands`` faults queue up with each other (each well-formed ``POST /commands`` takes the
    oldest); answer drops queue up with each other. :meth:`Backend.reset_faults` clears them all.
    """

    def __init__(self, switches: FaultSwitches) -> None:
        self._switches = switches

    def fail_commands(
        self, times: int = 1, status: int = 503, *, retry_after: Optional[float] = None, error: Optional[str] = None
    ) -> None:
        """Answer the next ``times`` well-formed ``POST /commands`` with HTTP ``status`` (``Retry-After``
        when given; body ``{"error": error}``, or a text saying it is a fault) without running them.

        They are checked after auth and after reading the body (a malformed body is answered 400 and
        takes no fault), and recorded in ``command_log`` with ``fault="http <status>"``."""
        if status < 100 or status > 599:
            raise ValueError("status must be an HTTP status code")
        self._queue(times, CommandFault(status, retry_after, error))

    def reset_commands(self, times: int = 1) -> None:
        """Reset the connection (RST, no answer) of the next ``times`` well-formed ``POST /commands``
        after reading their body, without running them; recorded with ``fault="reset"``."""
        self._queue(times, CommandFault())

    def drop_command_answers(self, times: int = 1, *, then_drop: bool = False) -> None:
        """Run the next ``times`` commands that come over the WebSocket but send no answer (a repeat is
        still answered from the idempotency store later); ``then_drop=True`` then aborts that
        connection (RST) at once, as a connection lost with a command in flight (docs/faults.rst,
        row 24). Other messages (acks, pongs, events) are not affected; counted in ``answers_dropped``."""
        if times < 0:
            raise ValueError("times must be >= 0")
        self._switches.answer_drops.extend([bool(then_drop)] * times)

    def delay_command_answers(self, seconds: float) -> None:
        """Send each command answer ``seconds`` after the command ran (0: at once): on the WebSocket
        (answers keep their order; events, pongs and acks are not held behind them), in the
        ``POST /commands`` / ``POST /messages`` reply, and on the SSE stream of ``POST /messages``."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        self._switches.answer_delay = float(seconds)

    def reset(self) -> None:
        """Clear every queued command fault and answer drop, and the answer delay."""
        self._switches.command_faults.clear()
        self._switches.answer_drops.clear()
        self._switches.answer_delay = 0.0

    def _queue(self, times: int, fault: CommandFault) -> None:
        if times < 0:
            raise ValueError("times must be >= 0")
        self._switches.command_faults.extend([fault] * times)
