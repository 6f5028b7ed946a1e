"""Compact a dynamic VHD (Optimize-VHD), without a log: every step is one atomic sector write or
space nothing refers to yet.

1. A block that reads all zeros gets BAT entry 0xFFFFFFFF (unused: reads zeros) — in a dynamic
   disk only; in a differencing one a block of zeros hides the parent's bytes and stays.
2. Blocks move down into the gaps below them, a batch at a time: the copies (bitmap + data) go
   into free space and are flushed, then each moved entry's BAT sector is rewritten (one sector
   each: a crash between two leaves every entry pointing at a whole copy, old or new).
3. The footer is written after the last block, flushed, and the file cut after it (until the
   cut, the old footer is still the file's last sector).
"""

from __future__ import annotations

import struct

from ..disk import CompactReport, StoredZeros
from ..errors import ReadOnlyError
from ..units import align_up
from . import layout as L
from .image import VhdDisk, parse_footer

BATCH = 64


def compact(disk: VhdDisk) -> CompactReport:
    store = disk.file_store
    old_size = store.size()
    if disk.bat is None:  # fixed: its data is its space
        return CompactReport(0, 0, old_size, old_size)
    if not disk.writable():
        raise ReadOnlyError(f"{disk.name} is open read-only")
    with disk._write_lock:  # noqa: SLF001 - this package's own disk
        zeroed = 0 if disk.differencing else _drop_zero_blocks(disk)
        moved = _move_down(disk)
        _cut(disk)
    return CompactReport(zeroed, moved, old_size, store.size())


def _slot(disk: VhdDisk) -> int:
    return disk.bitmap_bytes + disk.block_size


def _set_entries(disk: VhdDisk, changes: dict[int, int]) -> None:
    """Rewrite the BAT sectors holding ``changes`` (block -> entry), one sector write each."""
    assert disk.bat is not None and disk.header is not None
    store = disk.file_store
    for block, entry in changes.items():
        disk.bat[block] = entry
    sectors = sorted({(disk.header.table_offset + block * 4) // L.SECTOR for block in changes})
    for sector in sectors:
        at = sector * L.SECTOR
        raw = bytearray(store.pread(at, L.SECTOR))
        first = (at - disk.header.table_offset) // 4
        for i in range(L.SECTOR // 4):
            block = first + i
            if 0 <= block < len(disk.bat) and at + 4 * i >= disk.header.table_offset:
                struct.pack_into(">I", raw, 4 * i, disk.bat[block])
        store.pwrite(at, bytes(raw))
    store.flush()


def _drop_zero_blocks(disk: VhdDisk) -> int:
    assert disk.bat is not None
    store = disk.file_store
    reads_zero = StoredZeros(store)
    changes: dict[int, int] = {}
    for block, entry in enumerate(disk.bat):
        if entry != L.BAT_UNUSED and reads_zero(entry * L.SECTOR + disk.bitmap_bytes, disk.block_size):
            changes[block] = L.BAT_UNUSED
    if changes:
        _set_entries(disk, changes)
    return len(changes)


def _data_start(disk: VhdDisk) -> int:
    """The first byte blocks may use: after the footer copy, the header, the BAT and the locators."""
    assert disk.header is not None
    ends = [L.FOOTER_SIZE + L.DYNAMIC_HEADER_SIZE, disk.header_offset + L.DYNAMIC_HEADER_SIZE,
            disk.header.table_offset + align_up(disk.header.max_table_entries * 4, L.SECTOR)]
    ends += [loc.platform_data_offset + loc.platform_data_space for loc in disk.header.parent_locators
             if loc.platform_data_length]
    return align_up(max(ends), L.SECTOR)


def _move_down(disk: VhdDisk) -> int:
    assert disk.bat is not None
    store = disk.file_store
    slot = _slot(disk)
    moved = 0
    while True:
        used = sorted((entry * L.SECTOR, block) for block, entry in enumerate(disk.bat) if entry != L.BAT_UNUSED)
        limit = _data_start(disk) + len(used) * slot  # the end, once packed: only blocks past it move
        gaps, at = [], _data_start(disk)
        for offset, _ in used:
            if min(offset, limit) - at >= slot:
                gaps.append((at, min(offset, limit)))
            at = max(at, offset + slot)
        plan: dict[int, int] = {}
        for offset, block in reversed(used):
            if len(plan) >= BATCH or not gaps or gaps[0][0] >= offset or offset + slot <= limit:
                break
            start, end = gaps[0]
            plan[block] = start
            gaps[0] = (start + slot, end)
            if gaps[0][1] - gaps[0][0] < slot:
                gaps.pop(0)
        if not plan:
            return moved
        for block, spot in plan.items():  # into free space: nothing refers to it yet
            store.copy_range(disk.bat[block] * L.SECTOR, spot, slot)
        store.flush()
        _set_entries(disk, {block: spot // L.SECTOR for block, spot in plan.items()})
        moved += len(plan)


def _cut(disk: VhdDisk) -> None:
    assert disk.bat is not None
    store = disk.file_store
    end = max([_data_start(disk)] + [e * L.SECTOR + _slot(disk) for e in disk.bat if e != L.BAT_UNUSED])
    if end + L.FOOTER_SIZE >= store.size():
        return
    store.pwrite(end, disk.footer_info.raw)  # the old footer is still the last sector until the cut
    store.flush()
    store.truncate(end + L.FOOTER_SIZE)
    store.flush()
    parsed = parse_footer(disk.footer_info.raw, end)
    assert parsed is not None
    disk.footer_info = parsed
