"""Write VHDX log entries into an image, from [MS-VHDX] 2.3.1 with struct only (independent of
vhdkit's log code), so replay can be checked against qemu's replay of the same bytes."""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from .patching import HEADER_OFFSETS, Image, fix_crc

SECTOR = 4096


@dataclass
class Desc:
    file_offset: int
    data: bytes | None = None  # 4096 bytes, or None for a zero descriptor
    zero_length: int = SECTOR


def build_entry(seq: int, log_guid: uuid.UUID, tail: int, descs: list[Desc], flushed: int, last: int) -> bytes:
    desc_sectors = -(-(len(descs) + 2) // 128)
    data_descs = [d for d in descs if d.data is not None]
    length = (desc_sectors + len(data_descs)) * SECTOR
    buf = bytearray(length)
    struct.pack_into("<4sIIIQII16sQQ", buf, 0, b"loge", 0, length, tail, seq, len(descs), 0,
                     log_guid.bytes_le, flushed, last)
    data_at = desc_sectors * SECTOR
    for i, d in enumerate(descs):
        at = (i + 2) * 32
        if d.data is None:
            struct.pack_into("<4sIQQQ", buf, at, b"zero", 0, d.zero_length, d.file_offset, seq)
        else:
            assert len(d.data) == SECTOR
            struct.pack_into("<4s4s8sQQ", buf, at, b"desc", d.data[-4:], d.data[:8], d.file_offset, seq)
            struct.pack_into("<4sI", buf, data_at, b"data", seq >> 32)
            buf[data_at + 8 : data_at + SECTOR - 4] = d.data[8:-4]
            struct.pack_into("<I", buf, data_at + SECTOR - 4, seq & 0xFFFFFFFF)
            data_at += SECTOR
    fix_crc(buf, 0, length)
    return bytes(buf)


def log_region(img: Image) -> tuple[int, int]:
    at = HEADER_OFFSETS[0]
    length, offset = struct.unpack_from("<IQ", img.data, at + 68)
    return offset, length


def put_entry(img: Image, position: int, entry: bytes) -> None:
    """Write ``entry`` at ``position`` in the log ring, wrapping at its end."""
    offset, length = log_region(img)
    for i in range(0, len(entry), SECTOR):
        pos = (position + i) % length
        img.data[offset + pos : offset + pos + SECTOR] = entry[i : i + SECTOR]


def set_log_guid(img: Image, log_guid: uuid.UUID) -> None:
    for at in HEADER_OFFSETS:
        img.data[at + 48 : at + 64] = log_guid.bytes_le
        fix_crc(img.data, at, 4096)
