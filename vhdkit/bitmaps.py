"""Sector bitmaps: runs of present/absent sectors, and setting bits.

VHDX bitmaps are LSB-first ([MS-VHDX] 2.4: bit 0 of byte 0 is the first sector); VHD bitmaps are
MSB-first. The helpers here work LSB-first; VHD code turns its bytes round with ``MSB_TO_LSB``
(a bytes.translate table) on the way in and out.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator


_ALL = 0xFFFFFFFFFFFFFFFF


def bitmap_runs(bitmap: bytes, first: int, count: int) -> Iterator[tuple[int, int, bool]]:
    """Runs of equal bits in ``bitmap[first : first + count]`` (bit indices) as (start, n, set).

    Works a 64-bit word at a time, so all-present and all-absent stretches cost one step per
    64 sectors; only mixed words are walked bit by bit.
    """
    if count <= 0:
        return
    end = first + count
    if end > len(bitmap) * 8:
        raise ValueError("bit range outside the bitmap")
    run_start = first
    run_value = bool(bitmap[first >> 3] >> (first & 7) & 1)
    pos = first
    while pos < end:
        if pos & 63 == 0 and pos + 64 <= end:
            word = int.from_bytes(bitmap[pos >> 3 : (pos >> 3) + 8], "little")
            if word == (_ALL if run_value else 0):
                pos += 64
                continue
        bit = bool(bitmap[pos >> 3] >> (pos & 7) & 1)
        if bit != run_value:
            yield run_start, pos - run_start, run_value
            run_start, run_value = pos, bit
        pos += 1
    yield run_start, end - run_start, run_value


def set_bits(bitmap: bytearray, first: int, count: int) -> None:
    """Set bits [first, first + count) of an LSB-first bitmap."""
    end = first + count
    pos = first
    while pos < end and pos & 7:
        bitmap[pos >> 3] |= 1 << (pos & 7)
        pos += 1
    whole = (end - pos) >> 3
    if whole > 0:
        bitmap[pos >> 3 : (pos >> 3) + whole] = b"\xff" * whole
        pos += whole << 3
    while pos < end:
        bitmap[pos >> 3] |= 1 << (pos & 7)
        pos += 1


#: bytes.translate table that reverses the bit order of every byte (MSB-first <-> LSB-first).
MSB_TO_LSB = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))
