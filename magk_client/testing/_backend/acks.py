"""Acknowledgements of client messages: processing each message id once, and what to acknowledge.

See docs/protocol.rst, "Acknowledgements". :class:`ProcessedIds` is a plain bounded set (one thread at a
time); :class:`MessageDesk` runs on the loop thread (or the caller's thread while the backend is stopped).
It is the one place every plain client message passes, whatever transport brought it; commands go to the
``CommandDesk`` instead (their answer is their acknowledgement), and the WebSocket batching of the ids to
acknowledge is the ``Hub``'s (:meth:`Hub.queue_ack`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from .records import Records

__all__ = ["ACK_FEATURE", "UNACKED_TYPES", "MessageDesk", "ProcessedIds", "Receipt", "message_id"]

logger = logging.getLogger("magk_client.testing.backend")

#: The name of the feature in ``subscription_ack``'s ``features``.
ACK_FEATURE = "ack"
#: Liveness messages: answered (a ping) or noted (a pong), never acknowledged nor de-duplicated.
UNACKED_TYPES = frozenset({"ping", "pong"})


def message_id(msg: Any) -> Optional[str]:
    """The client message id of ``msg``: a non-empty string ``id``, else None."""
    mid = msg.get("id") if isinstance(msg, dict) else None
    return mid if isinstance(mid, str) and mid else None


class ProcessedIds:
    """The ids of the last ``capacity`` processed messages, oldest forgotten first."""

    def __init__(self) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, mid: object) -> bool:
        return mid in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, mid: str, capacity: int) -> None:
        self._ids[mid] = None
        self._ids.move_to_end(mid)
        while len(self._ids) > max(capacity, 0):
            self._ids.popitem(last=False)


@dataclass(frozen=True)
class Receipt:
    """What became of one client message: the id to acknowledge (None: no ack is due), and whether it
    was a duplicate (acknowledged again, not processed again)."""

    ack_id: Optional[str]
    duplicate: bool = False

    def http_body(self) -> Dict[str, Any]:
        """The body of the ``202`` that answers it on ``POST /messages`` (the 2xx is the ack)."""
        body: Dict[str, Any] = {"accepted": True}
        if self.ack_id is not None:
            body["id"] = self.ack_id
            if self.duplicate:
                body["duplicate"] = True
        return body


class MessageDesk:
    """Processes each plain client message once per id while acks are on, and says what to acknowledge.

    "Processing" a message, for the reference backend, is recording it (``Records.received``) and
    counting its id (``Records.processed``). ``enabled()`` and ``capacity()`` are read at each message:
    while acks are off nothing is acknowledged, de-duplicated or remembered. The set of processed ids
    outlives restarts (a client resends after a restart too).
    """

    def __init__(self, records: Records, enabled: Callable[[], bool], capacity: Callable[[], int]) -> None:
        self._records = records
        self._enabled = enabled
        self._capacity = capacity
        self._processed = ProcessedIds()

    def take(self, transport: str, conn_id: Optional[str], msg: Dict[str, Any], text: str) -> Receipt:
        """Process ``msg`` (a JSON object with a string ``type``) unless its id was processed already."""
        mid = None if msg.get("type") in UNACKED_TYPES else message_id(msg)
        enabled = mid is not None and self._enabled()
        if enabled and mid in self._processed:
            self._records.received(transport, conn_id, msg, text, duplicate=True)
            self._records.count("duplicates_ignored")
            logger.debug("message %s repeated over %s: acknowledging again without processing it", mid, transport)
            return Receipt(mid, duplicate=True)
        self._records.received(transport, conn_id, msg, text)
        if mid is None:
            return Receipt(None)
        self._records.processed(mid)
        if not enabled:
            return Receipt(None)
        self._processed.add(mid, self._capacity())
        return Receipt(mid)
