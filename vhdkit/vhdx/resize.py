"""Resize a VHDX (Resize-VHD): grow any type; shrink only what holds no data (or with ``force``).

The new size lives in the Virtual Disk Size metadata item (2.6.2.2); the BAT must hold an entry
for every block of it (2.5: data blocks, with a sector bitmap entry after every chunk-ratio of
them — an entry's index depends only on its block, so entries keep their places). What changes
is made crash-safe in two steps, as every metadata write here is:

1. Before the commit, only space nothing refers to is written: the new BAT entries past the old
   count (zeros, or a fixed disk's new blocks, appended and reserved), or, when the BAT region is
   too small for the new count, a whole new BAT at the end of the file (1 MiB aligned). Flushed.
2. One log entry then changes the size item and, for a moved BAT, both region tables (their
   first 4 KiB sector: entries and checksum). A crash before it leaves the old disk; after it,
   replay gives the new one.

Shrinking cuts the tail: it is refused when any byte stored in this layer past the new size is not
zero, unless ``force``; the cut part of a last, partial block is zeroed first, so a later grow
reads zeros there as it must. Blocks past the end are dropped from the BAT (their space stays in
the file until a compact).
"""

from __future__ import annotations

import struct
from array import array
from ..errors import ResizeRefusedError, UnsupportedFeatureError
from ..units import MiB, align_up, format_size
from . import layout as L
from .bat import BatGeometry, BlockAllocationTable, decode_entry, encode_entry
from .checksum import with_checksum
from .image import VhdxDisk
from .regions import read_region_tables
from .session import Transaction

def resize(disk: VhdxDisk, new_size: int, *, force: bool = False) -> None:
    disk._check_writable()  # noqa: SLF001 - this package's own disk
    lss = disk.logical_sector_size
    if new_size <= 0 or new_size % lss:
        raise ResizeRefusedError(f"the new size must be a positive multiple of the {lss}-byte logical sector")
    if new_size > L.MAX_VIRTUAL_DISK_SIZE:
        raise ResizeRefusedError(f"{format_size(new_size)} is larger than the VHDX maximum of 64 TiB")
    old_size = disk.size
    if new_size == old_size:
        return
    if new_size < old_size:
        stored = _stored_past(disk, new_size)
        if stored and not force:
            raise ResizeRefusedError(f"shrinking {disk.name} to {format_size(new_size)} would cut "
                                f"{format_size(stored)} of data stored past that size (force to cut it)")
    with disk._write_lock:  # noqa: SLF001
        session = disk._session  # noqa: SLF001
        assert session is not None
        session.begin(user_visible=True)
        if new_size < old_size:
            _zero_cut_tail(disk, new_size)
        old = disk.geometry
        new = BatGeometry(new_size, old.block_size, lss, old.has_parent)
        entries = array("Q", bytes(8)) * new.entry_count
        keep = min(old.entry_count, new.entry_count)
        entries[:keep] = disk.bat.to_array()[:keep]
        store = disk.file_store
        region = disk.regions.current.find(L.BAT_REGION_GUID)
        fixed = disk.metadata.leave_block_allocated
        tx = Transaction()
        new_bytes = new.entry_count * L.BAT_ENTRY_SIZE
        if fixed and new.data_blocks > old.data_blocks:
            _allocate_fixed_blocks(disk, entries, old, new)
        table = BlockAllocationTable(new, entries, 0).to_bytes()  # the new BAT's bytes, wherever they go
        if new_bytes <= region.length:
            bat_offset = region.file_offset
            if new.entry_count > old.entry_count:  # entries past the old count: nothing reads them yet
                start = old.entry_count * L.BAT_ENTRY_SIZE
                store.pwrite(bat_offset + start, table[start:new_bytes])
        else:
            bat_offset = disk._allocate(align_up(new_bytes, MiB))  # noqa: SLF001
            store.pwrite(bat_offset, table)
            for copy_offset in L.REGION_TABLE_OFFSETS:
                tx.sectors[copy_offset] = _moved_bat_region_table(store, copy_offset, bat_offset,
                                                                  align_up(new_bytes, MiB))
        store.flush()  # step 1 durable before step 2 refers to it
        size_item = next(e for e in disk.metadata.entries if e.item_id == L.VIRTUAL_DISK_SIZE_GUID and not e.is_user)
        disk._patch_metadata(tx, disk.metadata.region.file_offset + size_item.offset,  # noqa: SLF001
                             struct.pack("<Q", new_size))
        if new_bytes <= region.length and new.entry_count < old.entry_count:
            for index in range(new.entry_count, old.entry_count):  # dropped entries read as zero
                tx.touch_bat(index)
        disk.bat = BlockAllocationTable(new, entries, bat_offset)
        disk.geometry = new
        session.commit(tx)
        disk.size = new_size
        disk.metadata.virtual_disk_size = new_size
        disk.regions = read_region_tables(store)
        disk._bitmap_cache.clear()  # noqa: SLF001
        if new_size < old_size:
            _cut_unreferenced_tail(disk)


def _cut_unreferenced_tail(disk: VhdxDisk) -> None:
    """After a shrink (committed): the blocks it dropped that sat at the end of the file go, so
    they are not left as leaked space. (Dropped blocks further in stay until a compact.)"""
    store = disk.file_store
    end = max([region.end for region in disk.regions.current.regions]
              + [disk.header.log_offset + disk.header.log_length])
    ratio = disk.geometry.chunk_ratio
    for index, value in disk.bat.nonzero():
        _, offset = decode_entry(value)
        if offset:  # a sector bitmap entry follows every chunk-ratio payload entries (2.5)
            length = L.SECTOR_BITMAP_BLOCK_SIZE if index % (ratio + 1) == ratio else disk.geometry.block_size
            end = max(end, offset + length)
    if align_up(end, MiB) < store.size():
        disk._session.end()  # noqa: SLF001 - no log entry may claim the old, longer file (see compact)
        store.truncate(align_up(end, MiB))
        store.flush()


def _stored_past(disk: VhdxDisk, new_size: int) -> int:
    """Bytes this layer stores past ``new_size`` that are not zero."""
    from ..disk import ExtentState, is_zero

    nonzero = 0
    buf = bytearray(MiB)
    for ext in disk.extents(new_size, disk.size - new_size, through_parents=False):
        if ext.state is not ExtentState.DATA:
            continue
        pos, end = ext.offset, ext.offset + ext.length
        while pos < end:
            n = min(MiB, end - pos)
            view = memoryview(buf)[:n]
            disk.preadinto(pos, view)
            if not is_zero(view):
                nonzero += n
            pos += n
    return nonzero


def _zero_cut_tail(disk: VhdxDisk, new_size: int) -> None:
    """Zero what the last kept block stores past the new end, so a later grow reads zeros."""
    bs = disk.geometry.block_size
    block_end = min(align_up(new_size, bs), disk.size)
    if block_end > new_size:
        state, _ = disk.bat.payload(new_size // bs)
        if state in (L.PayloadBlockState.FULLY_PRESENT, L.PayloadBlockState.PARTIALLY_PRESENT):
            disk.pwrite(new_size, bytes(block_end - new_size))


def _allocate_fixed_blocks(disk: VhdxDisk, entries: array, old: BatGeometry, new: BatGeometry) -> None:
    """A fixed disk's new blocks: appended, reserved, FULLY_PRESENT (written before the commit)."""
    bs = new.block_size
    count = new.data_blocks - old.data_blocks
    first = disk._allocate(count * bs)  # noqa: SLF001
    reserve = getattr(disk.file_store, "preallocate", None)
    if reserve is not None:
        reserve(first, count * bs)
    for i, block in enumerate(range(old.data_blocks, new.data_blocks)):
        entries[new.payload_index(block)] = encode_entry(L.PayloadBlockState.FULLY_PRESENT, first + i * bs)


def _moved_bat_region_table(store: object, copy_offset: int, bat_offset: int, bat_length: int) -> bytes:
    """The first 4 KiB of a region table with the BAT entry moved, checksum recomputed over all 64 KiB."""
    raw = bytearray(store.pread(copy_offset, L.REGION_TABLE_SIZE))  # type: ignore[attr-defined]
    head = L.RegionTableHeader.parse(bytes(raw[:16]))
    if 16 + 32 * head.entry_count > 4096:
        raise UnsupportedFeatureError("a region table's entries do not fit its first 4 KiB sector")
    for i in range(head.entry_count):
        at = 16 + 32 * i
        entry = L.RegionTableEntry.parse(bytes(raw[at : at + 32]))
        if entry.guid == L.BAT_REGION_GUID:
            raw[at : at + 32] = L.RegionTableEntry.build(dict(guid=entry.guid, file_offset=bat_offset,
                                                              length=bat_length, required=entry.required))
    return with_checksum(raw)[:4096]  # the rest of the 64 KiB is unchanged
