"""Subscriptions: which callbacks a message goes to (pure data, thread-safe by copy-on-write).

A :class:`Subscription` is an immutable value. :class:`SubscriptionRouter`
keeps them in an immutable snapshot: an index from message type to the tuple of
subscriptions that want it (in subscription order, wildcard subscriptions
merged in), plus the tuple of wildcard subscriptions for types nobody named.
Writers (:meth:`~SubscriptionRouter.add`, :meth:`~SubscriptionRouter.remove`,
:meth:`~SubscriptionRouter.clear`) take an internal lock, build a new snapshot
and publish it with one attribute assignment; :meth:`~SubscriptionRouter.match`
(the dispatcher's per-message hot path) reads the current snapshot without any
lock: one dict lookup, plus a scan only when some subscription is scoped to a
workflow or node.

The user ``filter`` is **not** called by :meth:`~Subscription.matches` or
:meth:`~SubscriptionRouter.match`: the dispatcher calls
:meth:`Subscription.accepts` itself, so a filter that raises is handled like a
callback that raises (logged, counted, delivery goes on).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, Iterable, Optional, Tuple, Union

from .errors import ConfigError
from .models import MessageType, RealtimeMessage

__all__ = ["EventTypes", "Subscription", "SubscriptionRouter"]

#: What ``add()`` takes as event types: one type, several, or None/empty for all.
EventTypes = Union[None, str, MessageType, Iterable[Union[str, MessageType]]]

Callback = Callable[[RealtimeMessage], Any]
Filter = Callable[[RealtimeMessage], bool]


def _type_key(value: Union[str, MessageType]) -> str:
    """The plain string a type is indexed by (a ``MessageType`` becomes its value)."""
    return value.value if isinstance(value, MessageType) else value


@dataclass(frozen=True)
class Subscription:
    """One subscription: which messages, and the callback they go to.

    ``event_types`` is a frozenset of plain type strings, or ``None`` for every
    type. ``workflow_id``/``node_id`` restrict to messages carrying that id.
    ``filter`` is the user's extra predicate; see :meth:`accepts`.
    """

    id: str
    event_types: Optional[FrozenSet[str]]
    callback: Callback
    workflow_id: Optional[str] = None
    node_id: Optional[str] = None
    filter: Optional[Filter] = None

    @property
    def scoped(self) -> bool:
        """True if restricted to a workflow or node (needs a per-message check)."""
        return self.workflow_id is not None or self.node_id is not None

    def matches(self, message: RealtimeMessage) -> bool:
        """Type, workflow and node match. Does NOT call ``filter`` (see :meth:`accepts`)."""
        if self.event_types is not None and _type_key(message.type) not in self.event_types:
            return False
        if self.workflow_id is not None and message.workflow_id != self.workflow_id:
            return False
        return self.node_id is None or message.node_id == self.node_id

    def accepts(self, message: RealtimeMessage) -> bool:
        """Call the user's filter (True without one). May raise: the caller handles it."""
        return True if self.filter is None else bool(self.filter(message))


_MEMBERS: Dict[str, MessageType] = {m.value: m for m in MessageType}


class _Snapshot:
    """The router's immutable state; never mutated after publication."""

    __slots__ = ("by_id", "by_type", "scoped_types", "wildcard", "wildcard_scoped")

    def __init__(self, subs: Tuple[Subscription, ...], private: FrozenSet[str]) -> None:
        self.by_id: Dict[str, Subscription] = {s.id: s for s in subs}
        self.wildcard: Tuple[Subscription, ...] = tuple(s for s in subs if s.event_types is None)
        self.wildcard_scoped = any(s.scoped for s in self.wildcard)
        # Types wildcards do not get are indexed too (an empty group when nobody names them).
        named = {t for s in subs if s.event_types is not None for t in s.event_types} | private
        by_type: Dict[str, Tuple[Subscription, ...]] = {}
        scoped = set()
        for t in named:
            wildcards_too = t not in private
            group = tuple(
                s for s in subs if (s.event_types is None and wildcards_too) or (s.event_types and t in s.event_types)
            )
            # Index by the plain string and by the enum member: they hash alike on the
            # Pythons we know (then this is one key), and lookups stay right if not.
            keys: Tuple[str, ...] = (t, _MEMBERS[t]) if t in _MEMBERS else (t,)
            for key in keys:
                by_type[key] = group
                if any(s.scoped for s in group):
                    scoped.add(key)
        self.by_type = by_type
        self.scoped_types: FrozenSet[str] = frozenset(scoped)


class SubscriptionRouter:
    """The set of subscriptions, matched per message without a lock.

    Thread-safe: writers serialise on an internal lock and publish a new
    immutable snapshot; readers (:meth:`match`, :meth:`get`, :meth:`subscriptions`,
    ``len()``) use whichever snapshot is current, never a half-built one.
    """

    def __init__(self, private_types: Iterable[Union[str, MessageType]] = ()) -> None:
        """``private_types``: types only subscriptions that name them get; wildcard
        subscriptions never see them (the service's ping, pong and heartbeat)."""
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._private: FrozenSet[str] = frozenset(_type_key(t) for t in private_types)
        self._empty = _Snapshot((), self._private)
        self._snapshot = self._empty

    # ---- writers

    @staticmethod
    def _normalise_types(event_types: EventTypes) -> Optional[FrozenSet[str]]:
        if event_types is None:
            return None
        if isinstance(event_types, str):  # MessageType is a str too
            return frozenset((_type_key(event_types),))
        try:
            values = list(event_types)
        except TypeError:
            raise ConfigError(
                f"event_types must be a message type, an iterable of them, or None; got {event_types!r}"
            ) from None
        for value in values:
            if not isinstance(value, str):
                raise ConfigError(f"event_types: {value!r} is not a message type string")
        return frozenset(_type_key(v) for v in values) or None

    def add(
        self,
        event_types: EventTypes,
        callback: Callback,
        *,
        workflow_id: Optional[str] = None,
        node_id: Optional[str] = None,
        filter: Optional[Filter] = None,
    ) -> str:
        """Subscribe ``callback``; return the subscription id (``"sub-<n>"``).

        ``event_types``: a type (``str`` or :class:`MessageType`), an iterable of
        them, or ``None``/empty for every type. Unknown type strings are allowed
        (a server may send types this client does not know).
        """
        if not callable(callback):
            raise ConfigError(f"callback must be callable, got {type(callback).__name__}")
        if filter is not None and not callable(filter):
            raise ConfigError(f"filter must be callable or None, got {type(filter).__name__}")
        for name, value in (("workflow_id", workflow_id), ("node_id", node_id)):
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a string or None, got {value!r}")
        types = self._normalise_types(event_types)
        with self._lock:
            sub = Subscription(
                id=f"sub-{next(self._ids)}",
                event_types=types,
                callback=callback,
                workflow_id=workflow_id,
                node_id=node_id,
                filter=filter,
            )
            subs = (*self._snapshot.by_id.values(), sub)
            self._snapshot = _Snapshot(subs, self._private)
        return sub.id

    def remove(self, sub_id: str) -> bool:
        """Unsubscribe; False if there was no such subscription (idempotent)."""
        with self._lock:
            current = self._snapshot
            if sub_id not in current.by_id:
                return False
            self._snapshot = _Snapshot(tuple(s for s in current.by_id.values() if s.id != sub_id), self._private)
        return True

    def clear(self) -> int:
        """Remove every subscription; return how many there were."""
        with self._lock:
            count = len(self._snapshot.by_id)
            self._snapshot = self._empty
        return count

    # ---- readers (lock-free)

    def match(self, message: RealtimeMessage) -> Tuple[Subscription, ...]:
        """The subscriptions ``message`` goes to, in subscription order.

        Checks type, workflow and node; does not call filters (the dispatcher calls
        :meth:`Subscription.accepts`). Lock-free: one dict lookup in the common case,
        which returns a tuple of the snapshot as it is (no copy).
        """
        snap = self._snapshot
        key = message.type
        group = snap.by_type.get(key)
        if group is None:
            if not snap.wildcard_scoped:
                return snap.wildcard
            group = snap.wildcard
        elif key not in snap.scoped_types:
            return group
        wf, node = message.workflow_id, message.node_id
        return tuple(
            s
            for s in group
            if (s.workflow_id is None or s.workflow_id == wf) and (s.node_id is None or s.node_id == node)
        )

    def get(self, sub_id: str) -> Optional[Subscription]:
        return self._snapshot.by_id.get(sub_id)

    def subscriptions(self) -> Tuple[Subscription, ...]:
        """Every subscription, in subscription order (an immutable snapshot)."""
        return tuple(self._snapshot.by_id.values())

    def types(self) -> FrozenSet[str]:
        """Every type some subscription names (wildcards excluded)."""
        return frozenset(t for s in self._snapshot.by_id.values() if s.event_types for t in s.event_types)

    def __len__(self) -> int:
        return len(self._snapshot.by_id)

    def __contains__(self, sub_id: object) -> bool:
        return sub_id in self._snapshot.by_id
