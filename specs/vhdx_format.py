"""The VHDX format ([MS-VHDX] v6.00) as executable declarations, in ``construct``.

Written from the specification alone, clause by clause, independently of ``vhdkit/vhdx``: the
tests parse every image vhdkit writes (and the real samples) with these declarations and compare
the fields with what vhdkit reads. It is test-time code: importing construct costs more than a
whole ``vhdkit check``, so the library itself declares its records with the stdlib (structs.py).

Each structure parses from its own bytes; ``*_checksum_ok`` say whether a structure's CRC-32C
(over the structure with its checksum field taken as zero) matches.
"""

from __future__ import annotations

import uuid

import crcmod.predefined
from construct import (
    Adapter,
    Array,
    BitsInteger,
    BitStruct,
    Bytes,
    ByteSwapped,
    Const,
    Enum,
    FlagsEnum,
    Int16ul,
    Int32ul,
    Int64ul,
    PaddedString,
    Padding,
    Pointer,
    Struct,
    Switch,
    this,
)

KiB, MiB = 1 << 10, 1 << 20
_crc32c = crcmod.predefined.mkCrcFun("crc-32c")


class _Guid(Adapter):  # type: ignore[misc]
    """A GUID as Microsoft stores it: the first three groups little-endian."""

    def _decode(self, obj: bytes, context: object, path: str) -> uuid.UUID:
        return uuid.UUID(bytes_le=obj)

    def _encode(self, obj: uuid.UUID, context: object, path: str) -> bytes:
        return obj.bytes_le


Guid = _Guid(Bytes(16))


def crc32c_ok(raw: bytes, length: int) -> bool:
    """The CRC-32C at offset 4 of ``raw[:length]`` is that of those bytes with it zeroed."""
    data = bytearray(raw[:length])
    stored = int.from_bytes(data[4:8], "little")
    data[4:8] = bytes(4)
    return _crc32c(bytes(data)) == stored


# -- 2.2.1 File Type Identifier: at 0, a 64 KiB structure ------------------------------------------
FileTypeIdentifier = Struct(
    "signature" / Const(b"vhdxfile"),
    "creator" / PaddedString(512, "utf-16-le"),  # informational
)

# -- 2.2.2 Header: at 64 KiB and 128 KiB, 4 KiB each ------------------------------------------
HEADER_OFFSETS = (64 * KiB, 128 * KiB)
Header = Struct(
    "signature" / Const(b"head"),
    "checksum" / Int32ul,  # CRC-32C over the 4 KiB header
    "sequence_number" / Int64ul,
    "file_write_guid" / Guid,
    "data_write_guid" / Guid,
    "log_guid" / Guid,  # all zeros: the log is empty
    "log_version" / Int16ul,  # 0
    "version" / Int16ul,  # 1
    "log_length" / Int32ul,  # a multiple of 1 MiB
    "log_offset" / Int64ul,  # a multiple of 1 MiB, at least 1 MiB
    "reserved" / Bytes(4016),
)
HEADER_SIZE = 4 * KiB

# -- 2.2.3 Region Table: at 192 KiB and 256 KiB, 64 KiB each ------------------------------------
REGION_TABLE_OFFSETS = (192 * KiB, 256 * KiB)
REGION_TABLE_SIZE = 64 * KiB
BAT_REGION = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
METADATA_REGION = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
RegionTableEntry = Struct(
    "guid" / Guid,
    "file_offset" / Int64ul,  # a multiple of 1 MiB, at least 1 MiB
    "length" / Int32ul,  # a multiple of 1 MiB
    "required" / Int32ul,  # bit 0: a reader that does not know the region must refuse the file
)
RegionTable = Struct(
    "signature" / Const(b"regi"),
    "checksum" / Int32ul,  # CRC-32C over the 64 KiB table
    "entry_count" / Int32ul,  # at most 2047
    "reserved" / Int32ul,
    "entries" / Array(this.entry_count, RegionTableEntry),
)

# -- 2.3 Log: entries of 4 KiB sectors --------------------------------------------------------
LOG_SECTOR = 4 * KiB
LogEntryHeader = Struct(
    "signature" / Const(b"loge"),
    "checksum" / Int32ul,  # CRC-32C over the whole entry (EntryLength bytes)
    "entry_length" / Int32ul,  # a multiple of 4 KiB
    "tail" / Int32ul,  # offset in the log of the oldest entry the sequence needs
    "sequence_number" / Int64ul,  # non-zero
    "descriptor_count" / Int32ul,
    "reserved" / Int32ul,
    "log_guid" / Guid,  # the header's LogGuid: other entries are not this log's
    "flushed_file_offset" / Int64ul,  # the file was at least this long when the entry was written
    "last_file_offset" / Int64ul,  # the file must be at least this long after replay
)
ZeroDescriptorBody = Struct(  # after the "zero" signature
    "reserved" / Int32ul,
    "zero_length" / Int64ul,  # a multiple of 4 KiB
    "file_offset" / Int64ul,  # a multiple of 4 KiB
    "sequence_number" / Int64ul,  # the entry's
)
DataDescriptorBody = Struct(  # after the "desc" signature
    "trailing_bytes" / Bytes(4),  # bytes 4092..4095 of the update
    "leading_bytes" / Bytes(8),  # bytes 0..7 of the update
    "file_offset" / Int64ul,  # a multiple of 4 KiB
    "sequence_number" / Int64ul,
)
Descriptor = Struct(
    "signature" / Bytes(4),
    "body" / Switch(this.signature, {b"zero": ZeroDescriptorBody, b"desc": DataDescriptorBody}),
)
DataSector = Struct(
    "signature" / Const(b"data"),
    "sequence_high" / Int32ul,  # the sequence number's upper half
    "data" / Bytes(4084),  # bytes 8..4091 of the update
    "sequence_low" / Int32ul,  # and its lower half
)


def _descriptor_area(count: int) -> int:
    """Bytes of the header and descriptors, rounded up to whole log sectors."""
    used = 64 + 32 * count
    return -(-used // LOG_SECTOR) * LOG_SECTOR


LogEntry = Struct(
    "header" / LogEntryHeader,
    "descriptors" / Array(this.header.descriptor_count, Descriptor),
    Padding(lambda ctx: _descriptor_area(ctx.header.descriptor_count) - 64 - 32 * ctx.header.descriptor_count),
    # one data sector per data descriptor, in the descriptors' order
    "data_sectors" / Array(lambda ctx: sum(d.signature == b"desc" for d in ctx.descriptors), DataSector),
)

# -- 2.5 BAT: 64-bit entries, a sector bitmap entry after every chunk ratio payload entries -----
def _bat_entry(**states: int) -> ByteSwapped:
    # BitStruct reads the most significant bit first: a little-endian word, byte-swapped, top down.
    return ByteSwapped(BitStruct(
        "file_offset_mb" / BitsInteger(44),  # bits 20..63: where the block is, in MiB
        "reserved" / BitsInteger(17),  # bits 3..19, zero
        "state" / Enum(BitsInteger(3), **states),  # bits 0..2
    ))


# 2.5.1.1 (UNMAPPED was 5 in spec v0.95; qemu and vhdkit still accept that value)
PayloadBatEntry = _bat_entry(NOT_PRESENT=0, UNDEFINED=1, ZERO=2, UNMAPPED=3, UNMAPPED_V095=5, FULLY_PRESENT=6,
                             PARTIALLY_PRESENT=7)
SectorBitmapBatEntry = _bat_entry(NOT_PRESENT=0, PRESENT=6)  # 2.5.1.2
BAT_ENTRY_SIZE = 8

SECTORS_PER_BITMAP_BLOCK = 1 << 23  # 2.4: a 1 MiB bitmap block maps 2**23 sectors


def chunk_ratio(block_size: int, logical_sector_size: int) -> int:
    return SECTORS_PER_BITMAP_BLOCK * logical_sector_size // block_size


def bat_entry_count(virtual_size: int, block_size: int, logical_sector_size: int, has_parent: bool) -> int:
    """2.5: data blocks plus interleaved bitmap entries (every chunk's, for a differencing disk)."""
    ratio = chunk_ratio(block_size, logical_sector_size)
    data_blocks = -(-virtual_size // block_size)
    bitmap_blocks = -(-data_blocks // ratio)
    return bitmap_blocks * (ratio + 1) if has_parent else data_blocks + (data_blocks - 1) // ratio


# -- 2.6 Metadata region: a 64 KiB table, then the items ---------------------------------------
METADATA_TABLE_SIZE = 64 * KiB
MetadataTableEntry = Struct(
    "item_id" / Guid,
    "offset" / Int32ul,  # from the start of the region; at least 64 KiB unless the item is empty
    "length" / Int32ul,  # at most 1 MiB
    "flags" / FlagsEnum(Int32ul, is_user=1, is_virtual_disk=2, is_required=4),
    "reserved2" / Int32ul,
)
MetadataTable = Struct(
    "signature" / Const(b"metadata"),
    "reserved" / Int16ul,
    "entry_count" / Int16ul,  # at most 2047
    "reserved2" / Bytes(20),
    "entries" / Array(this.entry_count, MetadataTableEntry),
)
FileParameters = Struct(
    "block_size" / Int32ul,  # a power of two, 1 MiB to 256 MiB
    "flags" / FlagsEnum(Int32ul, leave_block_allocated=1, has_parent=2),
)
ParentLocatorEntry = Struct(
    "key_offset" / Int32ul,  # from the start of the locator item
    "value_offset" / Int32ul,
    "key_length" / Int16ul,  # bytes, UTF-16LE
    "value_length" / Int16ul,
    "key" / Pointer(this.key_offset, PaddedString(this.key_length, "utf-16-le")),
    "value" / Pointer(this.value_offset, PaddedString(this.value_length, "utf-16-le")),
)
ParentLocator = Struct(
    "locator_type" / Const(uuid.UUID("B04AEFB7-D19E-4A81-B789-25B8E9445913"), Guid),  # the VHDX locator
    "reserved" / Int16ul,
    "key_value_count" / Int16ul,
    "entries" / Array(this.key_value_count, ParentLocatorEntry),
)
# 2.6.2: the system metadata items, by ItemId, and how each parses
METADATA_ITEMS = {
    uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B"): ("file_parameters", FileParameters),
    uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8"): ("virtual_disk_size", Int64ul),
    uuid.UUID("BECA12AB-B2E6-4523-93EF-C309E000C746"): ("virtual_disk_id", Guid),
    uuid.UUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F"): ("logical_sector_size", Int32ul),  # 512 or 4096
    uuid.UUID("CDA348C7-445D-4471-9CC9-E9885251C556"): ("physical_sector_size", Int32ul),  # 512 or 4096
    uuid.UUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C"): ("parent_locator", ParentLocator),
}
