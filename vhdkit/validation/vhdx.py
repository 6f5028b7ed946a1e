"""Structural validation of a VHDX file ([MS-VHDX] v6.00), structure by structure.

Each structure is checked on its own, both copies where the format keeps two, so one damaged
copy is a warning the image survives and not a failure to open. Where the file cannot be read
further (no valid header, no valid region table, metadata that makes no sense) the check says so
as an error and stops there. Sizes read from the file are bounded by the file size before use.
"""

from __future__ import annotations

import os
import struct

from ..disk import VirtualDisk
from ..errors import VhdkitError
from ..storage import Borrowed, Store, open_store
from ..units import MiB, format_size
from ..vhdx import layout as L
from ..vhdx.bat import BatGeometry, BlockAllocationTable, decode_entry, is_zero
from ..vhdx.headers import VhdxHeader, read_creator, select_current_header, write_updated_header
from ..vhdx.log import replay_in_memory
from ..vhdx.metadata import read_metadata
from ..vhdx.regions import read_region_tables
from .common import check_parent, error_from, report_overlaps
from .report import ERROR, LEAK, WARNING, Report
from .space import SpaceMap

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterator

_PRESENT = (L.PayloadBlockState.FULLY_PRESENT, L.PayloadBlockState.PARTIALLY_PRESENT)
_VALID_PAYLOAD_STATES = (L.PayloadBlockState.NOT_PRESENT, L.PayloadBlockState.UNDEFINED, L.PayloadBlockState.ZERO,
                         L.PayloadBlockState.UNMAPPED, L.PayloadBlockState.UNMAPPED_V095, L.PayloadBlockState.FULLY_PRESENT,
                         L.PayloadBlockState.PARTIALLY_PRESENT)
_VALID_BITMAP_STATES = (L.SectorBitmapState.NOT_PRESENT, L.SectorBitmapState.PRESENT)
LAYOUT_SLACK = 4 * MiB


def check_vhdx(store: Store, report: Report, open_parent: Callable[[], VirtualDisk] | None = None) -> None:
    """Add ``store``'s findings to ``report``. ``open_parent()`` opens the image with its parent
    chain (raising ParentNotFoundError / ParentMismatchError); None skips that check."""
    file_size = store.size()
    try:
        read_creator(store)
        selection = select_current_header(store)
    except VhdkitError as e:
        error_from(report, e, "VHDX headers")
        return
    _damaged_copies(report, "VHDX header", L.HEADER_OFFSETS, selection.errors)
    header = selection.current

    view: Store = store
    if not header.log_is_empty:
        view = _check_log(store, header, report)
        if view is None:
            return

    try:
        regions = read_region_tables(view)
    except VhdkitError as e:
        error_from(report, e, "region tables")
        return
    _damaged_copies(report, "region table", L.REGION_TABLE_OFFSETS, regions.errors)
    t1, t2 = regions.tables
    if t1 is not None and t2 is not None and t1.raw != t2.raw:
        report.add(WARNING, "region table 2", L.REGION_TABLE_OFFSETS[1],
                   "the two region tables differ; readers use the first")

    space = SpaceMap()
    space.claim(0, L.HEADER_SECTION_SIZE, "header section")
    if header.log_length:
        space.claim(header.log_offset, header.log_length, "log")
        if header.log_offset + header.log_length > file_size:
            report.add(ERROR, f"VHDX header {header.slot}", header.offset,
                       f"the log ({format_size(header.log_length)} at {header.log_offset:#x}) runs past the end "
                       f"of the file ({file_size:#x})")
    for region in regions.current.regions:
        space.claim(region.file_offset, region.length, f"{region.name} region")
        if region.end > file_size:
            report.add(ERROR, f"{region.name} region", region.file_offset,
                       f"runs past the end of the file (ends at {region.end:#x}, the file at {file_size:#x})")
    try:
        bat_region = regions.current.find(L.BAT_REGION_GUID)
        metadata = read_metadata(view, regions.current.find(L.METADATA_REGION_GUID))
        geometry = BatGeometry(metadata.virtual_disk_size, metadata.block_size, metadata.logical_sector_size,
                               metadata.has_parent)
        bat = BlockAllocationTable.read(view, geometry, bat_region.file_offset, bat_region.length)
    except VhdkitError as e:
        error_from(report, e, "metadata")
        return

    _check_bat(bat, geometry, file_size, space, report)
    _check_space(space, file_size, report)
    if metadata.has_parent and open_parent is not None:
        check_parent(open_parent, report)


def _damaged_copies(report: Report, name: str, offsets: tuple[int, int], errors: tuple) -> None:
    """A structure kept twice with one copy damaged: the image survives (a warning, as qemu-img)."""
    for copy, error in zip((1, 2), errors):
        if error is not None:
            report.add(WARNING, f"{name} {copy}", offsets[copy - 1],
                       f"this copy is damaged and the other is used ({error}); --repair rewrites it")


def _check_log(store: Store, header: VhdxHeader, report: Report) -> Store | None:
    """A log that is not empty: say whether it can be replayed; return the file as a replay
    would leave it (in memory), or None if it cannot be read past here."""
    try:
        overlay, sequence, _ = replay_in_memory(store, header)
    except VhdkitError as e:
        report.add(ERROR, "log", header.log_offset, f"the log must be replayed but cannot be ({e})")
        return None
    report.add(ERROR, "log", header.log_offset,
               f"log needs replay: {len(sequence.entries)} entries (sequence {sequence.tail.sequence_number}.."
               f"{sequence.head.sequence_number}) were written but not applied; readers that ignore the log "
               "(libvhdi, dissect) see stale data. --repair replays it")
    return overlay


def _check_bat(bat: BlockAllocationTable, geometry: BatGeometry, file_size: int, space: SpaceMap,
               report: Report) -> None:
    ratio = geometry.chunk_ratio
    block_size = geometry.block_size
    base = bat.region_offset
    partial_chunks: set[int] = set()
    present_bitmaps: set[int] = set()
    for index, value in _entries_to_check(bat, ratio):
        state, offset = decode_entry(value)
        is_bitmap = (index + 1) % (ratio + 1) == 0
        where = base + index * L.BAT_ENTRY_SIZE
        if is_bitmap:
            chunk = index // (ratio + 1)
            name = f"BAT entry {index} (sector bitmap of chunk {chunk})"
        else:
            block = index - index // (ratio + 1)
            name = f"BAT entry {index} (payload block {block})"
        if L.BatEntry.reserved.of(value):
            report.add(ERROR, name, where, f"reserved bits are set ({value:#018x})")
        if is_bitmap:
            if not geometry.has_parent and chunk >= geometry.bitmap_blocks:
                continue  # slots past the last chunk of a non-differencing disk: unused
            if state not in _VALID_BITMAP_STATES:
                report.add(ERROR, name, where, f"state {state} is not a sector bitmap state (0 or 6)")
                continue
            if state == L.SectorBitmapState.PRESENT:
                present_bitmaps.add(chunk)
                _claim_block(space, report, name, where, offset, MiB, file_size)
            continue
        if block >= geometry.data_blocks:
            continue
        if state not in _VALID_PAYLOAD_STATES:
            report.add(ERROR, name, where, f"state {state} is not a payload block state")
            continue
        if state == L.PayloadBlockState.PARTIALLY_PRESENT:
            if not geometry.has_parent:
                report.add(ERROR, name, where, "PARTIALLY_PRESENT is only valid in a differencing disk")
            partial_chunks.add(block // ratio)
        if state in _PRESENT:
            _claim_block(space, report, name, where, offset, block_size, file_size)
        elif offset and offset + block_size <= file_size:
            # UNMAPPED (and the others) may keep the space they had (2.5.1.1): it is not a leak,
            # and it is nobody else's either.
            space.claim(offset, block_size, name, where)
    for chunk in sorted(partial_chunks - present_bitmaps):
        index = geometry.bitmap_index(chunk)
        report.add(ERROR, f"BAT entry {index} (sector bitmap of chunk {chunk})", base + index * L.BAT_ENTRY_SIZE,
                   "a block of this chunk is PARTIALLY_PRESENT but its sector bitmap block is not present")


_PAGE = 512  # entries per 4 KiB BAT sector
# Payload states that reference no file space; an entry holding one at FileOffsetMB 0 needs no
# further check. Most of a new disk's BAT is such entries: 0 (NOT_PRESENT) or, from qemu-img, 2 (ZERO).
_SPACELESS_STATES = bytes((L.PayloadBlockState.NOT_PRESENT, L.PayloadBlockState.UNDEFINED, L.PayloadBlockState.ZERO,
                           L.PayloadBlockState.UNMAPPED, L.PayloadBlockState.UNMAPPED_V095))


def _entries_to_check(bat: BlockAllocationTable, ratio: int) -> Iterator[tuple[int, int]]:
    """(index, value) of the entries that need a closer look; skipped: 0 everywhere, and a
    space-less payload state at offset 0. The table is streamed a page (1 MiB) at a time, and a
    page of skippable entries costs a few byte-string operations on the whole page, so a 64 TiB
    disk's BAT (64 million entries with 1 MiB blocks) takes well under a second and no more
    memory than a page."""
    stride = (ratio + 1) * L.BAT_ENTRY_SIZE  # from one sector-bitmap slot to the next
    uniform: dict[int, bytes] = {}  # state -> a run of such entries from a chunk's start, a page and a chunk long
    for first, page in bat.page_bytes():
        if is_zero(page):  # most pages of a sparse disk: nothing to look at
            continue
        # The next most common page: every payload entry one space-less state at offset 0, every
        # bitmap slot 0 (qemu-img marks a new disk's blocks ZERO): one comparison with such a page.
        phase = first % (ratio + 1)
        state = page[0] if phase != ratio else page[L.BAT_ENTRY_SIZE] if len(page) > L.BAT_ENTRY_SIZE else 0
        if state not in uniform and state in _SPACELESS_STATES:
            uniform[state] = _uniform_run(len(page) + stride, state, ratio)
        run = uniform.get(state)
        if run is not None and page == run[phase * L.BAT_ENTRY_SIZE : phase * L.BAT_ENTRY_SIZE + len(page)]:
            continue
        yield from _entries_in(page, first, ratio)


def _entries_in(raw: bytes, page_first: int, ratio: int) -> Iterator[tuple[int, int]]:
    """_entries_to_check's entries of a page that is neither all zero nor uniform, a 4 KiB BAT
    sector at a time: a sector of skippable entries costs a few byte-string operations, so one
    allocated block does not cost a look at all 131,072 entries of its page."""
    step = _PAGE * L.BAT_ENTRY_SIZE
    zero = bytes(step)
    for start in range(0, len(raw), step):
        page = raw[start : start + step]
        first = page_first + start // L.BAT_ENTRY_SIZE
        count = len(page) // L.BAT_ENTRY_SIZE
        if page == zero[: len(page)]:
            continue
        highs = bytearray(page)
        highs[0 :: L.BAT_ENTRY_SIZE] = bytes(count)
        if highs == zero[: len(page)] and not page[0 :: L.BAT_ENTRY_SIZE].translate(None, _SPACELESS_STATES):
            # Only sector-bitmap slots could still be wrong here (a payload state is no bitmap state).
            slot = (first // (ratio + 1) + 1) * (ratio + 1) - 1
            while slot < first + count:
                value = _ENTRY.unpack_from(page, (slot - first) * L.BAT_ENTRY_SIZE)[0]
                if value:
                    yield slot, value
                slot += ratio + 1
            continue
        for i, (value,) in enumerate(_ENTRY.iter_unpack(page)):
            if value:
                yield first + i, value


def _uniform_run(length: int, state: int, ratio: int) -> bytes:
    """``length`` bytes of BAT entries from a chunk's first (``ratio`` payload entries, then the
    chunk's bitmap slot, repeated): every payload entry ``state`` at offset 0, every slot 0. A
    page starting ``phase`` entries into a chunk is compared with the run from that entry on."""
    run = bytearray(length)
    run[0 :: L.BAT_ENTRY_SIZE] = bytes((state,)) * (length // L.BAT_ENTRY_SIZE)
    slots = slice(ratio * L.BAT_ENTRY_SIZE, None, (ratio + 1) * L.BAT_ENTRY_SIZE)
    run[slots] = bytes(len(run[slots]))
    return bytes(run)


_ENTRY = struct.Struct("<Q")


def _claim_block(space: SpaceMap, report: Report, name: str, where: int, offset: int, length: int,
                 file_size: int) -> None:
    if offset < L.HEADER_SECTION_SIZE:
        report.add(ERROR, name, where, f"points into the header section (offset {offset:#x})")
        return
    if offset + length > file_size:
        report.add(ERROR, name, where, f"points past the end of the file: the block at {offset:#x} ends at "
                   f"{offset + length:#x}, the file at {file_size:#x} (truncated?)")
        return
    space.claim(offset, length, name, where)


def _check_space(space: SpaceMap, file_size: int, report: Report) -> None:
    report_overlaps(space, report)
    # Whole MiB runs nothing claims are leaks; a tail shorter than a MiB is file rounding. Before
    # the first block, up to 4 MiB after the last fixed structure is layout: qemu-img leaves that
    # much between its metadata region and its first payload block in every VHDX it makes.
    blocks = [c.start for c in space.claims if c.owner.startswith("BAT entry")]
    first_block = min(blocks) if blocks else file_size
    structures_end = max(c.end for c in space.claims if not c.owner.startswith("BAT entry"))
    for offset, length in space.gaps(L.HEADER_SECTION_SIZE, file_size):
        if offset < first_block:
            end = offset + length
            offset = max(offset, min(structures_end + LAYOUT_SLACK, end))
            length = end - offset
        whole = length // MiB * MiB
        if whole > 0:
            report.leaked_bytes += whole
            report.add(LEAK, "file space", offset,
                       f"{format_size(whole)} at {offset:#x} are allocated in the file but nothing references them",
                       length)


def repair_vhdx(target: str | os.PathLike[str], before: Report) -> list[str]:
    """Repair what ``before`` found and can be repaired safely (see validation.repair); returns
    what was done."""
    done: list[str] = []
    needs = {"log", "VHDX header 1", "VHDX header 2", "region table 1", "region table 2", "file space"}
    if not {f.structure for f in before.findings} & needs:
        return done
    from ..vhdx.image import VhdxDisk  # only a repair opens the disk itself

    store = open_store(target, writable=True)
    try:
        if any(f.structure == "log" and "needs replay" in f.message for f in before.findings):
            with VhdxDisk(Borrowed(store), writable=True) as disk:  # replays the log into the file, durably
                replay = disk.log_replay
            done.append(f"replayed the log: {replay.entries} entries, {replay.descriptors} updates written")
        selection = select_current_header(store)
        bad = [slot for slot, error in zip((1, 2), selection.errors) if error is not None]
        if bad:
            write_updated_header(store, selection.current)
            done.append(f"rewrote VHDX header {bad[0]} from header {selection.current.slot} (both copies now valid)")
        tables = read_region_tables(store)
        for copy, error in zip((1, 2), tables.errors):
            if error is not None:
                store.pwrite(L.REGION_TABLE_OFFSETS[copy - 1], tables.current.raw)
                store.flush()
                done.append(f"rewrote region table {copy} from region table {tables.current.copy}")
        from .repair import cut_trailing_leak  # a repair only

        cut_trailing_leak(store, before, done)
    finally:
        store.close()
    return done
