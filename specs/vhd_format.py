"""The VHD format (Microsoft's "Virtual Hard Disk Image Format Specification", 2006) as executable
declarations, in ``construct``: written from the specification alone, independently of
``vhdkit/vhd``, for the tests to parse what vhdkit writes (and the real samples) a second way.
Every integer is big-endian.
"""

from __future__ import annotations

from construct import (
    Array,
    Bytes,
    Const,
    Enum,
    Int8ub,
    Int16ub,
    Int32ub,
    Int64ub,
    PaddedString,
    Struct,
)

SECTOR = 512


def checksum_ok(raw: bytes, field_offset: int, stored: int) -> bool:
    """The one's complement of the sum of the structure's bytes, its checksum field taken as zero."""
    total = sum(raw) - sum(raw[field_offset : field_offset + 4])
    return (~total & 0xFFFFFFFF) == stored


# Hard Disk Footer: the last 512 bytes of every VHD; dynamic and differencing disks copy it at 0.
Footer = Struct(
    "cookie" / Const(b"conectix"),
    "features" / Int32ub,  # 0x2 (reserved) is always set
    "file_format_version" / Int32ub,  # 0x00010000
    "data_offset" / Int64ub,  # the dynamic header; all ones for a fixed disk
    "timestamp" / Int32ub,  # seconds since 2000-01-01 00:00:00 UTC
    "creator_application" / Bytes(4),
    "creator_version" / Int32ub,
    "creator_host_os" / Bytes(4),
    "original_size" / Int64ub,
    "current_size" / Int64ub,  # the disk's size in bytes
    "disk_geometry" / Struct("cylinders" / Int16ub, "heads" / Int8ub, "sectors_per_track" / Int8ub),
    "disk_type" / Enum(Int32ub, NONE=0, FIXED=2, DYNAMIC=3, DIFFERENCING=4),
    "checksum" / Int32ub,
    "unique_id" / Bytes(16),
    "saved_state" / Int8ub,
    "reserved" / Bytes(427),
)
FOOTER_SIZE = 512
FOOTER_CHECKSUM_AT = 64

# Parent locator entry: where a differencing disk's parent path is, and in which form.
ParentLocatorEntry = Struct(
    "platform_code" / Bytes(4),  # "W2ru" relative / "W2ku" absolute Windows path (UTF-16LE); zeros: unused
    "platform_data_space" / Int32ub,  # sectors by the specification (Windows writes bytes)
    "platform_data_length" / Int32ub,  # bytes of the path
    "reserved" / Int32ub,
    "platform_data_offset" / Int64ub,  # absolute file offset
)

# Dynamic Disk Header: 1024 bytes at the footer's data offset.
DynamicHeader = Struct(
    "cookie" / Const(b"cxsparse"),
    "data_offset" / Int64ub,  # unused: all ones
    "table_offset" / Int64ub,  # the BAT
    "header_version" / Int32ub,  # 0x00010000
    "max_table_entries" / Int32ub,  # BAT entries: one per block
    "block_size" / Int32ub,  # 2 MiB by default
    "checksum" / Int32ub,
    "parent_unique_id" / Bytes(16),
    "parent_timestamp" / Int32ub,
    "reserved" / Int32ub,
    "parent_unicode_name" / PaddedString(512, "utf-16-be"),
    "parent_locators" / Array(8, ParentLocatorEntry),
    "reserved2" / Bytes(256),
)
DYNAMIC_HEADER_SIZE = 1024
DYNAMIC_HEADER_CHECKSUM_AT = 36

# The BAT: one 32-bit sector number per block (the block's sector bitmap, then its data);
# 0xFFFFFFFF: not allocated.
def bat(entries: int) -> Array:
    return Array(entries, Int32ub)


BAT_UNUSED = 0xFFFFFFFF
