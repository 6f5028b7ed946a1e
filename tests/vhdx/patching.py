"""Test-side VHDX surgery, written from the spec with struct only (not vhdkit's parser), so a
test that patches an image does not depend on the code it tests."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

import crcmod.predefined

crc32c = crcmod.predefined.mkCrcFun("crc-32c")

HEADER_OFFSETS = (0x10000, 0x20000)
REGION_OFFSETS = (0x30000, 0x40000)
BAT_GUID = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
METADATA_GUID = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
LOGICAL_SECTOR_SIZE_GUID = uuid.UUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
PHYSICAL_SECTOR_SIZE_GUID = uuid.UUID("CDA348C7-445D-4471-9CC9-E9885251C556")
FILE_PARAMETERS_GUID = uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
VIRTUAL_DISK_SIZE_GUID = uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
PARENT_LOCATOR_GUID = uuid.UUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
VHDX_LOCATOR_TYPE = uuid.UUID("B04AEFB7-D19E-4A81-B789-25B8E9445913")


def fix_crc(buf: bytearray, start: int, length: int) -> None:
    buf[start + 4 : start + 8] = b"\0\0\0\0"
    struct.pack_into("<I", buf, start + 4, crc32c(bytes(buf[start : start + length])))


def regions(data: bytes) -> dict[uuid.UUID, tuple[int, int]]:
    count = struct.unpack_from("<I", data, REGION_OFFSETS[0] + 8)[0]
    out = {}
    for i in range(count):
        at = REGION_OFFSETS[0] + 16 + 32 * i
        guid = uuid.UUID(bytes_le=data[at : at + 16])
        offset, length = struct.unpack_from("<QI", data, at + 16)
        out[guid] = (offset, length)
    return out


def metadata_items(data: bytes) -> dict[uuid.UUID, tuple[int, int]]:
    """item GUID -> (absolute file offset, length)."""
    base, _ = regions(data)[METADATA_GUID]
    count = struct.unpack_from("<H", data, base + 10)[0]
    out = {}
    for i in range(count):
        at = base + 32 + 32 * i
        guid = uuid.UUID(bytes_le=data[at : at + 16])
        offset, length = struct.unpack_from("<II", data, at + 16)
        out[guid] = (base + offset, length)
    return out


def current_header(data: bytes) -> int:
    """Index (0/1) of the header with the larger sequence number."""
    seqs = [struct.unpack_from("<Q", data, o + 8)[0] for o in HEADER_OFFSETS]
    return 0 if seqs[0] >= seqs[1] else 1


class Image:
    """A whole image in memory, patched and written back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = bytearray(path.read_bytes())

    def save(self) -> None:
        self.path.write_bytes(self.data)

    def u32(self, offset: int, value: int) -> None:
        struct.pack_into("<I", self.data, offset, value)

    def u64(self, offset: int, value: int) -> None:
        struct.pack_into("<Q", self.data, offset, value)

    def item(self, guid: uuid.UUID) -> int:
        return metadata_items(bytes(self.data))[guid][0]

    def bat_offset(self) -> int:
        return regions(bytes(self.data))[BAT_GUID][0]

    def bat_entries(self, count: int) -> list[int]:
        at = self.bat_offset()
        return list(struct.unpack_from(f"<{count}Q", self.data, at))

    def set_bat_entries(self, entries: list[int], region_length: int) -> None:
        at = self.bat_offset()
        self.data[at : at + region_length] = bytes(region_length)
        struct.pack_into(f"<{len(entries)}Q", self.data, at, *entries)
