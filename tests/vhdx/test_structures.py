"""Single structures from libvhdi's test data (samples/libvhdi-structs): every field parses,
checksums verify, and build(parse(x)) == x."""

from __future__ import annotations

import uuid

import pytest

from vhdkit.errors import CorruptImageError
from vhdkit.vhdx import layout as L
from vhdkit.vhdx.headers import parse_header
from vhdkit.vhdx.metadata import MetadataEntry

from ..conftest import samples_dir, unavailable


def struct_bytes(name: str) -> bytes:
    path = samples_dir() / "libvhdi-structs" / f"{name}.1"
    if not path.exists():
        unavailable(f"{path} not found")
    return path.read_bytes()


def test_file_identifier():
    raw = struct_bytes("file_identifier")
    ident = L.FileIdentifier.parse(raw)
    assert ident.signature == L.FILE_IDENTIFIER_SIGNATURE
    assert ident.creator.decode("utf-16-le").rstrip("\0") == "Microsoft Windows 10.0.19041.0"
    assert L.FileIdentifier.build(ident) == raw[: L.FileIdentifier.sizeof()]


def test_image_header_checksum_and_fields():
    raw = struct_bytes("image_header")
    h = parse_header(raw, 1)
    assert h.sequence_number == 6
    assert int.from_bytes(raw[4:8], "little") == 0x9F69B235
    assert (h.version, h.log_version) == (1, 0)
    assert (h.log_offset, h.log_length) == (1 << 20, 1 << 20)
    assert h.log_is_empty
    assert h.sealed() == raw  # rebuilt with its checksum: byte-identical


def test_image_header_with_one_flipped_bit_fails_its_checksum():
    raw = bytearray(struct_bytes("image_header"))
    raw[2000] ^= 0x04
    with pytest.raises(CorruptImageError, match="checksum"):
        parse_header(bytes(raw), 1)


def test_region_table_header_and_entries():
    raw = struct_bytes("region_table")  # truncated to 80 bytes: the CRC cannot be checked
    head = L.RegionTableHeader.parse(raw)
    assert head.signature == L.REGION_TABLE_SIGNATURE and head.entry_count == 2
    entries = [L.RegionTableEntry.parse(raw[16 + 32 * i :]) for i in range(2)]
    assert {e.guid for e in entries} == {L.BAT_REGION_GUID, L.METADATA_REGION_GUID}
    assert all(e.required == 1 and e.length == 1 << 20 for e in entries)
    assert L.RegionTableHeader.build(head) + b"".join(L.RegionTableEntry.build(e) for e in entries) == raw
    assert struct_bytes("region_table_header") == raw[:16]
    assert struct_bytes("region_table_entry") == raw[16:48]
    assert entries[0].guid == L.BAT_REGION_GUID and entries[0].file_offset == 3 << 20


def test_metadata_table_header_and_entry():
    head = L.MetadataTableHeader.parse(struct_bytes("metadata_table_header"))
    assert head.signature == L.METADATA_TABLE_SIGNATURE and head.entry_count == 5
    raw = struct_bytes("metadata_table_entry")
    e = L.MetadataTableEntry.parse(raw)
    entry = MetadataEntry.parse(raw)
    assert entry.name == "file_parameters"
    assert (entry.offset, entry.length) == (65536, 8)
    assert entry.is_required and not entry.is_virtual_disk and not entry.is_user  # as [MS-VHDX] 2.6.2.1 says
    assert L.MetadataTableEntry.build(e) == raw


def test_parent_locator_header_and_entry():
    raw = struct_bytes("parent_locator_header")
    head = L.ParentLocatorHeader.parse(raw)
    assert head.locator_type == L.VHDX_PARENT_LOCATOR_TYPE
    assert head.key_value_count == 5
    assert L.ParentLocatorHeader.build(head) == raw
    entry_raw = struct_bytes("parent_locator_entry")
    entry = L.ParentLocatorEntry.parse(entry_raw)
    assert (entry.key_offset, entry.value_offset, entry.key_length, entry.value_length) == (80, 108, 28, 76)
    assert L.ParentLocatorEntry.build(entry) == entry_raw
    assert entry.value_offset == entry.key_offset + entry.key_length  # value follows its key


def test_guids_are_mixed_endian():
    guid = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
    assert L.GuidItem.build(guid) == bytes.fromhex("6677c22d23f600429d64115e9bfd4a08")
    assert L.GuidItem.parse(bytes.fromhex("6677c22d23f600429d64115e9bfd4a08")) == guid
