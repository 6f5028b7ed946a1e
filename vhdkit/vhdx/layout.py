"""Every VHDX on-disk structure, declared once, in [MS-VHDX] v6.00 order and field names.

All integers are little-endian; GUIDs are Microsoft mixed-endian (``Guid(bytes_le=...)``).
Signatures are parsed as bytes and checked by the caller, so a bad one becomes a
CorruptImageError that names the structure.

Bulk tables (the BAT, sector bitmaps) are not declared here: they are read as arrays of
integers with array/memoryview, a record per entry would be far too slow.
"""

from __future__ import annotations


from ..guid import Guid
from ..runtime_types import IntEnum, IntFlag
from ..structs import GUID_LE, LITTLE, U16, U32, U64, Bits, BitField, Bytes, Record, Scalar
from ..units import GiB, KiB, MiB, TiB

GuidItem = Scalar(LITTLE, GUID_LE)  # a metadata item that is one GUID (virtual disk id)
NULL_GUID = Guid(int=0)

# -- 2.1 Layout: fixed positions inside the 1 MiB header section ----------------------------------
FILE_IDENTIFIER_OFFSET = 0
HEADER_OFFSETS = (64 * KiB, 128 * KiB)
REGION_TABLE_OFFSETS = (192 * KiB, 256 * KiB)
HEADER_SECTION_SIZE = 1 * MiB
ALIGNMENT = 1 * MiB  # log, regions, payload and sector bitmap blocks

# -- 2.2.1 File Type Identifier (64 KiB structure; 8-byte signature + 512-byte creator) -----------
FILE_IDENTIFIER_SIGNATURE = b"vhdxfile"


class FileIdentifier(Record, byte_order=LITTLE):
    """2.2.1 File Type Identifier (its first 520 bytes; the rest of the 64 KiB is unused)."""

    signature: bytes = Bytes(8)
    creator: bytes = Bytes(512)  # UTF-16LE, NUL-padded; informational only


# -- 2.2.2 Headers (4 KiB each; CRC-32C over all 4 KiB with the checksum zeroed) -----------------
HEADER_SIGNATURE = b"head"
HEADER_SIZE = 4 * KiB


class Header(Record, byte_order=LITTLE):
    """2.2.2 Header: 4 KiB, CRC-32C over all of it with Checksum zeroed."""

    signature: bytes = Bytes(4)
    checksum: int = U32
    sequence_number: int = U64
    file_write_guid: Guid = GUID_LE
    data_write_guid: Guid = GUID_LE
    log_guid: Guid = GUID_LE
    log_version: int = U16
    version: int = U16
    log_length: int = U32
    log_offset: int = U64
    reserved: bytes = Bytes(4016)


assert Header.size == HEADER_SIZE

# -- 2.2.3 Region Table (64 KiB; CRC-32C over all 64 KiB) -----------------------------------------
REGION_TABLE_SIGNATURE = b"regi"
REGION_TABLE_SIZE = 64 * KiB
REGION_TABLE_MAX_ENTRIES = 2047


class RegionTableHeader(Record, byte_order=LITTLE):
    """2.2.3.1 Region Table Header (then up to 2047 entries, in a 64 KiB table)."""

    signature: bytes = Bytes(4)
    checksum: int = U32
    entry_count: int = U32
    reserved: int = U32


class RegionTableEntry(Record, byte_order=LITTLE):
    """2.2.3.2 Region Table Entry."""

    guid: Guid = GUID_LE
    file_offset: int = U64
    length: int = U32
    required: int = U32


BAT_REGION_GUID = Guid("2DC27766-F623-4200-9D64-115E9BFD4A08")
METADATA_REGION_GUID = Guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")

# -- 2.3 Log ------------------------------------------------------------------------------------
LOG_SECTOR_SIZE = 4 * KiB
LOG_ENTRY_SIGNATURE = b"loge"
ZERO_DESCRIPTOR_SIGNATURE = b"zero"
DATA_DESCRIPTOR_SIGNATURE = b"desc"
DATA_SECTOR_SIGNATURE = b"data"
DESCRIPTOR_SIZE = 32


class LogEntryHeader(Record, byte_order=LITTLE):
    """2.3.1.1 Entry Header. The spec's prose gives DescriptorCount 8 bytes, but its layout (and
    every writer) has a 4-byte count followed by 4 reserved bytes; 64 bytes either way."""

    signature: bytes = Bytes(4)
    checksum: int = U32
    entry_length: int = U32
    tail: int = U32
    sequence_number: int = U64
    descriptor_count: int = U32
    reserved: int = U32
    log_guid: Guid = GUID_LE
    flushed_file_offset: int = U64
    last_file_offset: int = U64


assert LogEntryHeader.sizeof() == 64


class ZeroDescriptor(Record, byte_order=LITTLE):
    """2.3.1.2 Zero Descriptor: ZeroLength bytes of zeros at FileOffset."""

    signature: bytes = Bytes(4)
    reserved: int = U32
    zero_length: int = U64
    file_offset: int = U64
    sequence_number: int = U64


class DataDescriptor(Record, byte_order=LITTLE):
    """2.3.1.3 Data Descriptor: the first 8 and last 4 bytes of a 4 KiB update."""

    signature: bytes = Bytes(4)
    trailing_bytes: bytes = Bytes(4)
    leading_bytes: bytes = Bytes(8)
    file_offset: int = U64
    sequence_number: int = U64


class DataSector(Record, byte_order=LITTLE):
    """2.3.1.4 Data Sector: bytes 8..4091 of the update between the split sequence number."""

    signature: bytes = Bytes(4)
    sequence_high: int = U32
    data: bytes = Bytes(4084)
    sequence_low: int = U32


assert ZeroDescriptor.sizeof() == DataDescriptor.sizeof() == DESCRIPTOR_SIZE
assert DataSector.sizeof() == LOG_SECTOR_SIZE
DESCRIPTORS_IN_FIRST_SECTOR = 126  # the 64-byte header takes two descriptor slots
DESCRIPTORS_PER_SECTOR = 128

# -- 2.5 BAT ------------------------------------------------------------------------------------
BAT_ENTRY_SIZE = 8


class BatEntry(BitField):
    """2.5.1: one 64-bit BAT entry, low bits first."""

    state = Bits(3)  # a PayloadBlockState or SectorBitmapState
    reserved = Bits(17)  # must be zero
    file_offset_mb = Bits(44)  # where the block is, in MiB from the start of the file


class PayloadBlockState(IntEnum):
    """2.5.1.1"""

    NOT_PRESENT = 0
    UNDEFINED = 1
    ZERO = 2
    UNMAPPED = 3
    UNMAPPED_V095 = 5  # UNMAPPED in spec v0.95; qemu accepts it, so do we
    FULLY_PRESENT = 6
    PARTIALLY_PRESENT = 7

    @property
    def spec_name(self) -> str:
        """The state as reports name it ("fully_present"; both UNMAPPED values are "unmapped")."""
        return "unmapped" if self is PayloadBlockState.UNMAPPED_V095 else self.name.lower()


class SectorBitmapState(IntEnum):
    """2.5.1.2"""

    NOT_PRESENT = 0
    PRESENT = 6


SECTOR_BITMAP_BLOCK_SIZE = 1 * MiB
SECTORS_PER_BITMAP_BLOCK = 1 << 23  # 2.4: each 1 MiB bitmap block covers 2**23 sectors

# -- 2.6 Metadata Region ------------------------------------------------------------------------
METADATA_TABLE_SIGNATURE = b"metadata"
METADATA_TABLE_SIZE = 64 * KiB
METADATA_TABLE_MAX_ENTRIES = 2047
METADATA_ITEM_MAX_LENGTH = 1 * MiB


class MetadataTableHeader(Record, byte_order=LITTLE):
    """2.6.1.1 Metadata Table Header."""

    signature: bytes = Bytes(8)
    reserved: int = U16
    entry_count: int = U16
    reserved2: bytes = Bytes(20)


class MetadataTableEntry(Record, byte_order=LITTLE):
    """2.6.1.2 Metadata Table Entry."""

    item_id: Guid = GUID_LE
    offset: int = U32
    length: int = U32
    flags: int = U32  # MetadataFlags
    reserved2: int = U32


class MetadataFlags(IntFlag):
    """2.6.1.2: the flags of a metadata table entry."""

    IS_USER = 0x1
    IS_VIRTUAL_DISK = 0x2
    IS_REQUIRED = 0x4


# 2.6.2 known items
FILE_PARAMETERS_GUID = Guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
VIRTUAL_DISK_SIZE_GUID = Guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
VIRTUAL_DISK_ID_GUID = Guid("BECA12AB-B2E6-4523-93EF-C309E000C746")
LOGICAL_SECTOR_SIZE_GUID = Guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
PHYSICAL_SECTOR_SIZE_GUID = Guid("CDA348C7-445D-4471-9CC9-E9885251C556")
PARENT_LOCATOR_GUID = Guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
KNOWN_METADATA_ITEMS = {
    FILE_PARAMETERS_GUID: "file_parameters",
    VIRTUAL_DISK_SIZE_GUID: "virtual_disk_size",
    VIRTUAL_DISK_ID_GUID: "virtual_disk_id",
    LOGICAL_SECTOR_SIZE_GUID: "logical_sector_size",
    PHYSICAL_SECTOR_SIZE_GUID: "physical_sector_size",
    PARENT_LOCATOR_GUID: "parent_locator",
}


class FileParameters(Record, byte_order=LITTLE):
    """2.6.2.1 File Parameters."""

    block_size: int = U32
    flags: int = U32  # FileParametersFlags


class FileParametersFlags(IntFlag):
    """2.6.2.1"""

    LEAVE_BLOCK_ALLOCATED = 0x1
    HAS_PARENT = 0x2


MIN_BLOCK_SIZE = 1 * MiB
MAX_BLOCK_SIZE = 256 * MiB
# 2.6.2.2 - 2.6.2.5
VirtualDiskSize = Scalar(LITTLE, U64)
VirtualDiskId = Scalar(LITTLE, GUID_LE)
LogicalSectorSize = Scalar(LITTLE, U32)
PhysicalSectorSize = Scalar(LITTLE, U32)
MAX_VIRTUAL_DISK_SIZE = 64 * TiB
# The largest file a valid VHDX can need: the header section, three regions whose lengths are u32
# (log, metadata, BAT: < 4 GiB each), 64 TiB of payload and a 1 MiB sector bitmap per 4 GiB chunk
# (16 GiB at most). Nothing in a file (a log entry's LastFileOffset, a descriptor) may reach past it.
MAX_FILE_SIZE = MAX_VIRTUAL_DISK_SIZE + 32 * GiB
VALID_SECTOR_SIZES = (512, 4096)


class ParentLocatorHeader(Record, byte_order=LITTLE):
    """2.6.2.6.1 Parent Locator Header."""

    locator_type: Guid = GUID_LE
    reserved: int = U16
    key_value_count: int = U16


class ParentLocatorEntry(Record, byte_order=LITTLE):
    """2.6.2.6.2 Parent Locator Entry: offsets from the start of the locator, lengths in bytes (UTF-16LE)."""

    key_offset: int = U32
    value_offset: int = U32
    key_length: int = U16
    value_length: int = U16


VHDX_PARENT_LOCATOR_TYPE = Guid("B04AEFB7-D19E-4A81-B789-25B8E9445913")
# 2.6.2.6.3: the order a reader tries the path keys in
PARENT_PATH_KEYS = ("relative_path", "volume_path", "absolute_win32_path")
