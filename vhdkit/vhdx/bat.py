"""The block allocation table ([MS-VHDX] 2.4, 2.5): geometry, interleave, entries.

Payload and sector-bitmap entries are interleaved: after every ``chunk_ratio`` payload entries
comes the sector-bitmap entry of that chunk, in dynamic and fixed files too (where it is never
allocated). Payload block i is at index i + i // chunk_ratio; the bitmap entry of chunk k is at
(k + 1) * (chunk_ratio + 1) - 1. Code that forgets this reads every image smaller than one chunk
correctly and larger ones wrongly, so the tests use images that cross chunks.
"""

from __future__ import annotations

import sys
from array import array
from typing import NamedTuple

from ..errors import CorruptImageError
from ..storage import Store
from ..units import MiB, ceil_div
from . import layout as L


class BatGeometry(NamedTuple):
    """The numbers of 2.4/2.5 for one disk."""

    virtual_size: int
    block_size: int
    logical_sector_size: int
    has_parent: bool

    @property
    def chunk_ratio(self) -> int:
        return (L.SECTORS_PER_BITMAP_BLOCK * self.logical_sector_size) // self.block_size

    @property
    def chunk_size(self) -> int:
        """Virtual bytes described by one sector bitmap block."""
        return L.SECTORS_PER_BITMAP_BLOCK * self.logical_sector_size

    @property
    def data_blocks(self) -> int:
        return ceil_div(self.virtual_size, self.block_size)

    @property
    def bitmap_blocks(self) -> int:
        return ceil_div(self.data_blocks, self.chunk_ratio)

    @property
    def entry_count(self) -> int:
        if self.has_parent:
            return self.bitmap_blocks * (self.chunk_ratio + 1)
        return self.data_blocks + (self.data_blocks - 1) // self.chunk_ratio

    def payload_index(self, block: int) -> int:
        return block + block // self.chunk_ratio

    def bitmap_index(self, chunk: int) -> int:
        return (chunk + 1) * (self.chunk_ratio + 1) - 1


class BlockAllocationTable:
    """The BAT entries as a u64 array; state and offset decoded on access."""

    def __init__(self, geometry: BatGeometry, entries: array, region_offset: int) -> None:
        self.geometry = geometry
        self.entries = entries
        self.region_offset = region_offset

    @classmethod
    def read(cls, store: Store, geometry: BatGeometry, region_offset: int, region_length: int) -> "BlockAllocationTable":
        count = geometry.entry_count
        needed = count * L.BAT_ENTRY_SIZE
        if needed > region_length:
            raise CorruptImageError("the BAT region is too small for the virtual disk size",
                                    structure="BAT region", offset=region_offset, field="Length",
                                    expected=f">= {needed:#x}", found=region_length)
        if region_offset + needed > store.size():
            raise CorruptImageError("the BAT extends past the end of the file", structure="BAT region",
                                    offset=region_offset, expected=f"end <= {store.size():#x}",
                                    found=region_offset + needed)
        # Read straight into the array: one buffer, one copy (a 64 TiB disk's BAT is 16 MiB).
        entries = array("Q", bytes(L.BAT_ENTRY_SIZE)) * count
        got = store.preadinto(region_offset, memoryview(entries).cast("B"))
        if got != needed:
            raise CorruptImageError("the BAT is truncated", structure="BAT region", offset=region_offset)
        if sys.byteorder == "big":
            entries.byteswap()
        return cls(geometry, entries, region_offset)

    def payload(self, block: int) -> tuple[int, int]:
        """(state, file offset in bytes) of payload block ``block``."""
        return decode_entry(self.entries[self.geometry.payload_index(block)])

    def bitmap(self, chunk: int) -> tuple[int, int]:
        """(state, file offset in bytes) of the sector bitmap block of ``chunk``."""
        return decode_entry(self.entries[self.geometry.bitmap_index(chunk)])

    def set_payload(self, block: int, state: int, file_offset: int = 0) -> int:
        """Set payload block ``block``'s entry; returns its index (for the dirty sector)."""
        index = self.geometry.payload_index(block)
        self.entries[index] = encode_entry(state, file_offset)
        return index

    def set_bitmap(self, chunk: int, state: int, file_offset: int = 0) -> int:
        index = self.geometry.bitmap_index(chunk)
        self.entries[index] = encode_entry(state, file_offset)
        return index

    def sector_bytes(self, sector: int) -> bytes:
        """The on-disk bytes of 4 KiB BAT sector ``sector`` (zeros past the last entry)."""
        per = L.LOG_SECTOR_SIZE // L.BAT_ENTRY_SIZE
        part = self.entries[sector * per : (sector + 1) * per]
        if sys.byteorder == "big":
            part = array("Q", part)
            part.byteswap()
        raw = part.tobytes()
        return raw + bytes(L.LOG_SECTOR_SIZE - len(raw))

    def to_bytes(self) -> bytes:
        raw = array("Q", self.entries)
        if sys.byteorder == "big":
            raw.byteswap()
        return raw.tobytes()

    def payload_state_counts(self) -> dict[str, int]:
        """How many payload blocks are in each state (by spec name)."""
        g = self.geometry
        counts: dict[str, int] = {}
        states = bytes(memoryview(self.entries.tobytes())[:: L.BAT_ENTRY_SIZE]) if sys.byteorder == "little" else bytes(
            v & 0xFF for v in self.entries
        )
        # Drop the interleaved sector-bitmap slots: every (chunk_ratio + 1)-th entry.
        step = g.chunk_ratio + 1
        payload = bytearray()
        for start in range(0, len(states), step):
            payload += states[start : start + g.chunk_ratio]
        payload = payload[: g.data_blocks]
        table = bytes(L.BatEntry.state.of(i) for i in range(256))  # the state is in the low byte
        masked = bytes(payload).translate(table)
        for value in range(8):
            n = masked.count(value)
            if n:
                name = state_name(L.PayloadBlockState, value)
                counts[name] = counts.get(name, 0) + n
        return counts

    def bitmap_state_counts(self) -> dict[str, int]:
        g = self.geometry
        counts: dict[str, int] = {}
        for chunk in range(g.bitmap_blocks):
            index = g.bitmap_index(chunk)
            if index >= len(self.entries):
                break
            name = state_name(L.SectorBitmapState, L.BatEntry.state.of(self.entries[index]))
            counts[name] = counts.get(name, 0) + 1
        return counts


def decode_entry(value: int) -> tuple[int, int]:
    """(state, file offset in bytes) of a BAT entry (2.5.1)."""
    return L.BatEntry.state.of(value), L.BatEntry.file_offset_mb.of(value) * MiB


def encode_entry(state: int, file_offset: int) -> int:
    """A BAT entry (2.5.1) for a block in ``state`` at ``file_offset`` (a whole number of MiB)."""
    if file_offset % MiB:
        raise ValueError(f"block offset {file_offset:#x} is not 1 MiB aligned")
    return L.BatEntry.pack(state=state, file_offset_mb=file_offset // MiB)


def state_name(states: type[L.PayloadBlockState] | type[L.SectorBitmapState], value: int) -> str:
    """A state as reports name it ("fully_present"), or "invalid_N"."""
    try:
        member = states(value)
    except ValueError:
        return f"invalid_{value}"
    return member.spec_name if isinstance(member, L.PayloadBlockState) else member.name.lower()
