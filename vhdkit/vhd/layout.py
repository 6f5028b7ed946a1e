"""Every VHD on-disk structure, declared once (Microsoft "Virtual Hard Disk Image Format
Specification" v1.0, 2006; libvhdi's format notes). All integers big-endian.

Unique ids are shown as big-endian UUIDs (``Guid(bytes=...)``), as libvhdi shows them; they
are compared as raw bytes. Never ``.compile()`` these structs: they parse untrusted input.
"""

from __future__ import annotations


from ..runtime_types import IntEnum
from ..structs import BIG, U8, U16, U32, U64, Array, Bytes, Record

SECTOR = 512

# -- Hard disk footer (512 bytes; at the end of every VHD, copied at offset 0 in dynamic ones) ----
FOOTER_SIZE = 512
FOOTER_COOKIE = b"conectix"


class Footer(Record, byte_order=BIG):
    """Hard Disk Footer Format."""

    cookie: bytes = Bytes(8)
    features: int = U32  # bit 1 (0x2) reserved, always set
    file_format_version: int = U32  # 0x00010000
    data_offset: int = U64  # dynamic header offset; all ones for fixed disks
    timestamp: int = U32  # seconds since 2000-01-01 00:00:00 UTC
    creator_application: bytes = Bytes(4)
    creator_version: int = U32
    creator_host_os: bytes = Bytes(4)
    original_size: int = U64
    current_size: int = U64
    cylinders: int = U16
    heads: int = U8
    sectors_per_track: int = U8
    disk_type: int = U32  # a DiskType
    checksum: int = U32  # one's complement of the byte sum, this field taken as zero
    unique_id: bytes = Bytes(16)
    saved_state: int = U8
    reserved: bytes = Bytes(427)


assert Footer.size == FOOTER_SIZE
FOOTER_CHECKSUM_OFFSET = Footer.offset_of("checksum")
FEATURES_RESERVED = 0x2
FILE_FORMAT_VERSION = 0x00010000
FIXED_DATA_OFFSET = 0xFFFFFFFFFFFFFFFF


class DiskType(IntEnum):
    """The footer's Disk Type (0, 1, 5 and 6 are deprecated or reserved: refused)."""

    FIXED = 2
    DYNAMIC = 3
    DIFFERENCING = 4

    @property
    def spec_name(self) -> str:
        return self.name.lower()

CREATOR_APPLICATION = b"vhdk"  # vhdkit's own id, as "win ", "qemu", "vpc " are others'
CREATOR_HOST_OS = b"Wi2k"  # what every Windows-readable VHD carries

# -- Dynamic disk header (1024 bytes, at footer.data_offset) --------------------------------------
DYNAMIC_HEADER_SIZE = 1024
DYNAMIC_HEADER_COOKIE = b"cxsparse"


class ParentLocatorEntry(Record, byte_order=BIG):
    """Dynamic Disk Header, Parent Locator Entry (24 bytes)."""

    platform_code: bytes = Bytes(4)  # b"W2ku" absolute, b"W2ru" relative (UTF-16LE); b"\0\0\0\0" unused
    platform_data_space: int = U32  # sectors by the spec; Windows writes bytes
    platform_data_length: int = U32  # bytes
    reserved: int = U32
    platform_data_offset: int = U64  # absolute file offset


class DynamicHeader(Record, byte_order=BIG):
    """Dynamic Disk Header Format."""

    cookie: bytes = Bytes(8)
    data_offset: int = U64  # all ones
    table_offset: int = U64  # the BAT
    header_version: int = U32  # 0x00010000
    max_table_entries: int = U32
    block_size: int = U32
    checksum: int = U32
    parent_unique_id: bytes = Bytes(16)
    parent_timestamp: int = U32
    reserved: int = U32
    parent_unicode_name: bytes = Bytes(512)  # UTF-16BE (the locators' data is UTF-16LE)
    parent_locators: list[ParentLocatorEntry] = Array(8, ParentLocatorEntry)
    reserved2: bytes = Bytes(256)


assert DynamicHeader.size == DYNAMIC_HEADER_SIZE
DYNAMIC_HEADER_CHECKSUM_OFFSET = DynamicHeader.offset_of("checksum")
HEADER_VERSION = 0x00010000
PLATFORM_W2KU = b"W2ku"
PLATFORM_W2RU = b"W2ru"
PLATFORM_NONE = b"\0\0\0\0"

# -- BAT and blocks -------------------------------------------------------------------------------
BAT_UNUSED = 0xFFFFFFFF
DEFAULT_BLOCK_SIZE = 2 * 1024 * 1024  # the only size every Microsoft parser handles
MAX_TABLE_ENTRIES = 1 << 22  # 2040 GiB / 512 KiB: far beyond any real VHD
MAX_SIZE = 2040 * (1 << 30)  # qemu's VHD_MAX_SECTORS (0xFF000000) in bytes, rounded as qemu does

EPOCH_UNIX_SECONDS = 946_684_800  # time stamps count seconds from 2000-01-01 00:00:00 UTC; this is it in Unix time


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


def with_checksum(raw: bytes | bytearray, field_offset: int) -> bytes:
    """``raw`` (a footer or a dynamic header) with its checksum field filled in."""
    out = bytearray(raw)
    out[field_offset : field_offset + 4] = checksum(out, field_offset).to_bytes(4, "big")
    return bytes(out)


def build_dynamic_header(*, table_offset: int, max_table_entries: int, block_size: int, parent_unique_id: bytes,
                         parent_name: str, locators: list[tuple[bytes, int, int]],
                         data_offset: int = FIXED_DATA_OFFSET, header_version: int = HEADER_VERSION,
                         parent_timestamp: int = 0, reserved: int = 0, reserved2: bytes = bytes(256)) -> bytes:
    """A dynamic header, checksummed. ``locators``: (platform code, data length, file offset) of
    each used entry; PlatformDataSpace is written in bytes (the length rounded up to sectors), as
    Windows writes it (the specification says sectors); unused entries are zero."""
    entries = [dict(platform_code=code, platform_data_space=-(-length // SECTOR) * SECTOR,
                    platform_data_length=length, reserved=0, platform_data_offset=offset)
               for code, length, offset in locators]
    entries += [dict(platform_code=PLATFORM_NONE, platform_data_space=0, platform_data_length=0, reserved=0,
                     platform_data_offset=0)] * (8 - len(entries))
    name = parent_name.encode("utf-16-be")[:512]
    raw = DynamicHeader.build(dict(
        cookie=DYNAMIC_HEADER_COOKIE, data_offset=data_offset, table_offset=table_offset,
        header_version=header_version, max_table_entries=max_table_entries, block_size=block_size, checksum=0,
        parent_unique_id=parent_unique_id, parent_timestamp=parent_timestamp, reserved=reserved,
        parent_unicode_name=name + bytes(512 - len(name)), parent_locators=entries, reserved2=reserved2))
    return with_checksum(raw, DYNAMIC_HEADER_CHECKSUM_OFFSET)
