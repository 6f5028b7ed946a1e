"""Structural validation of a VHD file (Virtual Hard Disk Image Format Specification v1.0).

The footer is kept twice in dynamic and differencing disks (at the end, and a copy at offset 0):
both are checked, and a damaged or differing copy is a warning the image survives. A checksum
that does not match on the footer in use, or on the dynamic header, is an error (qemu refuses
such files; libvhdi and dissect read them), as is a block that lies past the footer or over
another structure. A whole unreferenced block inside the file is a leak.
"""

from __future__ import annotations

import os

from ..disk import VirtualDisk
from ..errors import VhdkitError
from ..storage import Borrowed, Store, open_store
from ..units import format_size
from ..vhd import layout as L
from ..vhd.image import VhdDisk, parse_footer
from .common import check_parent, error_from, report_overlaps
from .repair import trailing_leak
from .report import ERROR, LEAK, WARNING, Report
from .space import SpaceMap

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable


def check_vhd(store: Store, report: Report, open_parent: Callable[[], VirtualDisk] | None = None) -> None:
    file_size = store.size()
    try:
        disk = VhdDisk(Borrowed(store), tolerate_checksum=True)
    except VhdkitError as e:
        error_from(report, e, "VHD footer")
        return
    footer_at = file_size - L.FOOTER_SIZE
    used = disk.footer_info
    if not used.checksum_ok:
        report.add(ERROR, "VHD footer", used.offset,
                   f"checksum mismatch: stored {used.fields.checksum:#010x}, computed "
                   f"{L.checksum(used.raw, L.FOOTER_CHECKSUM_OFFSET):#010x} (qemu refuses the file)")
    end = parse_footer(store.pread(footer_at, L.FOOTER_SIZE), footer_at)
    if end is None or not end.checksum_ok:
        if used.offset != footer_at:
            report.add(WARNING, "VHD footer", footer_at,
                       "the footer at the end of the file is missing or damaged; its copy at offset 0 is used. "
                       "--repair rewrites it")
    if disk.header is not None:  # dynamic and differencing disks keep a copy at offset 0
        copy = parse_footer(store.pread(0, L.FOOTER_SIZE), 0)
        if used.checksum_ok and used.offset == footer_at and (copy is None or not copy.checksum_ok):
            report.add(WARNING, "VHD footer copy", 0,
                       "the footer copy at offset 0 is missing or damaged. --repair rewrites it")
        elif copy is not None and end is not None and copy.checksum_ok and end.checksum_ok and copy.raw != end.raw:
            report.add(WARNING, "VHD footer copy", 0, "the footer copy at offset 0 differs from the footer at the end")
        for problem in disk.problems:
            if problem.startswith("dynamic header checksum"):
                report.add(ERROR, "VHD dynamic header", disk.header_offset, problem)
    f = disk.footer
    chs = disk.chs_size
    if chs != f.current_size and _sized_by_chs(f):
        report.add(WARNING, "VHD footer", used.offset,
                   f"readers disagree on the size: CurrentSize is {f.current_size} bytes (Windows, libvhdi, dissect), "
                   f"the CHS geometry {f.cylinders}/{f.heads}/{f.sectors_per_track} gives {chs} (qemu, for creator "
                   f"{bytes(f.creator_application)!r})")
    space = SpaceMap()
    space.claim(footer_at, L.FOOTER_SIZE, "VHD footer")
    if disk.header is None:
        data_end = f.current_size
        space.claim(0, data_end, "fixed disk data")
        slack = footer_at - data_end
        if slack >= L.SECTOR:
            report.leaked_bytes += slack
            report.add(LEAK, "file space", data_end,
                       f"{format_size(slack)} between the disk's data and its footer belong to nothing", slack)
    else:
        _check_dynamic(disk, store, file_size, space, report)
    if disk.differencing and open_parent is not None and not report.count(ERROR):
        check_parent(open_parent, report)


def _check_dynamic(disk: VhdDisk, store: Store, file_size: int, space: SpaceMap, report: Report) -> None:
    h = disk.header
    assert h is not None and disk.bat is not None
    footer_at = file_size - L.FOOTER_SIZE
    space.claim(0, L.FOOTER_SIZE, "VHD footer copy")
    space.claim(disk.header_offset, L.DYNAMIC_HEADER_SIZE, "VHD dynamic header")
    bat_bytes = -(-(h.max_table_entries * 4) // L.SECTOR) * L.SECTOR
    space.claim(h.table_offset, min(bat_bytes, file_size - h.table_offset), "VHD BAT")
    for i, entry in enumerate(h.parent_locators):
        if bytes(entry.platform_code) == L.PLATFORM_NONE or entry.platform_data_length == 0:
            continue
        name = f"parent locator {i}"
        where = disk.header_offset + L.DynamicHeader.offset_of("parent_locators") + i * L.ParentLocatorEntry.size
        end = entry.platform_data_offset + entry.platform_data_length
        if end > footer_at:
            report.add(ERROR, name, where, f"its data ({entry.platform_data_length} bytes at "
                       f"{entry.platform_data_offset:#x}) lies past the footer")
            continue
        space.claim(entry.platform_data_offset, -(-entry.platform_data_length // L.SECTOR) * L.SECTOR, name, where)
    block_bytes = disk.bitmap_bytes + disk.block_size
    blocks = -(-disk.size // disk.block_size)
    for block in range(blocks):
        entry = disk.bat[block]
        if entry == L.BAT_UNUSED:
            continue
        name = f"BAT entry {block}"
        where = h.table_offset + block * 4
        start = entry * L.SECTOR
        if start < L.FOOTER_SIZE or start + block_bytes > footer_at:
            report.add(ERROR, name, where, f"points to sector {entry:#x}: the block ({format_size(block_bytes)} with "
                       f"its bitmap) would end at {start + block_bytes:#x}, past the footer at {footer_at:#x}")
            continue
        space.claim(start, block_bytes, name, where)
    report_overlaps(space, report)
    # Gaps shorter than a block are alignment padding (writers align blocks differently); a whole
    # block's worth of space that nothing references is a leak.
    for offset, length in space.gaps(0, footer_at):
        if length >= block_bytes:
            report.leaked_bytes += length
            report.add(LEAK, "file space", offset,
                       f"{format_size(length)} at {offset:#x} are allocated in the file but nothing references them",
                       length)


# specs/vhd.md, "Size": qemu up to 9.x takes the size from CHS unless the creator is one of
# these or the CHS is the maximum; qemu 10 takes it from CHS only for "vpc " and "qemu".
_QEMU9_CURRENT_SIZE_CREATORS = (b"win ", b"qem2", b"d2v ", b"CTXS", b"tap\0")
_QEMU10_CHS_CREATORS = (b"vpc ", b"qemu")


def _sized_by_chs(f: object) -> bool:
    """Whether some qemu version sizes this disk by its CHS geometry rather than CurrentSize."""
    creator = bytes(f.creator_application)  # type: ignore[attr-defined]
    if (f.cylinders, f.heads, f.sectors_per_track) == L.MAX_CHS:  # type: ignore[attr-defined]
        return False
    return creator not in _QEMU9_CURRENT_SIZE_CREATORS or creator in _QEMU10_CHS_CREATORS


def repair_vhd(target: str | os.PathLike[str], before: Report) -> list[str]:
    """Repair what ``before`` found and can be repaired safely (see validation.repair); returns
    what was done."""
    done: list[str] = []
    if not {f.structure for f in before.findings} & {"VHD footer", "VHD footer copy", "file space"}:
        return done
    store = open_store(target, writable=True)
    try:
        with VhdDisk(Borrowed(store)) as disk:  # refuses (CorruptImageError) when no footer checksum is good
            good, has_copy = disk.footer_info.raw, disk.header is not None
        size = store.size()
        if store.pread(size - L.FOOTER_SIZE, L.FOOTER_SIZE) != good:
            store.pwrite(size - L.FOOTER_SIZE, good)
            store.flush()
            done.append("rewrote the VHD footer at the end of the file from its good copy")
        if has_copy and store.pread(0, L.FOOTER_SIZE) != good:
            store.pwrite(0, good)
            store.flush()
            done.append("rewrote the VHD footer copy at offset 0 from the footer")
        start = trailing_leak(store, before, size - L.FOOTER_SIZE)
        if start is not None:
            store.pwrite(start, good)  # the footer at its new place first, then cut after it
            store.flush()
            old_size = store.size()
            store.truncate(start + L.FOOTER_SIZE)
            store.flush()
            done.append(f"moved the footer to {start:#x} and cut {old_size - start - L.FOOTER_SIZE} leaked bytes")
    finally:
        store.close()
    return done
