"""CRC-32C and the parse helper shared by the VHDX structure readers.

CRC-32C (Castagnoli) covers a structure with its 4-byte checksum field (at offset 4 in every VHDX
structure that has one) taken as zero ([MS-VHDX] 2.2.2, 2.2.3.1, 2.3.1.1).
"""

from __future__ import annotations

import struct

import crcmod.predefined

from ..errors import CorruptImageError
from ..structs import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeVar

    R = TypeVar("R", bound=Record)

_crc32c = crcmod.predefined.mkCrcFun("crc-32c")
_ZERO4 = b"\0\0\0\0"


def crc32c(data: bytes | memoryview, crc: int | None = None) -> int:
    """CRC-32C of ``data``; pass the previous result as ``crc`` to continue over more data."""
    return _crc32c(data) if crc is None else _crc32c(data, crc)


def crc32c_with_zeroed_field(data: bytes | memoryview, field_offset: int = 4) -> int:
    view = memoryview(data)
    crc = crc32c(view[:field_offset])
    crc = crc32c(_ZERO4, crc)
    return crc32c(view[field_offset + 4 :], crc)


def stored_checksum(data: bytes | memoryview, field_offset: int = 4) -> int:
    return int(struct.unpack_from("<I", data, field_offset)[0])


def with_checksum(data: bytes | bytearray, field_offset: int = 4) -> bytes:
    """``data`` with its checksum field filled in."""
    buf = bytearray(data)
    buf[field_offset : field_offset + 4] = _ZERO4
    struct.pack_into("<I", buf, field_offset, crc32c(buf))
    return bytes(buf)


def parse(structure: type[R], data: bytes | memoryview, name: str, offset: int) -> R:
    """Parse ``data`` as ``structure``; any failure becomes a CorruptImageError."""
    size = structure.sizeof()
    if len(data) < size:
        raise CorruptImageError(
            "structure is truncated", structure=name, offset=offset, expected=size, found=len(data)
        )
    try:
        return structure.parse(data)
    except ValueError as e:
        raise CorruptImageError(f"cannot parse: {e}", structure=name, offset=offset) from e
