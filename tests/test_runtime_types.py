"""vhdkit.runtime_types.NamedTuple against typing.NamedTuple (collections.namedtuple underneath)."""

from __future__ import annotations

import copy
import pickle
import typing

import pytest

from vhdkit.runtime_types import NamedTuple


def _point(base):
    """The same declaration over either implementation."""

    class Point(base):
        """A point with a label."""

        x: int
        y: int
        label: str = "p"
        weight: float = 1.0

        @property
        def total(self) -> int:
            return self.x + self.y

        def scaled(self, k: int) -> Point:
            return self._replace(x=self.x * k, y=self.y * k)

    return Point


Ours, Theirs = _point(NamedTuple), _point(typing.NamedTuple)
QUALNAMES = Ours.__qualname__, Theirs.__qualname__  # as each made them from the class body
Ours.__qualname__, Theirs.__qualname__ = "Ours", "Theirs"  # module-level names: instances pickle


CALLS = [((1, 2), {}), ((1, 2, "q"), {}), ((1, 2, "q", 3.0), {}), ((1,), {"y": 2}), ((), {"x": 1, "y": 2}),
         ((), {"y": 2, "x": 1, "weight": 0.5}), ((1, 2), {"weight": 2.0})]
BAD_CALLS = [((), {}), ((1,), {}), ((1, 2, 3, 4, 5), {}), ((1, 2), {"z": 1}), ((1, 2), {"x": 1}),
             ((1,), {"label": "q"})]


def _outcome(cls, args, kwargs):
    try:
        value = cls(*args, **kwargs)
    except TypeError as e:
        return ("TypeError", type(e).__name__)
    return (tuple(value), repr(value).replace(cls.__name__, "C"), value._asdict(), value.total, tuple(value.scaled(2)),
            value.label, value[-1], hash(value) == hash(tuple(value)), value == tuple(value))


@pytest.mark.parametrize("args,kwargs", CALLS + BAD_CALLS)
def test_construction_and_use_match_typing(args, kwargs):
    assert _outcome(Ours, args, kwargs) == _outcome(Theirs, args, kwargs)


def test_class_level_attributes_match_typing():
    assert Ours._fields == Theirs._fields == Ours.__match_args__
    assert Ours._field_defaults == Theirs._field_defaults
    assert Ours.__doc__ == Theirs.__doc__ and Ours.__module__ == Theirs.__module__
    assert QUALNAMES == ("_point.<locals>.Point",) * 2
    assert issubclass(Ours, tuple) and not hasattr(Ours(1, 2), "__dict__")
    assert Ours.x.__doc__ == Theirs.x.__doc__


def test_replace_make_copy_pickle_and_immutability():
    p = Ours(1, 2)
    assert p._replace(label="z") == (1, 2, "z", 1.0) and Ours._make([5, 6, "a", 0.0]) == (5, 6, "a", 0.0)
    with pytest.raises(ValueError):
        p._replace(z=1)
    with pytest.raises(TypeError):
        Ours._make([1, 2, 3])
    with pytest.raises(AttributeError):
        p.x = 5
    assert pickle.loads(pickle.dumps(p)) == p and copy.copy(p) == p and copy.deepcopy(p) == p
    assert type(copy.copy(p)) is Ours and type(p._replace()) is Ours


def test_a_field_without_default_after_one_with_is_refused():
    with pytest.raises(TypeError):
        class Bad(NamedTuple):  # noqa: F841
            a: int = 1
            b: int
    with pytest.raises(AttributeError):
        class Worse(NamedTuple):  # noqa: F841
            a: int

            def _asdict(self) -> dict:
                return {}


# -- Enum, IntEnum, IntFlag against enum's ---------------------------------------------------------

def _declare(enum_module):
    """The same declarations over either implementation: each kind vhdkit uses."""
    Enum, IntEnum, IntFlag = enum_module.Enum, enum_module.IntEnum, enum_module.IntFlag

    class State(str, Enum):
        DATA = "data"
        ZERO = "zero"

    class Mode(Enum):
        """Lock modes."""

        WRITE = (frozenset({0, 1}), frozenset({1}))
        READ = (frozenset({0}), frozenset({1}))

        @property
        def held(self) -> frozenset:
            return self.value[0]

    class Block(IntEnum):
        NOT_PRESENT = 0
        UNMAPPED = 3
        UNMAPPED_OLD = 3  # an alias
        FULL = 6

        @property
        def spec_name(self) -> str:
            return self.name.lower()

    class Flags(IntFlag):
        USER = 1
        REQUIRED = 4

    classes = State, Mode, Block, Flags
    for cls in classes:  # module-level names, so that members pickle (by qualified name)
        cls.__qualname__ = f"{enum_module.__name__.replace('.', '_')}_{cls.__name__}"
        globals()[cls.__qualname__] = cls
    return classes


def _observe(classes) -> list:
    import enum as std

    State, Mode, Block, Flags = classes
    seen: list = []
    for cls in classes:
        members = list(cls)
        seen.append((cls.__name__, cls.__doc__ if cls is Mode else None, len(cls), [m.name for m in members]))
        for m in members:
            seen.append((repr(m), str(m), f"{m}", f"{m:>20}", m.name, m.value, cls(m.value) is m, m in cls,
                         isinstance(m, cls), hash(m) == hash(m.value) if cls is not Mode else hash(m) == hash(m.name),
                         pickle.loads(pickle.dumps(m)) is m, copy.copy(m) is m, copy.deepcopy(m) is m, bool(m)))
        for wrong in (99, "nope", None, [1]):
            try:
                cls(wrong)
                seen.append((cls.__name__, wrong, "accepted"))
            except ValueError:
                seen.append((cls.__name__, wrong, "ValueError"))
            except TypeError:
                seen.append((cls.__name__, wrong, "TypeError"))
    seen.append((State.DATA == "data", {"data": 1}[State.DATA], State("zero") is State.ZERO, Mode.WRITE.held))
    seen.append((Block.UNMAPPED_OLD is Block.UNMAPPED, Block(3).name, Block.FULL == 6, Block.FULL + 1,
                 sorted([Block.FULL, Block.NOT_PRESENT]) == [0, 6], 6 in tuple(Block), Block(6).spec_name))
    seen.append((int(Flags.USER | Flags.REQUIRED), bool(5 & Flags.REQUIRED), bool(1 & Flags.REQUIRED),
                 Flags.USER == 1, int(Flags(5)), isinstance(Flags(5), Flags)))
    try:
        Block.FULL = 7  # type: ignore[misc]
        seen.append("reassigned")
    except AttributeError:
        seen.append("refused")
    assert std  # the standard module is only the other side of the comparison
    return seen


def test_enums_behave_as_enum_does():
    import enum as std

    from vhdkit import runtime_types

    ours, theirs = _observe(_declare(runtime_types)), _observe(_declare(std))
    assert len(ours) == len(theirs)
    for mine, reference in zip(ours, theirs):
        assert mine == reference
