"""Subscriptions: which callbacks a message goes to (pure data, lock-free reads, copy-on-write buckets).

A :class:`Subscription` is an immutable value. :class:`SubscriptionRouter`
indexes subscriptions by (type, workflow, node):

* ``entries``: message type -> ``(plain, mask)``. ``plain`` is the tuple of the
  unscoped subscriptions the type goes to (those naming it and, unless the type
  is private, the unscoped wildcards), in subscription order. ``mask`` says
  which scoped buckets may hold subscriptions for the type (workflow only, node
  only, workflow and node; of subscriptions naming it, and of scoped wildcards).
  Key ``None`` is the entry of every type no subscription names.
* ``scoped``: ``(type or None, workflow_id, node_id)`` -> tuple of the scoped
  subscriptions with exactly that scope, in subscription order.

A message is matched by one lookup of its type, and, only when the mask says
so, by one lookup per scoped bucket shape (at most six). A message matching
several buckets gets their subscriptions merged by :attr:`Subscription.seq`
(the order they subscribed in); the common case, one bucket, returns the
bucket's tuple itself (no copy).

Writers (:meth:`~SubscriptionRouter.add`, :meth:`~SubscriptionRouter.remove`,
:meth:`~SubscriptionRouter.clear`) serialise on an internal lock and replace
one dict value at a time with a new immutable tuple: an add or a remove copies
only the buckets of its subscription (per type it names), so both are O(1)
amortized in the number of other subscriptions (an unscoped wildcard touches
the entry of every named type, a handful). :meth:`~SubscriptionRouter.match`
(the dispatcher's per-message hot path) takes no lock: every dict value it reads
is a complete tuple, old or new.

The user ``filter`` is **not** called by :meth:`~Subscription.matches` or
:meth:`~SubscriptionRouter.match`: the dispatcher calls
:meth:`Subscription.accepts` itself, so a filter that raises is handled like a
callback that raises (logged, counted, delivery goes on).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Tuple, Union

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


#: A member and its value are one dict key on every Python we know (a ``str`` enum hashes
#: and compares as its value); if not, :meth:`SubscriptionRouter.match` turns members into values.
_MEMBERS_ARE_KEYS = all(hash(m) == hash(m.value) and m == m.value for m in MessageType)


@dataclass(frozen=True)
class Subscription:
    """One subscription: which messages, and the callback they go to.

    ``event_types`` is a frozenset of plain type strings, or ``None`` for every
    type. ``workflow_id``/``node_id`` restrict to messages carrying that id.
    ``filter`` is the user's extra predicate; see :meth:`accepts`. ``seq`` is
    the router's sequence number (increasing in subscription order).
    """

    id: str
    event_types: Optional[FrozenSet[str]]
    callback: Callback
    workflow_id: Optional[str] = None
    node_id: Optional[str] = None
    filter: Optional[Filter] = None
    seq: int = field(default=0, compare=False, repr=False)

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


Subs = Tuple[Subscription, ...]
Entry = Tuple[Subs, int]
BucketKey = Tuple[Optional[str], Optional[str], Optional[str]]

# Scope shapes (mask bits) of subscriptions naming the type; a scoped wildcard's shape is shifted.
_W, _N, _WN = 1, 2, 4
_WILD = 3
_AW, _AN, _AWN = _W << _WILD, _N << _WILD, _WN << _WILD
_SEQ = attrgetter("seq")


def _shape(sub: Subscription) -> int:
    if sub.workflow_id is None:
        return 0 if sub.node_id is None else _N
    return _W if sub.node_id is None else _WN


class _Index:
    """The index (see the module docstring) and the writers' counts. Writers only, under the lock;
    readers use :attr:`entries`, :attr:`scoped` and :attr:`by_id` with single lookups."""

    __slots__ = ("by_id", "entries", "private", "scoped", "shapes", "typed")

    def __init__(self, private: FrozenSet[str]) -> None:
        self.private = private
        self.by_id: Dict[str, Subscription] = {}  # in subscription order
        self.entries: Dict[Optional[str], Entry] = {t: ((), 0) for t in private}
        self.entries[None] = ((), 0)
        self.scoped: Dict[BucketKey, Subs] = {}
        self.typed: Dict[str, int] = {}  # type -> how many subscriptions name it
        self.shapes: Dict[Tuple[Optional[str], int], int] = {}  # (type or None, shape) -> how many

    def _mask(self, key: Optional[str]) -> int:
        """The mask of ``key``'s entry, from the counts."""
        shapes = self.shapes
        typed = sum(bit for bit in (_W, _N, _WN) if key is not None and (key, bit) in shapes)
        if key in self.private:
            return typed
        return typed | sum(bit << _WILD for bit in (_W, _N, _WN) if (None, bit) in shapes)

    def _remask(self, key: Optional[str]) -> None:
        """Republish the mask of ``key``'s entry, or of every non-private entry for a wildcard."""
        entries = self.entries
        keys = [k for k in entries if k not in self.private] if key is None else [key]
        for k in keys:
            plain = entries.get(k, entries[None])[0]
            entries[k] = (plain, self._mask(k))

    def _unscoped(self, key: Optional[str], edit: Callable[[Subs], Subs]) -> None:
        """Apply ``edit`` to the plain tuple of ``key``'s entry (of every non-private entry for a wildcard)."""
        entries = self.entries
        keys = [k for k in entries if k not in self.private] if key is None else [key]
        for k in keys:
            plain, mask = entries.get(k, entries[None])
            entries[k] = (edit(plain), mask)

    def add(self, sub: Subscription) -> None:
        self.by_id[sub.id] = sub
        shape = _shape(sub)
        keys: Iterable[Optional[str]] = (None,) if sub.event_types is None else sub.event_types
        for key in keys:
            new_type = False
            if key is not None:
                count = self.typed.get(key, 0)
                self.typed[key] = count + 1
                new_type = count == 0 and key not in self.private
            if not shape:
                self._unscoped(key, lambda plain: (*plain, sub))  # sub is the newest: appending keeps the order
                continue
            bucket = (key, sub.workflow_id, sub.node_id)
            self.scoped[bucket] = (*self.scoped.get(bucket, ()), sub)  # the bucket first, then its mask bit
            count = self.shapes.get((key, shape), 0)
            self.shapes[(key, shape)] = count + 1
            if count == 0 or new_type:
                self._remask(key)

    def remove(self, sub: Subscription) -> None:
        del self.by_id[sub.id]
        shape = _shape(sub)

        def without(subs: Subs) -> Subs:
            if len(subs) == 1 and subs[0] is sub:  # the common scoped bucket: one subscription
                return ()
            return tuple(s for s in subs if s is not sub)

        keys: Iterable[Optional[str]] = (None,) if sub.event_types is None else sub.event_types
        for key in keys:
            remask = False
            if not shape:
                self._unscoped(key, without)
            else:
                bucket = (key, sub.workflow_id, sub.node_id)
                rest = without(self.scoped[bucket])
                if rest:
                    self.scoped[bucket] = rest
                else:
                    del self.scoped[bucket]
                count = self.shapes.pop((key, shape)) - 1
                if count:
                    self.shapes[(key, shape)] = count
                remask = count == 0
            if key is not None:
                count = self.typed.pop(key) - 1
                if count:
                    self.typed[key] = count
                elif key not in self.private:
                    # nobody names it now: its entry equals the default one (key None)
                    del self.entries[key]
                    continue
            if remask:
                self._remask(key)


class SubscriptionRouter:
    """The set of subscriptions, matched per message without a lock.

    Thread-safe: writers serialise on an internal lock and replace index values
    with new immutable tuples; :meth:`match`, :meth:`get`, ``len()`` and ``in``
    read without the lock (any thread; the service's dispatcher calls
    :meth:`match` per message). :meth:`subscriptions` and :meth:`types` copy
    under the lock (never held while user code runs).
    """

    def __init__(self, private_types: Iterable[Union[str, MessageType]] = ()) -> None:
        """``private_types``: types only subscriptions that name them get; wildcard
        subscriptions never see them (the service's ping, pong and heartbeat)."""
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._private: FrozenSet[str] = frozenset(_type_key(t) for t in private_types)
        self._publish(_Index(self._private))

    def _publish(self, index: _Index) -> None:
        self._index = index
        self._by_id = index.by_id
        self._scoped = index.scoped
        self._entries = index.entries  # last: a reader that sees it also sees the rest

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
            seq = next(self._ids)
            sub = Subscription(
                id=f"sub-{seq}",
                event_types=types,
                callback=callback,
                workflow_id=workflow_id,
                node_id=node_id,
                filter=filter,
                seq=seq,
            )
            self._index.add(sub)
        return sub.id

    def remove(self, sub_id: str) -> bool:
        """Unsubscribe; False if there was no such subscription (idempotent)."""
        with self._lock:
            sub = self._index.by_id.get(sub_id)
            if sub is None:
                return False
            self._index.remove(sub)
        return True

    def clear(self) -> int:
        """Remove every subscription; return how many there were."""
        with self._lock:
            count = len(self._index.by_id)
            self._publish(_Index(self._private))
        return count

    # ---- readers

    def match(self, message: RealtimeMessage) -> Tuple[Subscription, ...]:
        """The subscriptions ``message`` goes to, in subscription order.

        Checks type, workflow and node; does not call filters (the dispatcher calls
        :meth:`Subscription.accepts`). Lock-free, any thread. Without scoped
        subscriptions for the type: one dict lookup, which returns a tuple of the
        index as it is (no copy); with them, one more lookup per scope shape in use.
        """
        key: Any = message.type
        if not _MEMBERS_ARE_KEYS and isinstance(key, MessageType):
            key = key.value
        entries = self._entries
        entry = entries.get(key)
        plain, mask = entry if entry is not None else entries[None]
        if not mask:
            return plain
        get = self._scoped.get
        wf = message.workflow_id
        node = message.node_id
        found: List[Subs] = [plain] if plain else []
        if wf is not None:
            if mask & _W and (subs := get((key, wf, None))):
                found.append(subs)
            if mask & _AW and (subs := get((None, wf, None))):
                found.append(subs)
            if node is not None:
                if mask & _WN and (subs := get((key, wf, node))):
                    found.append(subs)
                if mask & _AWN and (subs := get((None, wf, node))):
                    found.append(subs)
        if node is not None:
            if mask & _N and (subs := get((key, None, node))):
                found.append(subs)
            if mask & _AN and (subs := get((None, None, node))):
                found.append(subs)
        if len(found) == 1:
            return found[0]
        if not found:
            return ()
        return tuple(sorted(itertools.chain.from_iterable(found), key=_SEQ))

    def get(self, sub_id: str) -> Optional[Subscription]:
        return self._by_id.get(sub_id)

    def subscriptions(self) -> Tuple[Subscription, ...]:
        """Every subscription, in subscription order (a copy)."""
        with self._lock:
            return tuple(self._index.by_id.values())

    def types(self) -> FrozenSet[str]:
        """Every type some subscription names (wildcards excluded)."""
        with self._lock:
            return frozenset(self._index.typed)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, sub_id: object) -> bool:
        return sub_id in self._by_id
