"""vhdkit.guid.Guid against the standard library's uuid.UUID, value by value."""

from __future__ import annotations

import copy
import os
import pickle
import uuid

import pytest

from vhdkit.guid import Guid

VALUES = [0, 1, (1 << 128) - 1, 0x2DC27766F62342009D64115E9BFD4A08] + [
    int.from_bytes(os.urandom(16), "big") for _ in range(200)]


@pytest.mark.parametrize("value", VALUES)
def test_every_form_matches_uuid(value):
    theirs = uuid.UUID(int=value)
    for ours in (Guid(int=value), Guid(str(theirs)), Guid(bytes=theirs.bytes), Guid(bytes_le=theirs.bytes_le),
                 Guid("{" + str(theirs).upper() + "}"), Guid(theirs.urn), Guid(theirs.hex)):
        assert (str(ours), ours.hex, ours.int, ours.bytes, ours.bytes_le, ours.version) == (
            str(theirs), theirs.hex, theirs.int, theirs.bytes, theirs.bytes_le, theirs.version)
        assert ours == theirs and theirs == ours and not (ours != theirs) and hash(ours) == hash(theirs)
        assert {theirs: 1}[ours] == 1 and ours in {theirs}
        assert ours.to_uuid() == theirs and isinstance(ours.to_uuid(), uuid.UUID)


def test_order_and_inequality_follow_the_value():
    a, b = Guid(int=5), Guid(int=6)
    assert a < b <= b and b > a >= a and a != b and a < uuid.UUID(int=6) and not (a == uuid.UUID(int=6))
    assert sorted([b, a]) == [a, b]
    assert (a == "00000000-0000-0000-0000-000000000005") is False  # text is not a GUID, as with uuid


def test_random_guids_are_version_4_and_differ():
    made = {Guid.random() for _ in range(1000)}
    assert len(made) == 1000
    assert all(g.version == 4 and uuid.UUID(str(g)).variant == uuid.RFC_4122 for g in made)


@pytest.mark.parametrize("kwargs,error", [
    ({"hex": "1234"}, ValueError), ({"bytes": b"x" * 15}, ValueError), ({"bytes_le": b"x" * 17}, ValueError),
    ({"int": 1 << 128}, ValueError), ({"int": -1}, ValueError), ({}, TypeError),
    ({"hex": "0" * 32, "int": 0}, TypeError), ({"hex": "g" * 32}, ValueError),
])
def test_bad_input_is_refused_as_uuid_refuses_it(kwargs, error):
    with pytest.raises(error):
        Guid(**kwargs)


def test_immutable_copyable_picklable():
    g = Guid.random()
    with pytest.raises(TypeError):
        g.int = 5
    assert copy.copy(g) == g and copy.deepcopy(g) == g and pickle.loads(pickle.dumps(g)) == g
    assert repr(g) == f"Guid('{g}')"
