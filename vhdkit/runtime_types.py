"""typing's NamedTuple and Protocol for run time, without importing typing.

Importing typing costs a command about 9 ms on the machines vhdkit is measured on (it loads re,
enum, contextlib and functools, and compiles patterns), and a typing.NamedTuple class costs more
than a collections.namedtuple one (each field's annotation is checked and made a ForwardRef). The
modules a command loads therefore name typing only where a type checker reads it::

    TYPE_CHECKING = False                 # the checker takes this branch, Python never does
    if TYPE_CHECKING:
        from typing import Any, Iterator

and take these two classes from here. A type checker sees typing's own (the first branch below),
so declarations check exactly as before.
"""

from __future__ import annotations

import collections

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple as NamedTuple
    from typing import Protocol as Protocol
else:
    # What typing.NamedTuple refuses in a class body: namedtuple's own machinery.
    _PROHIBITED = frozenset({"__new__", "__init__", "__slots__", "__getnewargs__", "_fields", "_field_defaults",
                             "_make", "_replace", "_asdict", "_source"})

    class _NamedTupleMeta(type):
        def __new__(mcls, name, bases, namespace):
            if namespace.get("_is_root"):
                return super().__new__(mcls, name, bases, namespace)
            fields = tuple(namespace.get("__annotations__", {}))  # in declaration order
            defaults = [namespace[f] for f in fields if f in namespace]
            with_default = [f for f in fields if f in namespace]
            if with_default and fields[len(fields) - len(with_default):] != tuple(with_default):
                raise TypeError(f"{name}: a field without a default follows one with a default")
            cls = collections.namedtuple(name, fields, defaults=defaults, module=namespace.get("__module__"))
            for key, value in namespace.items():
                if key in _PROHIBITED:
                    raise AttributeError(f"cannot overwrite NamedTuple attribute {key}")
                if key not in fields and key not in ("__module__", "__annotations__"):
                    setattr(cls, key, value)  # methods, properties, the docstring, __qualname__
            cls.__annotations__ = namespace.get("__annotations__", {})
            return cls

    class NamedTuple(metaclass=_NamedTupleMeta):
        """``class P(NamedTuple): x: int; y: int = 0`` makes a collections.namedtuple class."""

        _is_root = True

    class Protocol:
        """A structural type's declaration: at run time only a base class (nothing checks
        isinstance against one in vhdkit)."""

        __slots__ = ()
