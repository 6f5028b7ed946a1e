"""Every VHDX on-disk structure, declared once, in [MS-VHDX] v6.00 order and field names.

All integers are little-endian; GUIDs are Microsoft mixed-endian (``uuid.UUID(bytes_le=...)``).
Signatures are parsed as bytes and checked by the caller, so a bad one becomes a
CorruptImageError that names the structure.

Bulk tables (the BAT, sector bitmaps) are not declared here: they are read as arrays of
integers with array/memoryview, a record per entry would be far too slow.
"""

from __future__ import annotations

import uuid

from ..structs import GUID_LE, LITTLE, U8, U16, U32, U64, Bytes, Scalar, Struct  # noqa: F401
from ..units import KiB, MiB, TiB

Guid = Scalar(LITTLE, GUID_LE)
NULL_GUID = uuid.UUID(int=0)

# -- 2.1 Layout: fixed positions inside the 1 MiB header section ----------------------------------
FILE_IDENTIFIER_OFFSET = 0
HEADER_OFFSETS = (64 * KiB, 128 * KiB)
REGION_TABLE_OFFSETS = (192 * KiB, 256 * KiB)
HEADER_SECTION_SIZE = 1 * MiB
ALIGNMENT = 1 * MiB  # log, regions, payload and sector bitmap blocks

# -- 2.2.1 File Type Identifier (64 KiB structure; 8-byte signature + 512-byte creator) -----------
FILE_IDENTIFIER_SIGNATURE = b"vhdxfile"
FileIdentifier = Struct(LITTLE,
    ("signature", Bytes(8)),
    ("creator", Bytes(512)),  # UTF-16LE, NUL-padded; informational only
)

# -- 2.2.2 Headers (4 KiB each; CRC-32C over all 4 KiB with the checksum zeroed) -----------------
HEADER_SIGNATURE = b"head"
HEADER_SIZE = 4 * KiB
Header = Struct(LITTLE,
    ("signature", Bytes(4)),
    ("checksum", U32),
    ("sequence_number", U64),
    ("file_write_guid", GUID_LE),
    ("data_write_guid", GUID_LE),
    ("log_guid", GUID_LE),
    ("log_version", U16),
    ("version", U16),
    ("log_length", U32),
    ("log_offset", U64),
    ("reserved", Bytes(4016)),
)
assert Header.sizeof() == HEADER_SIZE

# -- 2.2.3 Region Table (64 KiB; CRC-32C over all 64 KiB) -----------------------------------------
REGION_TABLE_SIGNATURE = b"regi"
REGION_TABLE_SIZE = 64 * KiB
REGION_TABLE_MAX_ENTRIES = 2047
RegionTableHeader = Struct(LITTLE,
    ("signature", Bytes(4)),
    ("checksum", U32),
    ("entry_count", U32),
    ("reserved", U32),
)
RegionTableEntry = Struct(LITTLE,
    ("guid", GUID_LE),
    ("file_offset", U64),
    ("length", U32),
    ("required", U32),
)
BAT_REGION_GUID = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
METADATA_REGION_GUID = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")

# -- 2.3 Log ------------------------------------------------------------------------------------
LOG_SECTOR_SIZE = 4 * KiB
LOG_ENTRY_SIGNATURE = b"loge"
ZERO_DESCRIPTOR_SIGNATURE = b"zero"
DATA_DESCRIPTOR_SIGNATURE = b"desc"
DATA_SECTOR_SIGNATURE = b"data"
DESCRIPTOR_SIZE = 32
# 2.3.1.1 Entry Header. The spec's prose gives DescriptorCount 8 bytes, but its layout (and every
# writer) has a 4-byte count followed by 4 reserved bytes; the header is 64 bytes either way.
LogEntryHeader = Struct(LITTLE,
    ("signature", Bytes(4)),
    ("checksum", U32),
    ("entry_length", U32),
    ("tail", U32),
    ("sequence_number", U64),
    ("descriptor_count", U32),
    ("reserved", U32),
    ("log_guid", GUID_LE),
    ("flushed_file_offset", U64),
    ("last_file_offset", U64),
)
assert LogEntryHeader.sizeof() == 64
# 2.3.1.2 Zero Descriptor
ZeroDescriptor = Struct(LITTLE,
    ("signature", Bytes(4)),
    ("reserved", U32),
    ("zero_length", U64),
    ("file_offset", U64),
    ("sequence_number", U64),
)
# 2.3.1.3 Data Descriptor: the first 8 and last 4 bytes of the 4 KiB update live here.
DataDescriptor = Struct(LITTLE,
    ("signature", Bytes(4)),
    ("trailing_bytes", Bytes(4)),
    ("leading_bytes", Bytes(8)),
    ("file_offset", U64),
    ("sequence_number", U64),
)
# 2.3.1.4 Data Sector: bytes 8..4091 of the update between the split sequence number.
DataSector = Struct(LITTLE,
    ("signature", Bytes(4)),
    ("sequence_high", U32),
    ("data", Bytes(4084)),
    ("sequence_low", U32),
)
assert ZeroDescriptor.sizeof() == DataDescriptor.sizeof() == DESCRIPTOR_SIZE
assert DataSector.sizeof() == LOG_SECTOR_SIZE
DESCRIPTORS_IN_FIRST_SECTOR = 126  # the 64-byte header takes two descriptor slots
DESCRIPTORS_PER_SECTOR = 128

# -- 2.5 BAT ------------------------------------------------------------------------------------
BAT_ENTRY_SIZE = 8
BAT_STATE_MASK = 0x7  # bits 0-2
BAT_RESERVED_MASK = 0xFFFF8  # bits 3-19 must be zero
BAT_OFFSET_SHIFT = 20  # bits 20-63: FileOffsetMB
# 2.5.1.1 payload block states
PAYLOAD_BLOCK_NOT_PRESENT = 0
PAYLOAD_BLOCK_UNDEFINED = 1
PAYLOAD_BLOCK_ZERO = 2
PAYLOAD_BLOCK_UNMAPPED = 3
PAYLOAD_BLOCK_UNMAPPED_V095 = 5  # UNMAPPED in spec v0.95; qemu accepts it, so do we
PAYLOAD_BLOCK_FULLY_PRESENT = 6
PAYLOAD_BLOCK_PARTIALLY_PRESENT = 7
# 2.5.1.2 sector bitmap block states
SB_BLOCK_NOT_PRESENT = 0
SB_BLOCK_PRESENT = 6
PAYLOAD_STATE_NAMES = {
    PAYLOAD_BLOCK_NOT_PRESENT: "not_present",
    PAYLOAD_BLOCK_UNDEFINED: "undefined",
    PAYLOAD_BLOCK_ZERO: "zero",
    PAYLOAD_BLOCK_UNMAPPED: "unmapped",
    PAYLOAD_BLOCK_UNMAPPED_V095: "unmapped",
    PAYLOAD_BLOCK_FULLY_PRESENT: "fully_present",
    PAYLOAD_BLOCK_PARTIALLY_PRESENT: "partially_present",
}
SECTOR_BITMAP_BLOCK_SIZE = 1 * MiB
SECTORS_PER_BITMAP_BLOCK = 1 << 23  # 2.4: each 1 MiB bitmap block covers 2**23 sectors

# -- 2.6 Metadata Region ------------------------------------------------------------------------
METADATA_TABLE_SIGNATURE = b"metadata"
METADATA_TABLE_SIZE = 64 * KiB
METADATA_TABLE_MAX_ENTRIES = 2047
METADATA_ITEM_MAX_LENGTH = 1 * MiB
MetadataTableHeader = Struct(LITTLE,
    ("signature", Bytes(8)),
    ("reserved", U16),
    ("entry_count", U16),
    ("reserved2", Bytes(20)),
)
MetadataTableEntry = Struct(LITTLE,
    ("item_id", GUID_LE),
    ("offset", U32),
    ("length", U32),
    ("flags", U32),  # bit 0 IsUser, bit 1 IsVirtualDisk, bit 2 IsRequired
    ("reserved2", U32),
)
METADATA_FLAG_IS_USER = 0x1
METADATA_FLAG_IS_VIRTUAL_DISK = 0x2
METADATA_FLAG_IS_REQUIRED = 0x4

# 2.6.2 known items
FILE_PARAMETERS_GUID = uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
VIRTUAL_DISK_SIZE_GUID = uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
VIRTUAL_DISK_ID_GUID = uuid.UUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
LOGICAL_SECTOR_SIZE_GUID = uuid.UUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
PHYSICAL_SECTOR_SIZE_GUID = uuid.UUID("CDA348C7-445D-4471-9CC9-E9885251C556")
PARENT_LOCATOR_GUID = uuid.UUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
KNOWN_METADATA_ITEMS = {
    FILE_PARAMETERS_GUID: "file_parameters",
    VIRTUAL_DISK_SIZE_GUID: "virtual_disk_size",
    VIRTUAL_DISK_ID_GUID: "virtual_disk_id",
    LOGICAL_SECTOR_SIZE_GUID: "logical_sector_size",
    PHYSICAL_SECTOR_SIZE_GUID: "physical_sector_size",
    PARENT_LOCATOR_GUID: "parent_locator",
}

# 2.6.2.1 File Parameters
FileParameters = Struct(LITTLE,
    ("block_size", U32),
    ("flags", U32),  # bit 0 LeaveBlockAllocated, bit 1 HasParent
)
FILE_PARAMETERS_LEAVE_BLOCK_ALLOCATED = 0x1
FILE_PARAMETERS_HAS_PARENT = 0x2
MIN_BLOCK_SIZE = 1 * MiB
MAX_BLOCK_SIZE = 256 * MiB
# 2.6.2.2 - 2.6.2.5
VirtualDiskSize = Scalar(LITTLE, U64)
VirtualDiskId = Scalar(LITTLE, GUID_LE)
LogicalSectorSize = Scalar(LITTLE, U32)
PhysicalSectorSize = Scalar(LITTLE, U32)
MAX_VIRTUAL_DISK_SIZE = 64 * TiB
VALID_SECTOR_SIZES = (512, 4096)

# 2.6.2.6 Parent Locator
ParentLocatorHeader = Struct(LITTLE,
    ("locator_type", GUID_LE),
    ("reserved", U16),
    ("key_value_count", U16),
)
ParentLocatorEntry = Struct(LITTLE,
    ("key_offset", U32),
    ("value_offset", U32),
    ("key_length", U16),
    ("value_length", U16),
)
VHDX_PARENT_LOCATOR_TYPE = uuid.UUID("B04AEFB7-D19E-4A81-B789-25B8E9445913")
# 2.6.2.6.3: the order a reader tries the path keys in
PARENT_PATH_KEYS = ("relative_path", "volume_path", "absolute_win32_path")
