"""An empty registry hive (regf) made from the format's description, for hivex to merge into:
a base block, one 4 KiB hive bin holding the root key (nk), its security cell (sk) and a free cell.
Offsets follow the regf format as libyal's and hivex's documentation give them."""

from __future__ import annotations

import struct

FILETIME = 132_000_000_000_000_000  # any fixed time (2019)
BIN = 4096
NO_CELL = 0xFFFFFFFF


def _cell(body: bytes) -> bytes:
    size = (4 + len(body) + 7) // 8 * 8
    return struct.pack("<i", -size) + body + bytes(size - 4 - len(body))


def empty_hive(root_name: str = "ROOT") -> bytes:
    nk_offset = 0x20  # cells are addressed from the first hive bin
    name = root_name.encode("ascii")
    nk_size = (4 + 76 + len(name) + 7) // 8 * 8
    sk_offset = nk_offset + nk_size
    # a self-relative security descriptor: DACL present, empty (hivex copies it, never reads it)
    descriptor = struct.pack("<BBHIIII", 1, 0, 0x8004, 0, 0, 0, 20) + struct.pack("<BBHHH", 2, 0, 8, 0, 0)
    nk = struct.pack("<2sHQIIIIIIIIIIIIIIIHH", b"nk", 0x2C, FILETIME, 0, NO_CELL, 0, 0, NO_CELL, NO_CELL, 0,
                     NO_CELL, sk_offset, NO_CELL, 0, 0, 0, 0, 0, len(name), 0) + name
    sk = struct.pack("<2sHIIII", b"sk", 0, sk_offset, sk_offset, 1, len(descriptor)) + descriptor
    cells = _cell(nk) + _cell(sk)
    assert len(_cell(nk)) == nk_size
    free = BIN - 32 - len(cells)
    hbin = struct.pack("<4sIIIIQI", b"hbin", 0, BIN, 0, 0, FILETIME, 0) + cells + struct.pack("<i", free) + bytes(free - 4)
    base = bytearray(4096)
    struct.pack_into("<4sIIQIIIIIII", base, 0, b"regf", 1, 1, FILETIME, 1, 3, 0, 1, nk_offset, BIN, 1)
    file_name = "minimal".encode("utf-16-le")
    base[48 : 48 + len(file_name)] = file_name
    checksum = 0
    for (word,) in struct.iter_unpack("<I", bytes(base[:508])):
        checksum ^= word
    struct.pack_into("<I", base, 508, checksum)
    return bytes(base) + hbin
