"""Rewriting a differencing VHD's parent locators (Set-VHD -ParentPath), crash-safe without a log.

The dynamic header (1024 bytes, two sectors) names the parent (ParentUnicodeName) and points at
each locator's data; the footer's DataOffset points at the header. Only a footer write is one
sector (atomic), so the change is made by writing a whole new header somewhere no footer points
yet and then switching the footers to it (specs/vhd.md, "Moving a parent"):

1. the new header and its locator data go where the footer at the end was, a new footer (pointing
   at them) after them; flushed between, so a footer never points at an unwritten header;
2. the footer copy at offset 0 is pointed at the new header: from here every reader sees the new
   paths (vhdkit reads the footer at the end, qemu and others the copy at 0: each points at a whole
   header at every step);
3. when the new paths fit the old header's locator spaces, the header goes back to its place in
   the same way (its locators written into the old spaces, then the copy at 0, then the end
   footer), the footer moves back to where it was and the file is cut after it. When they do not
   fit, the header stays after the blocks: the next block is appended after the footer's place as
   always, so it stays out of their way.

A run killed between steps leaves a disk whose footers point at a whole header, old or new; the
footers disagreeing or a leaked tail is what ``vhdkit check`` reports and ``--repair`` ends.
"""

from __future__ import annotations

import bisect
import itertools
import ntpath
from array import array

from ..errors import RefusedError
from ..runtime_types import Protocol
from ..storage import Store
from ..units import align_up
from . import layout as L

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _Differencing(Protocol):
    """What this module reads of an open differencing VhdDisk (named so, not imported: the disk
    calls in here)."""

    name: str
    store: Store
    file_store: Store
    header: Any  # layout.DynamicHeader
    header_offset: int
    footer_info: Any  # image.ParsedFooter: the footer the disk was opened on
    bat: array | None
    bitmap_bytes: int
    block_size: int

MAX_PATH_CHARS = 32767  # a Windows path's longest (\\?\ form), in UTF-16 code units


def rewrite_parent_locators(disk: _Differencing, relative_path: str, absolute_path: str | None) -> None:
    """Point ``disk``'s locators at the parent's new paths (W2ru relative, W2ku absolute), the
    header's parent name at its file name; the parent's identity and the data stay as they are."""
    assert disk.header is not None and disk.footer_info.offset > 0
    store = disk.store
    paths = [(L.PLATFORM_W2RU, relative_path)] + ([(L.PLATFORM_W2KU, absolute_path)] if absolute_path else [])
    datas = []
    for code, path in paths:
        if not path or "\0" in path or len(path) > MAX_PATH_CHARS:
            raise RefusedError(f"{disk.name}: {path!r} cannot be a parent path (empty, a NUL, or longer than "
                               f"{MAX_PATH_CHARS} characters)")
        datas.append((code, path.encode("utf-16-le")))
    name = ntpath.basename(relative_path.replace("/", "\\"))
    old_offset = disk.header_offset
    footer_at = disk.footer_info.offset  # the footer at the end: the disk was opened on it (not damaged)
    home = _old_spaces(disk, [data for _code, data in datas], footer_at)
    # 1. the new header, its locators after it, over the old end footer; then a footer after them
    new_offset = align_up(footer_at, L.SECTOR)
    at = new_offset + L.DYNAMIC_HEADER_SIZE
    placed = []
    for code, data in datas:
        placed.append((code, data, at))
        at += align_up(len(data), L.SECTOR)
    header = _header(disk, name, placed)
    for _code, data, where in placed:
        store.pwrite(where, data + bytes(align_up(len(data), L.SECTOR) - len(data)))
    store.pwrite(new_offset, header)
    store.flush()
    footer = _footer(disk, new_offset)
    store.pwrite(at, footer)
    store.flush()
    # 2. the copy at 0 follows: every reader now sees the new paths
    store.pwrite(0, footer)
    store.flush()
    end = at
    # 3. back to the old place when the new paths fit its spaces
    if home is not None:
        moved = [(code, data, where) for (code, data, _), where in zip(placed, home)]
        for _code, data, where in moved:
            store.pwrite(where, data + bytes(align_up(len(data), L.SECTOR) - len(data)))
        store.pwrite(old_offset, _header(disk, name, moved))
        store.flush()
        back = _footer(disk, old_offset)
        store.pwrite(0, back)
        store.flush()
        store.pwrite(end, back)
        store.flush()
        store.pwrite(footer_at, back)  # the footer where it was; the file ends after it
        store.flush()
        store.truncate(footer_at + L.FOOTER_SIZE)
        store.flush()


def _old_spaces(disk: _Differencing, datas: list[bytes], file_end: int) -> list[int] | None:
    """Where in the old locators' reserved spaces each of ``datas`` (padded to whole sectors) can
    go, one space each, largest into largest; None when they do not all fit. A space counts only
    if it lies, whole and sector-aligned, clear of the footers, the header, the BAT and every
    block: an image's own offsets are not trusted to say where writing is harmless."""
    h = disk.header
    assert h is not None and disk.bat is not None
    block_bytes = disk.bitmap_bytes + disk.block_size
    taken = sorted([(0, L.FOOTER_SIZE), (disk.header_offset, L.DYNAMIC_HEADER_SIZE),
                    (h.table_offset, align_up(h.max_table_entries * 4, L.SECTOR))]
                   + [(e * L.SECTOR, block_bytes) for e in disk.bat if e != L.BAT_UNUSED])
    starts = [start for start, _ in taken]
    reach = list(itertools.accumulate((start + length for start, length in taken), max))  # furthest end so far
    spaces = []
    for entry in h.parent_locators:
        if bytes(entry.platform_code) == L.PLATFORM_NONE or not entry.platform_data_length:
            continue
        offset, space = entry.platform_data_offset, entry.platform_data_space
        if space < entry.platform_data_length:
            space *= L.SECTOR  # the specification's unit (Windows writes bytes)
        space = space // L.SECTOR * L.SECTOR
        if offset % L.SECTOR or not space or space > 1 << 20 or offset + space > file_end:
            continue
        before = bisect.bisect_left(starts, offset + space)  # the structures starting before its end
        if before and reach[before - 1] > offset:
            continue
        spaces.append((space, offset))
    if len(spaces) < len(datas):
        return None
    spaces.sort(reverse=True)
    where = [0] * len(datas)
    for k, (space, offset) in zip(sorted(range(len(datas)), key=lambda k: -len(datas[k])), spaces):
        if align_up(len(datas[k]), L.SECTOR) > space:
            return None
        where[k] = offset
    return where


def _header(disk: _Differencing, name: str, placed: list[tuple[bytes, bytes, int]]) -> bytes:
    """The disk's header with new locators and parent name, every other field kept."""
    h = disk.header
    assert h is not None
    return L.build_dynamic_header(
        table_offset=h.table_offset, max_table_entries=h.max_table_entries, block_size=h.block_size,
        parent_unique_id=bytes(h.parent_unique_id), parent_name=name,
        locators=[(code, len(data), where) for code, data, where in placed], data_offset=h.data_offset,
        header_version=h.header_version, parent_timestamp=h.parent_timestamp, reserved=h.reserved,
        reserved2=bytes(h.reserved2))


def _footer(disk: _Differencing, header_offset: int) -> bytes:
    """The footer the disk was opened on, pointing at ``header_offset``."""
    raw = bytearray(disk.footer_info.raw)
    at = L.Footer.offset_of("data_offset")
    raw[at : at + 8] = header_offset.to_bytes(8, "big")
    return L.with_checksum(raw, L.FOOTER_CHECKSUM_OFFSET)
