"""vhdkit.structs, the record declarations every layout module uses; checked against the stdlib
``struct`` module's own packing and against the real files' bytes (the format tests do that)."""

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

Pair = S.Struct(S.BIG, ("a", S.U16), ("b", S.U8))
Mixed = S.Struct(
    S.LITTLE,
    ("tag", S.Bytes(4)),
    ("n16", S.U16),
    ("n64", S.U64),
    ("guid", S.GUID_LE),
    ("pairs", S.Array(2, Pair)),
    ("n32", S.U32),
)
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
    assert parsed == values and parsed.guid == GUID and parsed.pairs[1].a == 0xFFFF
    assert Mixed.build(parsed) == raw


def test_the_microsoft_guid_byte_order():
    # [MS-VHDX] 2.6.2: the BAT region GUID as it lies on disk
    assert vhdx_layout.Guid.build(GUID) == bytes.fromhex("6677c22d23f600429d64115e9bfd4a08")


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


def test_records_read_as_attributes_and_keys():
    rec = Pair.parse(b"\x00\x05\x09")
    assert (rec.a, rec["b"]) == (5, 9)
    with pytest.raises(AttributeError):
        rec.missing  # noqa: B018


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
