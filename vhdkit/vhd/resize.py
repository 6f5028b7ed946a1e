"""Grow a VHD (fixed, dynamic or differencing), safely without a log.

VHD has no log, so every step is one the file survives a crash after: each write either lands in
space nothing refers to yet, or is a single 512-byte sector (atomic on every disk), and a flush
orders each step before the next refers to it.

Dynamic and differencing: (1) the BAT's new entries (0xFFFFFFFF, unused) — in place when the
space before the first block holds them, else a whole new BAT where the footer was, the footer
(unchanged) moved after it first; (2) the dynamic header's first sector (TableOffset,
MaxTableEntries, checksum: all inside it); (3) the footer with the new CurrentSize and geometry,
at the end, then its copy at offset 0. Until (3) the disk is the old size.

Fixed: (1) space reserved and the unchanged footer written at the new end; (2) the old footer's
sector, now inside the disk, zeroed; (3) the footer at the end with the new size.

Shrinking a VHD is refused, as Resize-VHD refuses it.
"""

from __future__ import annotations

import struct

from ..errors import ReadOnlyError, ResizeRefusedError
from ..units import align_up, format_size
from . import layout as L
from .image import VhdDisk, parse_footer


def resize(disk: VhdDisk, new_size: int, *, force: bool = False) -> None:
    if not disk.writable():
        raise ReadOnlyError(f"{disk.name} is open read-only")
    if new_size <= 0 or new_size % L.SECTOR:
        raise ResizeRefusedError("the new size must be a positive multiple of 512")
    if new_size > L.MAX_SIZE:
        raise ResizeRefusedError(f"{format_size(new_size)} is larger than the VHD maximum of 2040 GiB")
    if new_size < disk.size:
        raise ResizeRefusedError("a VHD cannot be shrunk (convert it to VHDX, which can)")
    if new_size == disk.size:
        return
    with disk._write_lock:  # noqa: SLF001 - this package's own disk
        if disk.bat is None:
            _grow_fixed(disk, new_size)
        else:
            _grow_dynamic(disk, new_size)
        disk.size = new_size


def _footer_for(disk: VhdDisk, new_size: int) -> bytes:
    """The footer with the new size. OriginalSize too: the specification calls it informational,
    but libvhdi reports it as the media size (measured: a grown VHD with only CurrentSize changed
    read as its old size there), and "read the same in every reader" comes first."""
    raw = bytearray(disk.footer_info.raw)
    c, h, s = L.chs_for_size(new_size)
    struct.pack_into(">QQHBB", raw, 40, new_size, new_size, c, h, s)  # OriginalSize, CurrentSize, geometry
    raw[L.FOOTER_CHECKSUM_OFFSET : L.FOOTER_CHECKSUM_OFFSET + 4] = bytes(4)
    raw[L.FOOTER_CHECKSUM_OFFSET : L.FOOTER_CHECKSUM_OFFSET + 4] = \
        L.checksum(raw, L.FOOTER_CHECKSUM_OFFSET).to_bytes(4, "big")
    return bytes(raw)


def _adopt_footer(disk: VhdDisk, raw: bytes, offset: int) -> None:
    parsed = parse_footer(raw, offset)
    assert parsed is not None and parsed.checksum_ok
    disk.footer_info = parsed
    disk.footer = parsed.fields


def _grow_fixed(disk: VhdDisk, new_size: int) -> None:
    store = disk.file_store
    old_size = disk.size
    reserve = getattr(store, "preallocate", None)
    if reserve is not None:
        reserve(old_size + L.FOOTER_SIZE, new_size - old_size)
    store.pwrite(new_size, disk.footer_info.raw)  # still the old size: the file is just longer
    store.flush()
    store.pwrite(old_size, bytes(L.FOOTER_SIZE))  # the old footer's place is disk space now
    store.flush()
    footer = _footer_for(disk, new_size)
    store.pwrite(new_size, footer)
    store.flush()
    _adopt_footer(disk, footer, new_size)


def _grow_dynamic(disk: VhdDisk, new_size: int) -> None:
    from array import array

    store = disk.file_store
    header = disk.header
    assert header is not None and disk.bat is not None
    old_entries = header.max_table_entries
    entries = max(old_entries, -(-new_size // disk.block_size))
    table_bytes = align_up(entries * 4, L.SECTOR)
    table_offset = header.table_offset
    if entries > old_entries:
        bat = array("I", disk.bat) + array("I", [L.BAT_UNUSED]) * (entries - old_entries)
        raw_bat = bytearray(_be(bat)) + b"\xff" * (table_bytes - entries * 4)
        if table_offset + table_bytes <= _first_used_after(disk, table_offset):
            store.pwrite(table_offset + old_entries * 4, bytes(raw_bat[old_entries * 4 :]))
        else:  # no room: the BAT moves to where the footer is, the footer after it
            footer_at = store.size() - L.FOOTER_SIZE
            table_offset = footer_at
            store.pwrite(footer_at + table_bytes, disk.footer_info.raw)
            store.flush()
            store.pwrite(table_offset, bytes(raw_bat))
        store.flush()
        sector = bytearray(store.pread(disk.header_offset, L.DYNAMIC_HEADER_SIZE))
        struct.pack_into(">Q", sector, 16, table_offset)  # TableOffset
        struct.pack_into(">I", sector, 28, entries)  # MaxTableEntries
        sector[L.DYNAMIC_HEADER_CHECKSUM_OFFSET : L.DYNAMIC_HEADER_CHECKSUM_OFFSET + 4] = \
            L.checksum(sector, L.DYNAMIC_HEADER_CHECKSUM_OFFSET).to_bytes(4, "big")
        store.pwrite(disk.header_offset, bytes(sector[: L.SECTOR]))  # every changed field is in sector 0
        store.flush()
        disk.header = L.DynamicHeader.parse(bytes(sector))
        disk.bat = bat
    footer = _footer_for(disk, new_size)
    end = store.size() - L.FOOTER_SIZE
    store.pwrite(end, footer)
    store.flush()
    store.pwrite(0, footer)
    store.flush()
    _adopt_footer(disk, footer, end)


def _first_used_after(disk: VhdDisk, table_offset: int) -> int:
    """The first byte after the BAT that something uses: a block, a parent locator, the footer."""
    assert disk.bat is not None and disk.header is not None
    candidates = [disk.file_store.size() - L.FOOTER_SIZE]
    candidates += [e * L.SECTOR for e in disk.bat if e != L.BAT_UNUSED and e * L.SECTOR > table_offset]
    candidates += [loc.platform_data_offset for loc in disk.header.parent_locators
                   if loc.platform_data_offset > table_offset and loc.platform_data_length]
    if disk.header_offset > table_offset:
        candidates.append(disk.header_offset)
    return min(candidates)


def _be(bat: "object") -> bytes:
    import sys
    from array import array

    out = array("I", bat)  # type: ignore[call-overload]
    if sys.byteorder == "little":
        out.byteswap()
    return out.tobytes()
