"""Lenient parsing of camelCase wire objects into typed dataclasses (the machinery of
:mod:`magk_client.payloads`).

A type is a dataclass deriving from :class:`WireObject` whose fields all have defaults; its type hints
say what each value must be (``str``, ``int``, ``float``, ``bool``, ``Any``, ``Dict[str, Any]``,
``List[...]``, ``Union[SomeStrEnum, str]``, ``Union[str, float]``, another :class:`WireObject`, each
optionally ``Optional``). Snake_case fields map to camelCase keys (:func:`wire_name` for exceptions);
:func:`required` marks a key that must be present, :func:`iso_time` an ISO-8601 time string.

Parsing never raises:

* a key the type does not know is kept in the object's ``extra`` (and written back by ``to_wire``);
* a missing required key, a value of the wrong JSON type or an unknown enum value becomes one line
  of ``problems`` (``"stages[0].status: expected a string, got number"``); the field stays ``None``
  (an unknown enum value is kept as its plain string, an item of the wrong type is left out of its
  list);
* ``raw`` is the dict the object was built from, as received.

``problems`` covers the object and everything in it, and ``unknown_keys()`` lists the ``extra`` keys
of the object and everything in it. ``from_wire(data, strict=True)`` raises :class:`PayloadError`
instead of returning an object that has either: strict means exactly the declared type.

Pure and lock-free; runs on whichever thread calls it. A type's field table is made from its hints
on first use (a race makes it twice, harmlessly).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import (
    Any,
    Callable,
    ClassVar,
    Dict,
    FrozenSet,
    List,
    Optional,
    Tuple,
    Type,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from .errors import MagkError
from .models import StrEnum

__all__ = ["PayloadError", "WireObject", "build", "iso_time", "json_kind", "required", "wire_name"]


class PayloadError(MagkError, ValueError):
    """A wire object did not fit its type exactly (raised only by ``from_wire(..., strict=True)``).

    Attributes:
        problems: one line per problem, each starting with the path of the value concerned.
    """

    def __init__(self, type_name: str, problems: Tuple[str, ...]) -> None:
        super().__init__(f"malformed {type_name}: " + "; ".join(problems))
        self.problems = problems


def required() -> Any:
    """A field whose key must be present (reported when missing or null); ``None`` until parsed."""
    return field(default=None, metadata={"required": True})


def iso_time(required: bool = False) -> Any:
    """An ISO-8601 time string with a zone (how JSON carries a JavaScript ``Date``)."""
    return field(default=None, metadata={"time": True, "required": required})


def wire_name(name: str) -> Any:
    """A field whose wire name is not the plain camelCase of its Python name (``diskIO``)."""
    return field(default=None, metadata={"wire": name})


P = TypeVar("P", bound="WireObject")
_Check = Callable[[Any, str, List[str]], Any]


@dataclass
class WireObject:
    """Base of the lenient wire types: ``from_wire``, ``to_wire``, ``unknown_keys`` and three
    attributes, none of them an ``__init__`` argument (so a subclass's own fields stay positional)."""

    #: keys of the wire object this type does not define, with their values
    extra: Dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    #: what did not fit, one line each (path: what); empty when the payload was well formed
    problems: Tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)
    #: the wire object this was parsed from (``None`` when built in code or given a non-object)
    raw: Optional[Dict[str, Any]] = field(default=None, init=False, repr=False, compare=False)

    #: (fields, their wire names), made from the type hints on first use (see _spec)
    _spec: ClassVar[Optional[Tuple[Tuple[_Field, ...], FrozenSet[str]]]] = None

    @classmethod
    def from_wire(cls: Type[P], data: Any, *, strict: bool = False) -> P:
        """Parse a wire object (camelCase keys). Lenient unless ``strict`` (then :class:`PayloadError`)."""
        problems: List[str] = []
        if isinstance(data, dict):
            obj = build(cls, data, "", problems)
        else:
            obj = cls()
            problems.append(f"expected an object, got {json_kind(data)}")
            obj.problems = tuple(problems)
        if strict:
            unknown = obj.unknown_keys()
            if obj.problems or unknown:
                raise PayloadError(cls.__name__, obj.problems + tuple(unknown))
        return obj

    def unknown_keys(self) -> List[str]:
        """The paths of every ``extra`` key in this object and the wire objects in it."""
        out = [f"{key}: not a field of {type(self).__name__}" for key in self.extra]
        for f in _spec(type(self))[0]:
            value = getattr(self, f.attr)
            items = enumerate(value) if isinstance(value, list) else ((None, value),)
            for i, item in items:
                if isinstance(item, WireObject):
                    where = f.wire if i is None else f"{f.wire}[{i}]"
                    out.extend(f"{where}.{line}" for line in item.unknown_keys())
        return out

    def to_wire(self) -> Dict[str, Any]:
        """The wire object (camelCase; ``None`` fields left out; ``extra`` keys added back; not a deep copy)."""
        out: Dict[str, Any] = {}
        for f in _spec(type(self))[0]:
            value = getattr(self, f.attr)
            if value is not None:
                out[f.wire] = _unparse(value)
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


class _Field:
    __slots__ = ("attr", "check", "required", "wire")

    def __init__(self, attr: str, wire: str, required: bool, check: _Check) -> None:
        self.attr = attr
        self.wire = wire
        self.required = required
        self.check = check


_BAD = object()  # what a check returns for a value it rejected (already reported)


def json_kind(value: Any) -> str:
    """The JSON name of a value's type, for problem lines."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def build(cls: Type[P], raw: Dict[str, Any], path: str, problems: List[str]) -> P:
    """Build ``cls`` from a dict; problems go to ``problems`` (paths from the top) and, relative to
    the new object, to its own ``problems``."""
    start = len(problems)
    obj = cls()
    fields, names = _spec(cls)
    for f in fields:
        value = raw.get(f.wire)
        if value is None:
            if f.required:
                problems.append(f"{_at(path, f.wire)}: {'null' if f.wire in raw else 'missing'}")
            continue
        parsed = f.check(value, _at(path, f.wire), problems)
        if parsed is not _BAD:
            setattr(obj, f.attr, parsed)
    for key in raw:
        if key not in names:
            obj.extra = {k: v for k, v in raw.items() if k not in names}
            break
    obj.raw = raw
    if len(problems) > start:
        cut = len(path) + 1 if path else 0
        obj.problems = tuple(p[cut:] for p in problems[start:])
    return obj


def _expected(what: str, value: Any, path: str, problems: List[str]) -> Any:
    problems.append(f"{path}: expected {what}, got {json_kind(value)}")
    return _BAD


def _check_str(value: Any, path: str, problems: List[str]) -> Any:
    return value if isinstance(value, str) else _expected("a string", value, path, problems)


def _check_bool(value: Any, path: str, problems: List[str]) -> Any:
    return value if isinstance(value, bool) else _expected("a boolean", value, path, problems)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_number(value: Any, path: str, problems: List[str]) -> Any:
    return value if _is_number(value) else _expected("a number", value, path, problems)


def _check_int(value: Any, path: str, problems: List[str]) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 100.0 from a server that does all its arithmetic in floats
    return _expected("an integer", value, path, problems)


def _check_str_or_number(value: Any, path: str, problems: List[str]) -> Any:
    if isinstance(value, str) or _is_number(value):
        return value
    return _expected("a string or a number", value, path, problems)


def _check_object(value: Any, path: str, problems: List[str]) -> Any:
    return value if isinstance(value, dict) else _expected("an object", value, path, problems)


def _check_any(value: Any, path: str, problems: List[str]) -> Any:
    return value


def _check_time(value: Any, path: str, problems: List[str]) -> Any:
    if not isinstance(value, str):
        return _expected("an ISO-8601 time string", value, path, problems)
    try:
        # fromisoformat takes "Z" only from 3.11; 3 or 6 digits of fraction from 3.7
        datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
    except ValueError:
        problems.append(f"{path}: {value[:40]!r} is not an ISO-8601 time")
        return _BAD
    return value


def _list_of(item: _Check) -> _Check:
    def check(value: Any, path: str, problems: List[str]) -> Any:
        if not isinstance(value, list):
            return _expected("an array", value, path, problems)
        out = []
        for i, v in enumerate(value):
            parsed = item(v, f"{path}[{i}]", problems)
            if parsed is not _BAD:
                out.append(parsed)
        return out

    return check


def _enum(cls: Type[StrEnum]) -> _Check:
    members = {m.value: m for m in cls}
    names = ", ".join(members)

    def check(value: Any, path: str, problems: List[str]) -> Any:
        if not isinstance(value, str):
            return _expected("a string", value, path, problems)
        member = members.get(value)
        if member is None:
            problems.append(f"{path}: {value[:40]!r} is not one of {names}")
            return value
        return member

    return check


def _nested(cls: Type[WireObject]) -> _Check:
    def check(value: Any, path: str, problems: List[str]) -> Any:
        if not isinstance(value, dict):
            return _expected("an object", value, path, problems)
        return build(cls, value, path, problems)

    return check


_SCALARS: Dict[Any, _Check] = {
    str: _check_str,
    bool: _check_bool,
    int: _check_int,
    float: _check_number,
    Any: _check_any,
}


def _checker(tp: Any) -> _Check:
    """The check for one field type (the few forms the classes above use)."""
    origin = get_origin(tp)
    args = [a for a in get_args(tp) if a is not type(None)]
    if origin is Union:
        if len(args) == 1:
            return _checker(args[0])
        enums = [a for a in args if isinstance(a, type) and issubclass(a, StrEnum)]
        if enums and set(args) == {enums[0], str}:
            return _enum(enums[0])
        if set(args) == {str, float}:
            return _check_str_or_number
    elif origin is list:
        return _list_of(_checker(args[0]))
    elif origin is dict:
        return _check_object
    elif tp in _SCALARS:
        return _SCALARS[tp]
    elif isinstance(tp, type) and issubclass(tp, WireObject):
        return _nested(tp)
    raise TypeError(f"no payload check for {tp!r}")  # pragma: no cover - a new field of a new form


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _spec(cls: Type[WireObject]) -> Tuple[Tuple[_Field, ...], FrozenSet[str]]:
    """The fields of a payload class and their wire names, made once per class on first use (a
    race makes them twice, harmlessly); not at import, where the type hints would cost ~0.5 ms a class."""
    spec: Optional[Tuple[Tuple[_Field, ...], FrozenSet[str]]] = cls.__dict__.get("_spec")
    if spec is None:
        spec = _prepare(cls)
        cls._spec = spec
    return spec


def _prepare(cls: Type[WireObject]) -> Tuple[Tuple[_Field, ...], FrozenSet[str]]:
    hints = get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        check = _check_time if f.metadata.get("time") else _checker(hints[f.name])
        wire = f.metadata.get("wire") or _camel(f.name)
        specs.append(_Field(f.name, wire, bool(f.metadata.get("required")), check))
    return tuple(specs), frozenset(s.wire for s in specs)


def _unparse(value: Any) -> Any:
    if isinstance(value, WireObject):
        return value.to_wire()
    if isinstance(value, list):
        return [_unparse(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value

