"""vhdkit.runtime_types.NamedTuple against typing.NamedTuple (collections.namedtuple underneath)."""

from __future__ import annotations

import copy
import pickle
import typing

import pytest

from vhdkit.runtime_types import NamedTuple


class Ours(NamedTuple):
    """A point with a label."""

    x: int
    y: int
    label: str = "p"
    weight: float = 1.0

    @property
    def total(self) -> int:
        return self.x + self.y

    def scaled(self, k: int) -> Ours:
        return self._replace(x=self.x * k, y=self.y * k)


class Theirs(typing.NamedTuple):
    """A point with a label."""

    x: int
    y: int
    label: str = "p"
    weight: float = 1.0

    @property
    def total(self) -> int:
        return self.x + self.y

    def scaled(self, k: int) -> Theirs:
        return self._replace(x=self.x * k, y=self.y * k)


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
    assert Ours.__qualname__ == "Ours" and issubclass(Ours, tuple) and not hasattr(Ours(1, 2), "__dict__")
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
