"""``vhdkit.merge``: fold a differencing disk into its parent, or a chain into one new disk
(Merge-VHD).

Into the parent: every range the child stores itself is written into the parent (zeros too: they
hide the parent's bytes), then the parent is flushed, and only then is the child removed. Read
through the child, the chain is the same disk at every moment of that, so a crash anywhere leaves
a usable chain; a VHDX parent keeps its DataWriteGuid while the child's data goes in (its log
makes each write crash-safe) and changes it at the end, so any other child made against the
old parent is refused rather than read wrong. To a new disk: the chain, read through, is
converted into a new image (built under a temporary name, then named), and the chain is left.
"""

from __future__ import annotations

import os

from .. import formats
from ..disk import ExtentState, VirtualDisk
from ..errors import MergeRefusedError
from ..runtime_types import NamedTuple
from .open import allowed_parent_dirs_for, open_image

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Sequence

CHUNK = 1 << 20


class MergeReport(NamedTuple):
    child: str
    result: str  # the parent merged into, or the new image
    bytes_merged: int
    child_removed: bool


def merge(child: str | os.PathLike[str], *, to: str | os.PathLike[str] | None = None,
          remove_child: bool = True, progress: Callable[[int, int], None] | None = None,
          allowed_parent_dirs: Sequence[str | os.PathLike[str]] | None = None) -> MergeReport:
    """Merge ``child`` into its parent (default), or the whole chain into a new image ``to``.
    ``allowed_parent_dirs``: where the chain's parents may lie (see vhdkit.open)."""
    allowed = allowed_parent_dirs_for(child, allowed_parent_dirs)  # the chain's, not each parent's own
    if to is not None:
        from .convert import convert  # loads the copy engine: only this branch needs it

        stats = convert(child, to, progress=progress, allowed_parent_dirs=allowed)
        return MergeReport(os.fspath(child), os.fspath(to), stats.bytes_written, False)
    with open_image(child, allowed_parent_dirs=allowed) as probe:
        if probe.parent is None:
            raise MergeRefusedError(f"{probe.name} is not a differencing disk: there is nothing to merge it into")
        parent_path = probe.parent.name
    with open_image(child, allowed_parent_dirs=allowed) as source, \
            open_image(parent_path, "r+", allowed_parent_dirs=allowed) as parent:
        merged = merge_into(source, parent, progress=progress)
    if remove_child:
        os.unlink(os.fspath(child))
    return MergeReport(os.fspath(child), parent_path, merged, remove_child)


def merge_into(child: VirtualDisk, parent: VirtualDisk, *, progress: Callable[[int, int], None] | None = None) -> int:
    """Write what ``child`` stores itself into ``parent`` (open read-write); returns the bytes."""
    if parent.size < child.size:  # a child grown past its parent: the parent grows first
        formats.of(parent).load("resize")(parent, child.size)
    ranges = [(e.offset, e.length) for e in child.extents(through_parents=False) if e.state is ExtentState.DATA]
    total = sum(length for _, length in ranges)
    parent.begin_merge()
    done = 0
    buf = bytearray(CHUNK)
    try:
        for offset, length in ranges:
            pos, end = offset, offset + length
            while pos < end:
                n = min(CHUNK, end - pos)
                view = memoryview(buf)[:n]
                child.preadinto(pos, view)
                parent.pwrite(pos, view)
                pos += n
                done += n
                if progress is not None:
                    progress(done, total)
        parent.flush()
    except BaseException:
        parent.end_merge(changed=False)  # what was written is the child's data: the chain reads the same
        raise
    parent.end_merge(changed=done > 0)
    return done
