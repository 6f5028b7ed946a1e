"""Every VHD on-disk structure, declared once (Microsoft "Virtual Hard Disk Image Format
Specification" v1.0, 2006; libvhdi's format notes). All integers big-endian.

Unique ids are shown as big-endian UUIDs (``uuid.UUID(bytes=...)``), as libvhdi shows them; they
are compared as raw bytes. Never ``.compile()`` these structs: they parse untrusted input.
"""

from __future__ import annotations

import datetime as _dt

from ..structs import BIG, U8, U16, U32, U64, Array, Bytes, Struct  # noqa: F401

SECTOR = 512

# -- Hard disk footer (512 bytes; at the end of every VHD, copied at offset 0 in dynamic ones) ----
FOOTER_SIZE = 512
FOOTER_COOKIE = b"conectix"
Footer = Struct(BIG,
    ("cookie", Bytes(8)),
    ("features", U32),  # bit 1 (0x2) reserved, always set
    ("file_format_version", U32),  # 0x00010000
    ("data_offset", U64),  # dynamic header offset; all ones for fixed disks
    ("timestamp", U32),  # seconds since 2000-01-01 00:00:00 UTC
    ("creator_application", Bytes(4)),
    ("creator_version", U32),
    ("creator_host_os", Bytes(4)),
    ("original_size", U64),
    ("current_size", U64),
    ("cylinders", U16),
    ("heads", U8),
    ("sectors_per_track", U8),
    ("disk_type", U32),
    ("checksum", U32),  # one's complement of the byte sum, this field taken as zero
    ("unique_id", Bytes(16)),
    ("saved_state", U8),
    ("reserved", Bytes(427)),
)
assert Footer.sizeof() == FOOTER_SIZE
FOOTER_CHECKSUM_OFFSET = 64
FEATURES_RESERVED = 0x2
FILE_FORMAT_VERSION = 0x00010000
FIXED_DATA_OFFSET = 0xFFFFFFFFFFFFFFFF
DISK_TYPE_FIXED = 2
DISK_TYPE_DYNAMIC = 3
DISK_TYPE_DIFFERENCING = 4
DISK_TYPE_NAMES = {DISK_TYPE_FIXED: "fixed", DISK_TYPE_DYNAMIC: "dynamic", DISK_TYPE_DIFFERENCING: "differencing"}
CREATOR_APPLICATION = b"vhdk"  # vhdkit's own id, as "win ", "qemu", "vpc " are others'
CREATOR_HOST_OS = b"Wi2k"  # what every Windows-readable VHD carries

# -- Dynamic disk header (1024 bytes, at footer.data_offset) --------------------------------------
DYNAMIC_HEADER_SIZE = 1024
DYNAMIC_HEADER_COOKIE = b"cxsparse"
ParentLocatorEntry = Struct(BIG,
    ("platform_code", Bytes(4)),  # b"W2ku" absolute, b"W2ru" relative (UTF-16LE); b"\0\0\0\0" unused
    ("platform_data_space", U32),  # sectors by the spec; Windows writes bytes
    ("platform_data_length", U32),  # bytes
    ("reserved", U32),
    ("platform_data_offset", U64),  # absolute file offset
)
DynamicHeader = Struct(BIG,
    ("cookie", Bytes(8)),
    ("data_offset", U64),  # all ones
    ("table_offset", U64),  # the BAT
    ("header_version", U32),  # 0x00010000
    ("max_table_entries", U32),
    ("block_size", U32),
    ("checksum", U32),
    ("parent_unique_id", Bytes(16)),
    ("parent_timestamp", U32),
    ("reserved", U32),
    ("parent_unicode_name", Bytes(512)),  # UTF-16BE (the locators' data is UTF-16LE)
    ("parent_locators", Array(8, ParentLocatorEntry)),
    ("reserved2", Bytes(256)),
)
assert DynamicHeader.sizeof() == DYNAMIC_HEADER_SIZE
DYNAMIC_HEADER_CHECKSUM_OFFSET = 36
HEADER_VERSION = 0x00010000
PLATFORM_W2KU = b"W2ku"
PLATFORM_W2RU = b"W2ru"
PLATFORM_NONE = b"\0\0\0\0"

# -- BAT and blocks -------------------------------------------------------------------------------
BAT_UNUSED = 0xFFFFFFFF
DEFAULT_BLOCK_SIZE = 2 * 1024 * 1024  # the only size every Microsoft parser handles
MAX_TABLE_ENTRIES = 1 << 22  # 2040 GiB / 512 KiB: far beyond any real VHD
MAX_SIZE = 2040 * (1 << 30)  # qemu's VHD_MAX_SECTORS (0xFF000000) in bytes, rounded as qemu does

EPOCH = _dt.datetime(2000, 1, 1, tzinfo=_dt.timezone.utc)


def checksum(data: bytes | bytearray, field_offset: int) -> int:
    """One's complement of the byte sum with the 4-byte checksum field taken as zero."""
    total = sum(data) - sum(data[field_offset : field_offset + 4])
    return ~total & 0xFFFFFFFF


def bitmap_size(block_size: int) -> int:
    """Bytes of a block's sector bitmap: one bit per sector, rounded up to whole sectors."""
    nbytes = -(-(block_size // SECTOR) // 8)
    return -(-nbytes // SECTOR) * SECTOR


def chs_geometry(size: int) -> tuple[int, int, int]:
    """The specification's CHS for ``size`` (rounded down; capped at 65535/16/255)."""
    total = min(size // SECTOR, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = total // spt
    else:
        spt = 17
        cth = total // spt
        heads = max(4, (cth + 1023) // 1024)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = total // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = total // spt
    return cth // heads, heads, spt


MAX_CHS = (65535, 16, 255)


def chs_for_size(size: int) -> tuple[int, int, int]:
    """specs/architecture.md, "VHD size": the spec's CHS when it gives exactly ``size``, else the maximum, so every
    reader (Windows, libvhdi, dissect, qemu old and new) sees CurrentSize as the size."""
    c, h, s = chs_geometry(size)
    return (c, h, s) if c * h * s * SECTOR == size else MAX_CHS
