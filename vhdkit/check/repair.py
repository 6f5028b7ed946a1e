"""``check --repair``: fix what can be fixed without touching data that might be in use.

What is repaired, and why each is safe:

- a VHDX log that needs replay: replayed (a read-write open does it, per [MS-VHDX] 2.3.3, with
  the header protocol of 2.2.2.1), exactly as Hyper-V and ``qemu-img check -r all`` would;
- one damaged VHDX header: both copies rewritten from the good one (2.2.2.1's update, twice);
  the good copy stays valid until the new one is written and flushed;
- one damaged region table: overwritten with the good one; the good one is not touched;
- a damaged or missing VHD footer (or its copy at offset 0): rewritten from the good one;
- leaked space at the end of the file: the file is cut after the last structure anything
  references (a VHD's footer is first written at its new place, then the file cut).

Never repaired: blocks that point outside the file or over each other, leaks between blocks
(reclaiming them moves data: ``vhdkit compact``), bad checksums with no good copy to take. The
image is opened for writing, so a writer holding it (vhdkit takes an exclusive lock) is refused.
"""

from __future__ import annotations

import os

from ..storage import Borrowed, Store, open_store
from .report import Report


def repair(target: str | os.PathLike[str], before: Report) -> list[str]:
    """Repair what ``before`` found and can be repaired safely; return what was done."""
    done: list[str] = []
    structures = {f.structure for f in before.findings}
    if before.format == "vhdx":
        needs = {"log", "VHDX header 1", "VHDX header 2", "region table 1", "region table 2", "file space"}
        if structures & needs:
            _repair_vhdx(target, before, done)
    elif before.format == "vhd":
        if structures & {"VHD footer", "VHD footer copy", "file space"}:
            _repair_vhd(target, before, done)
    return done


def _repair_vhdx(target: str | os.PathLike[str], before: Report, done: list[str]) -> None:
    from ..vhdx import layout as L
    from ..vhdx.headers import select_current_header, write_updated_header
    from ..vhdx.image import VhdxDisk
    from ..vhdx.regions import read_region_tables

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
        _cut_trailing_leak(store, before, done)
    finally:
        store.close()


def _repair_vhd(target: str | os.PathLike[str], before: Report, done: list[str]) -> None:
    from ..vhd import layout as L
    from ..vhd.image import VhdDisk

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
        start = _trailing_leak(store, before, size - L.FOOTER_SIZE)
        if start is not None:
            store.pwrite(start, good)  # the footer at its new place first, then cut after it
            store.flush()
            old_size = store.size()
            store.truncate(start + L.FOOTER_SIZE)
            store.flush()
            done.append(f"moved the footer to {start:#x} and cut {old_size - start - L.FOOTER_SIZE} leaked bytes")
    finally:
        store.close()


def _trailing_leak(store: Store, before: Report, end: int) -> int | None:
    """Where a leak that runs up to ``end`` (the end of the file, or a VHD's footer) starts."""
    for f in before.findings:
        if f.severity == "leak" and f.structure == "file space" and f.offset is not None and f.length:
            if f.offset + f.length == end:
                return f.offset
    return None


def _cut_trailing_leak(store: Store, before: Report, done: list[str]) -> None:
    old = store.size()
    start = _trailing_leak(store, before, old)
    if start is None:
        return
    store.truncate(start)
    store.flush()
    done.append(f"cut {old - start} leaked bytes from the end of the file (at {start:#x})")
