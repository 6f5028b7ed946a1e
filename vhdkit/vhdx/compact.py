"""Compact a VHDX (Optimize-VHD): give back what blocks of zeros and the gaps between blocks take.

1. Every FULLY_PRESENT payload block that reads all zeros stops being stored: NOT_PRESENT in a
   dynamic disk (which reads zeros), ZERO in a differencing one (NOT_PRESENT there would show the
   parent's bytes). BAT changes go through the log, a batch per log entry.
2. Blocks (and sector bitmaps) are moved down into the free space below them, the last one in
   the file first: each is copied into space nothing refers to, the copies flushed, then one log
   entry points the BAT at them (a crash before it leaves the old places in use and the copies
   unreferenced; after it, the new ones).
3. The file is cut after its last used byte.

A fixed disk is left as it is (its blocks are its reserved space). Works on a closed image: it
opens it for writing, so the advisory lock every vhdkit writer takes keeps it from a disk in use.
"""

from __future__ import annotations

from ..disk import CompactReport, StoredZeros
from ..runtime_types import NamedTuple
from ..units import MiB, align_up
from . import layout as L
from .bat import decode_entry, encode_entry
from .image import VhdxDisk
from .session import Transaction

BATCH = 192  # BAT changes per log entry: each touches at most one 4 KiB BAT sector, and a 1 MiB log holds ~250


def compact(disk: VhdxDisk) -> CompactReport:
    disk._check_writable()  # noqa: SLF001 - this package's own disk
    store = disk.file_store
    old_size = store.size()
    if disk.metadata.leave_block_allocated:
        return CompactReport(0, 0, old_size, old_size)
    with disk._write_lock:  # noqa: SLF001
        session = disk._session  # noqa: SLF001
        assert session is not None
        session.begin(user_visible=False)  # the disk's content does not change
        zeroed = _drop_zero_blocks(disk)
        moved = _move_down(disk)
        end = _used_end(disk)
        if end < store.size():
            # the log's entries say the file was at least its old size (FlushedFileOffset); a
            # replay after a crash would call the shorter file truncated: empty the log first
            session.end()
            store.truncate(end)
            store.flush()
    return CompactReport(zeroed, moved, old_size, store.size())


def _drop_zero_blocks(disk: VhdxDisk) -> int:
    g = disk.geometry
    bs = g.block_size
    gone_state = L.PayloadBlockState.ZERO if g.has_parent else L.PayloadBlockState.NOT_PRESENT
    reads_zero = StoredZeros(disk.file_store)
    tx, pending, dropped = Transaction(), 0, 0
    for block in range(g.data_blocks):
        state, offset = disk.bat.payload(block)
        if state != L.PayloadBlockState.FULLY_PRESENT or not reads_zero(offset, min(bs, disk.size - block * bs)):
            continue
        tx.touch_bat(disk.bat.set_payload(block, gone_state, 0))
        pending += 1
        dropped += 1
        if pending >= BATCH:
            disk._session.commit(tx)  # noqa: SLF001
            tx, pending = Transaction(), 0
    if pending:
        disk._session.commit(tx)  # noqa: SLF001
    return dropped


class _Piece(NamedTuple):
    offset: int
    length: int
    index: int  # BAT entry


def _pieces(disk: VhdxDisk) -> list[_Piece]:
    """Every stored payload block and sector bitmap, by file offset."""
    ratio = disk.geometry.chunk_ratio
    out = []
    for index, value in disk.bat.nonzero():
        state, offset = decode_entry(value)
        if not offset:
            continue
        is_bitmap = index % (ratio + 1) == ratio
        if is_bitmap and state == L.SectorBitmapState.PRESENT:
            out.append(_Piece(offset, L.SECTOR_BITMAP_BLOCK_SIZE, index))
        elif not is_bitmap and state in (L.PayloadBlockState.FULLY_PRESENT, L.PayloadBlockState.PARTIALLY_PRESENT):
            out.append(_Piece(offset, disk.geometry.block_size, index))
    return sorted(out)


def _fixed_end(disk: VhdxDisk) -> int:
    """End of the structures that never move: header section, log, regions (BAT, metadata)."""
    end = max([L.HEADER_SECTION_SIZE, disk.header.log_offset + disk.header.log_length]
              + [r.end for r in disk.regions.current.regions])
    return align_up(end, MiB)


def _move_down(disk: VhdxDisk) -> int:
    """Move the pieces lying past where the compacted file will end into the gaps below it, the
    last first, a batch per log entry (pieces already below that end stay where they are)."""
    store = disk.file_store
    moved = 0
    while True:
        pieces = _pieces(disk)
        start = _fixed_end(disk)
        limit = start + sum(align_up(p.length, MiB) for p in pieces)  # the end, once packed
        gaps = [(a, min(n, limit - a)) for a, n in _gaps(pieces, start) if a < limit]
        plan: list[tuple[_Piece, int]] = []
        taken: list[tuple[int, int]] = []
        for piece in reversed(pieces):
            if piece.offset + piece.length <= limit:
                break
            spot = _fit(gaps, piece, taken)
            if spot is None:
                continue
            plan.append((piece, spot))
            taken.append((spot, piece.length))
            if len(plan) >= BATCH:
                break
        if not plan:
            return moved
        for piece, spot in plan:  # copies into space nothing refers to
            store.copy_range(piece.offset, spot, piece.length)
        store.flush()
        tx = Transaction()
        for piece, spot in plan:
            state, _ = decode_entry(disk.bat[piece.index])
            disk.bat[piece.index] = encode_entry(state, spot)
            tx.touch_bat(piece.index)
        disk._session.commit(tx)  # noqa: SLF001
        disk._bitmap_cache.clear()  # noqa: SLF001
        moved += len(plan)


def _gaps(pieces: list[_Piece], start: int) -> list[tuple[int, int]]:
    gaps, at = [], start
    for piece in pieces:
        if piece.offset > at:
            gaps.append((at, piece.offset - at))
        at = max(at, piece.offset + piece.length)
    return gaps


def _fit(gaps: list[tuple[int, int]], piece: _Piece, taken: list[tuple[int, int]]) -> int | None:
    """The lowest 1 MiB-aligned spot below ``piece`` in a gap, not already planned for another."""
    for gap_start, gap_length in gaps:
        spot = align_up(gap_start, MiB)
        while spot + piece.length <= gap_start + gap_length and spot < piece.offset:
            clash = next((t for t in taken if t[0] < spot + piece.length and spot < t[0] + t[1]), None)
            if clash is None:
                return spot
            spot = align_up(clash[0] + clash[1], MiB)
        if gap_start >= piece.offset:
            break
    return None


def _used_end(disk: VhdxDisk) -> int:
    pieces = _pieces(disk)
    end = max([_fixed_end(disk)] + [p.offset + p.length for p in pieces])
    return align_up(end, MiB)


__all__ = ["compact"]
