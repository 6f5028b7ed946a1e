"""typing's NamedTuple and Protocol, and enum's Enum, IntEnum and IntFlag, for run time without
importing typing or enum.

Importing typing costs a command about 9 ms on the machines vhdkit is measured on (it loads re,
enum, contextlib and functools, and compiles patterns); a typing.NamedTuple class checks every
annotation (making ForwardRefs) and collections.namedtuple compiles each class's __new__ with eval:
0.15-0.2 ms a class, and a check loads fourteen. The modules a command loads therefore name typing
only where a type checker reads it::

    TYPE_CHECKING = False                 # the checker takes this branch, Python never does
    if TYPE_CHECKING:
        from typing import Any, Iterator

and take these two classes from here. A type checker sees typing's own (the first branch below),
so declarations check exactly as before; at run time the classes behave as collections.namedtuple's
(tests/test_runtime_types.py compares them).

enum is the same story at a smaller scale: importing it costs about 2 ms and each class 0.2 ms,
for the seven vhdkit declares on the way to opening a disk (extent states, lock modes, VHDX block
states and flags, VHD disk types). Enum, IntEnum and IntFlag here make members that are instances
of their class (ints or strs where mixed in), singletons found by value (``PayloadBlockState(6)``,
ValueError otherwise), with enum's name, value, repr, str, format, hash, iteration, copying and
pickling; the tests compare each with enum's. Not here: auto(), Flag's composite members and
their names (an IntFlag's ``|`` and ``&`` give plain ints), ``__members__``, functional creation.

`lazy_attributes` makes a package's ``__getattr__`` (PEP 562) for names it exports but loads only
when first used, so that importing the package does not import what few of its users need.

"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any
    from enum import Enum as Enum
    from enum import IntEnum as IntEnum
    from enum import IntFlag as IntFlag
    from typing import NamedTuple as NamedTuple
    from typing import Protocol as Protocol
else:
    try:
        from _collections import _tuplegetter  # what collections.namedtuple's fields are (CPython)
    except ImportError:  # pragma: no cover - other interpreters
        from operator import itemgetter as _itemgetter

        def _tuplegetter(index, doc):
            return property(_itemgetter(index), doc=doc)

    # What typing.NamedTuple refuses in a class body: namedtuple's own machinery.
    _PROHIBITED = frozenset({"__new__", "__init__", "__slots__", "__getnewargs__", "_fields", "_field_defaults",
                             "_make", "_replace", "_asdict", "_source"})
    _MISSING = object()
    _tuple_new = tuple.__new__

    def _make_new(name, fields, defaults):
        """__new__ for the fields, written once instead of compiled per class: collections.namedtuple
        compiles a lambda with eval for each (about 0.15 ms apiece at start-up)."""
        count, index = len(fields), {f: i for i, f in enumerate(fields)}
        required = count - len(defaults)

        def __new__(cls, *args, **kwargs):
            if not kwargs and len(args) == count:
                return _tuple_new(cls, args)  # the common call, as fast as namedtuple's
            if len(args) > count:
                raise TypeError(f"{name}.__new__() takes {count + 1} positional arguments but {len(args) + 1} "
                                "were given")
            values = [*args, *[_MISSING] * (count - len(args))]
            for key, value in kwargs.items():
                at = index.get(key)
                if at is None:
                    raise TypeError(f"{name}.__new__() got an unexpected keyword argument {key!r}")
                if at < len(args):
                    raise TypeError(f"{name}.__new__() got multiple values for argument {key!r}")
                values[at] = value
            missing = []
            for at in range(len(args), count):
                if values[at] is _MISSING:
                    if at >= required:
                        values[at] = defaults[at - required]
                    else:
                        missing.append(repr(fields[at]))
            if missing:
                raise TypeError(f"{name}.__new__() missing {len(missing)} required positional argument"
                                f"{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
            return _tuple_new(cls, values)

        __new__.__qualname__ = f"{name}.__new__"
        return __new__

    def _namedtuple(name, fields, defaults, module):
        """collections.namedtuple's class, field for field, without eval."""
        count = len(fields)
        repr_format = "(" + ", ".join(f"{f}=%r" for f in fields) + ")"

        @classmethod
        def _make(cls, iterable):
            result = _tuple_new(cls, iterable)
            if len(result) != count:
                raise TypeError(f"Expected {count} arguments, got {len(result)}")
            return result

        def _replace(self, /, **changes):
            result = self._make(map(changes.pop, fields, self))
            if changes:
                raise ValueError(f"Got unexpected field names: {list(changes)!r}")
            return result

        def __repr__(self):
            return self.__class__.__name__ + repr_format % self

        def _asdict(self):
            return dict(zip(self._fields, self))

        def __getnewargs__(self):
            return tuple(self)

        namespace = {
            "__doc__": f"{name}({', '.join(fields)})", "__slots__": (), "_fields": fields,
            "_field_defaults": dict(zip(fields[count - len(defaults):], defaults)),
            "__new__": _make_new(name, fields, defaults), "_make": _make, "_replace": _replace,
            "__repr__": __repr__, "_asdict": _asdict, "__getnewargs__": __getnewargs__, "__match_args__": fields,
            "__module__": module,
        }
        for at, field in enumerate(fields):
            namespace[field] = _tuplegetter(at, f"Alias for field number {at}")
        return type(name, (tuple,), namespace)

    class _NamedTupleMeta(type):
        def __new__(mcls, name, bases, namespace):
            if namespace.get("_is_root"):
                return super().__new__(mcls, name, bases, namespace)
            fields = tuple(namespace.get("__annotations__", {}))  # in declaration order
            defaults = tuple(namespace[f] for f in fields if f in namespace)
            if fields[len(fields) - len(defaults):] != tuple(f for f in fields if f in namespace):
                raise TypeError(f"{name}: a field without a default follows one with a default")
            cls = _namedtuple(name, fields, defaults, namespace.get("__module__"))
            for key, value in namespace.items():
                if key in _PROHIBITED:
                    raise AttributeError(f"cannot overwrite NamedTuple attribute {key}")
                if key not in fields and key not in ("__module__", "__annotations__"):
                    setattr(cls, key, value)  # methods, properties, the docstring, __qualname__
            cls.__annotations__ = namespace.get("__annotations__", {})
            return cls

    class NamedTuple(metaclass=_NamedTupleMeta):
        """``class P(NamedTuple): x: int; y: int = 0`` makes the class collections.namedtuple would."""

        _is_root = True

    class Protocol:
        """A structural type's declaration: at run time only a base class (nothing checks
        isinstance against one in vhdkit)."""

        __slots__ = ()

    class _EnumType(type):
        """Makes each member of a class body an instance of the class, as enum.EnumType does."""

        def __new__(mcls, name, bases, namespace):
            values = {key: value for key, value in namespace.items()
                      if not key.startswith("_") and not callable(value)
                      and not isinstance(value, (property, classmethod, staticmethod))}
            cls = super().__new__(mcls, name, bases, {k: v for k, v in namespace.items() if k not in values})
            for method in ("__repr__", "__str__", "__format__", "__reduce_ex__"):
                if method not in namespace:  # enum's own, not the mixed-in str's or int's
                    for base in cls.__mro__:
                        if base.__dict__.get("_is_enum_root") and method in base.__dict__:
                            type.__setattr__(cls, method, base.__dict__[method])
                            break
            members: dict[str, object] = {}
            by_value: dict[object, object] = {}
            for key, value in values.items():
                member = by_value.get(value)
                if member is None:  # a value seen before makes an alias of the first name, as in enum
                    member = cls._new_member(value)
                    member._name_, member._value_ = key, value
                    by_value[value] = member
                type.__setattr__(cls, key, member)
                members[key] = member
            cls._member_map_, cls._value2member_map_ = members, by_value
            return cls

        def __call__(cls, value):
            try:
                return cls._value2member_map_[value]
            except (KeyError, TypeError):
                return cls._missing_(value)

        def __iter__(cls):
            return iter(cls._value2member_map_.values())  # each value once: aliases are not listed

        def __len__(cls):
            return len(cls._value2member_map_)

        def __contains__(cls, member):
            return isinstance(member, cls) and member._name_ in cls._member_map_

        def __setattr__(cls, name, value):
            if name in cls.__dict__.get("_member_map_", ()):
                raise AttributeError(f"cannot reassign member {name!r}")
            super().__setattr__(name, value)

    class Enum(metaclass=_EnumType):
        """Members: ``RED = 1`` in the class body. Mixed with str or int (``class S(str, Enum)``),
        members are those values too."""

        _is_enum_root = True
        _member_map_: dict = {}
        _value2member_map_: dict = {}

        @classmethod
        def _new_member(cls, value):
            data_type = next((b for b in cls.__mro__[1:] if b in (int, str)), None)
            return object.__new__(cls) if data_type is None else data_type.__new__(cls, value)

        @classmethod
        def _missing_(cls, value):
            raise ValueError(f"{value!r} is not a valid {cls.__qualname__}")

        @property
        def name(self):
            return self._name_

        @property
        def value(self):
            return self._value_

        def __repr__(self):
            return f"<{type(self).__name__}.{self._name_}: {self._value_!r}>"

        def __str__(self):
            return f"{type(self).__name__}.{self._name_}"

        def __format__(self, spec):
            return format(str(self), spec)

        def __reduce_ex__(self, protocol):
            return type(self), (self._value_,)

        def __hash__(self):
            return hash(self._name_)  # a mixed-in str's or int's comes first, as in enum

        def __copy__(self):
            return self

        def __deepcopy__(self, memo):
            return self

    class IntEnum(int, Enum):
        """Members are ints; str() and format() are the int's, as enum.IntEnum's (3.11)."""

        _is_enum_root = True

        def __str__(self):
            return int.__repr__(self)

        def __format__(self, spec):
            return int.__format__(self, spec)

    class IntFlag(IntEnum):
        """Bit flags: members are ints; a combination is a plain int (enum's would be a member)."""

        _is_enum_root = True

        @classmethod
        def _missing_(cls, value):
            if isinstance(value, int) and not isinstance(value, bool):
                member = int.__new__(cls, value)
                member._name_, member._value_ = None, value
                return member
            return super()._missing_(value)


def import_module(name: str) -> Any:
    """The module ``name`` (absolute), imported if it is not yet: importlib.import_module without
    importing importlib, which brings warnings (~1 ms of every command that loads one lazily)."""
    module = sys.modules.get(name)
    if module is None:
        __import__(name)
        module = sys.modules[name]
    return module


def lazy_attributes(namespace: dict[str, object], where: dict[str, str]) -> Callable[[str], object]:
    """A module's ``__getattr__`` (PEP 562): ``where`` maps each name to "module:attribute" (just
    "module" if the attribute has the name's name); loaded on first use, then an ordinary attribute."""

    def __getattr__(name: str) -> object:
        try:
            module, _, attribute = where[name].partition(":")
        except KeyError:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}") from None
        value = getattr(import_module(module), attribute or name)
        namespace[name] = value
        return value

    return __getattr__
