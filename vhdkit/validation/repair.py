"""``check --repair``: fix what can be fixed without touching data that might be in use.

Each format's repair lives beside its check (validation/vhdx.py ``repair_vhdx``, validation/vhd.py
``repair_vhd``); this module holds what they share.

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

from ..storage import Store
from .report import Report


def trailing_leak(store: Store, before: Report, end: int) -> int | None:
    """Where a leak that runs up to ``end`` (the end of the file, or a VHD's footer) starts."""
    for f in before.findings:
        if f.severity == "leak" and f.structure == "file space" and f.offset is not None and f.length:
            if f.offset + f.length == end:
                return f.offset
    return None


def cut_trailing_leak(store: Store, before: Report, done: list[str]) -> None:
    old = store.size()
    start = trailing_leak(store, before, old)
    if start is None:
        return
    store.truncate(start)
    store.flush()
    done.append(f"cut {old - start} leaked bytes from the end of the file (at {start:#x})")
