"""vhdkit.structs, the record declarations every layout module uses; checked against the stdlib
``struct`` module's own packing and against the real files' bytes (the format tests do that),
and the bit fields (the VHDX BAT entry) against the spec's bit positions."""

from __future__ import annotations

import struct
import subprocess
import sys
import uuid

import pytest

from vhdkit import structs as S
from vhdkit.formats import VHD_COOKIE, VHDX_SIGNATURE
from vhdkit.vhd import layout as vhd_layout
from vhdkit.vhdx import layout as vhdx_layout

class Pair(S.Record, byte_order=S.BIG):
    a: int = S.U16
    b: int = S.U8


class Mixed(S.Record, byte_order=S.LITTLE):
    tag: bytes = S.Bytes(4)
    n16: int = S.U16
    n64: int = S.U64
    guid: uuid.UUID = S.GUID_LE
    pairs: list[Pair] = S.Array(2, Pair)
    n32: int = S.U32

GUID = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08")


def test_layout_matches_the_struct_module_byte_for_byte():
    values = dict(tag=b"regi", n16=0xBEEF, n64=0x0102030405060708, guid=GUID,
                  pairs=[dict(a=0x1234, b=7), dict(a=0xFFFF, b=0)], n32=0xCAFEBABE)
    raw = Mixed.build(values)
    expected = (b"regi" + struct.pack("<HQ", 0xBEEF, 0x0102030405060708) + GUID.bytes_le
                + struct.pack(">HB", 0x1234, 7) + struct.pack(">HB", 0xFFFF, 0) + struct.pack("<I", 0xCAFEBABE))
    assert raw == expected
    assert Mixed.sizeof() == len(expected) == 4 + 2 + 8 + 16 + 6 + 4
    assert Mixed.offset_of("guid") == 14 and Mixed.offset_of("n32") == 36
    parsed = Mixed.parse(raw + b"trailing bytes are ignored")
    assert parsed.asdict()["n32"] == values["n32"] and parsed.guid == GUID and parsed.pairs[1].a == 0xFFFF
    assert [p.asdict() for p in parsed.pairs] == values["pairs"]
    assert Mixed.build(parsed) == raw == parsed.to_bytes()
    assert Mixed(**{**values, "pairs": [Pair(**p) for p in values["pairs"]]}) == parsed


def test_the_microsoft_guid_byte_order():
    # [MS-VHDX] 2.6.2: the BAT region GUID as it lies on disk
    assert vhdx_layout.GuidItem.build(GUID) == bytes.fromhex("6677c22d23f600429d64115e9bfd4a08")


@pytest.mark.parametrize("bad", [
    dict(a=1),                            # a field missing
    dict(a=1, b=2, c=3),                  # a field that is not in the record
    dict(a=1 << 16, b=0),                 # does not fit in 16 bits
    dict(a=-1, b=0),
    dict(a="1", b=0),
])
def test_build_refuses_what_the_record_cannot_hold(bad):
    with pytest.raises(ValueError):
        Pair.build(bad)


def test_bytes_and_arrays_must_have_their_exact_length():
    base = dict(tag=b"regi", n16=0, n64=0, guid=GUID, pairs=[dict(a=0, b=0)] * 2, n32=0)
    for field, value in (("tag", b"reg"), ("tag", b"regio"), ("pairs", [dict(a=0, b=0)] * 3), ("guid", b"x" * 16)):
        with pytest.raises(ValueError):
            Mixed.build({**base, field: value})


def test_parse_refuses_short_input_with_a_value_error():
    with pytest.raises(ValueError, match="needs 40 bytes"):
        Mixed.parse(bytes(39))


def test_records_are_typed_immutable_values():
    rec = Pair.parse(b"\x00\x05\x09")
    assert (rec.a, rec.b) == (5, 9) and list(rec) == [5, 9]
    with pytest.raises(AttributeError):
        rec.missing  # noqa: B018
    with pytest.raises(AttributeError, match="immutable"):
        rec.a = 6
    changed = rec.replace(a=6)
    assert (changed.a, rec.a) == (6, 5) and changed.to_bytes() == b"\x00\x06\x09"
    with pytest.raises(TypeError):
        rec.replace(c=1)
    with pytest.raises(TypeError):
        Pair(a=1)  # every field is given


def test_a_record_is_declared_once():
    with pytest.raises(TypeError):
        class Again(Pair, byte_order=S.BIG):  # noqa: F841 - fields of a declared record again
            c: int = S.U8
    with pytest.raises(TypeError):
        class NoOrder(S.Record):  # noqa: F841
            a: int = S.U8

    class Named(Pair):  # behaviour only: the same declaration
        @property
        def total(self) -> int:
            return self.a + self.b

    named = Named.parse(b"\x00\x05\x09")
    assert named.total == 14 and named == Pair.parse(b"\x00\x05\x09") and Named.size == 3


def test_the_bat_entry_bit_field_is_the_specs():
    """[MS-VHDX] 2.5.1: State bits 0-2, Reserved bits 3-19, FileOffsetMB bits 20-63."""
    entry = vhdx_layout.BatEntry
    assert [(b.name, b.shift, b.width) for b in entry.parts] == [
        ("state", 0, 3), ("reserved", 3, 17), ("file_offset_mb", 20, 44)]
    assert entry.width == 64
    value = entry.pack(state=vhdx_layout.PayloadBlockState.FULLY_PRESENT, file_offset_mb=0x123456789AB)
    assert value == 0x123456789AB << 20 | 6
    assert struct.pack("<Q", value)[0] == 6  # the state is in the entry's first byte on disk
    assert entry.unpack(value) == {"state": 6, "reserved": 0, "file_offset_mb": 0x123456789AB}
    assert entry.reserved.of(value | 1 << 3) == 1 and entry.reserved.of(value) == 0
    for bad in (dict(state=8), dict(file_offset_mb=1 << 44), dict(oops=1)):
        with pytest.raises(ValueError):
            entry.pack(**bad)


def test_detection_signatures_are_the_layouts_own():
    assert VHDX_SIGNATURE == vhdx_layout.FILE_IDENTIFIER_SIGNATURE
    assert VHD_COOKIE == vhd_layout.FOOTER_COOKIE


def test_opening_a_raw_file_loads_no_format_package(tmp_path):
    """Start-up is most of a small command's time: a format's code loads only when a file of it is met."""
    raw = tmp_path / "disk.raw"
    raw.write_bytes(bytes(4096))
    code = ("import sys, vhdkit\n"
            f"with vhdkit.open({str(raw)!r}) as d: assert d.format_name == 'raw'\n"
            "loaded = sorted(m for m in sys.modules if m.startswith(('vhdkit.vhd', 'construct')))\n"
            "print(loaded)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
