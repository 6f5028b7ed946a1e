"""``vhdkit.convert()``: any format and type to any other, as a copy of what the source holds.

The target is created new (never over an existing file unless asked), filled by the copy engine
(vhdkit.copy: data extents only, zero chunks skipped, so dynamic and raw targets stay sparse),
flushed, and only then left in place: if anything fails the half-made target is removed and the
source, opened read-only throughout, is untouched.

Azure takes fixed VHDs whose size is a whole number of MiB. ``azure=True`` makes one and refuses a
source whose size is not, unless ``round_up=True`` says to grow the target to the next MiB (the
added space reads as zeros).
"""

from __future__ import annotations

import os

from .. import formats
from ..copy.engine import DEFAULT_CHUNK, CopyStats, ProgressCallback, copy_disk
from ..formats import VHD, Format
from ..storage import is_url
from ..units import MiB, align_up, format_size
from .create import create, open_unpublished, plan_image, publish, refuse_existing, write_temporary
from .open import open_image

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Sequence

AZURE_MAX_SIZE = 2040 << 30  # a VHD cannot be larger; Azure's own per-disk limits are lower still


def convert(source: str | os.PathLike[str], target: str | os.PathLike[str], *,
            format: str | Format | None = None,  # noqa: A002
            type: str = "dynamic", block_size: int | None = None, overwrite: bool = False,  # noqa: A002
            azure: bool = False, round_up: bool = False, verify: bool = False, sync: bool = True,
            progress: ProgressCallback | None = None, tolerate_checksum: bool = False,
            chunk_size: int = DEFAULT_CHUNK,
            allowed_parent_dirs: Sequence[str | os.PathLike[str]] | None = None) -> CopyStats:
    """Copy ``source`` into a new image ``target``; returns what the copy did.

    A local target is built under a temporary name and given its name only when complete (and,
    with ``sync``, durable: flushed, then the folder flushed). ``sync=False`` skips both flushes,
    as qemu-img convert does by default (cache=unsafe): faster, but a crash soon after may lose it.
    """
    if azure:
        format, type = VHD, "fixed"  # noqa: A001
    fmt = formats.for_target(target, format)
    if type not in ("dynamic", "fixed"):
        raise ValueError(f"a converted image is dynamic or fixed, not {type!r}")
    with open_image(source, tolerate_checksum=tolerate_checksum, allowed_parent_dirs=allowed_parent_dirs) as src:
        size = src.size
        if azure:
            size = _azure_size(size, round_up)
        if src.logical_sector_size not in fmt.logical_sector_sizes:
            holders = [f.title for f in formats.FORMATS if src.logical_sector_size in f.logical_sector_sizes]
            raise ValueError(f"{src.name} has {src.logical_sector_size}-byte sectors; only {' or '.join(holders)} "
                             "can hold those")
        options: dict[str, Any] = dict(format=fmt, type=type, block_size=block_size)
        if len(fmt.logical_sector_sizes) > 1:  # the format records the sector sizes: keep the source's
            options["logical_sector_size"] = src.logical_sector_size
            options["physical_sector_size"] = max(src.physical_sector_size, src.logical_sector_size)
        text = os.fspath(target)
        if is_url(text) and not text.startswith("file://"):
            with create(target, size, overwrite=overwrite, **options) as dst:
                return copy_disk(src, dst, chunk_size=chunk_size, progress=progress, verify=verify)
        refuse_existing(text, overwrite)
        temp = write_temporary(text, *plan_image(target, size, **options), sync=False)  # one flush at the end
        try:
            with open_unpublished(temp, fmt) as dst:
                dst.flush_on_close = sync
                stats = copy_disk(src, dst, chunk_size=chunk_size, progress=progress, verify=verify, flush=sync)
            publish(temp, text, overwrite, sync=sync)
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise
    return stats


def _azure_size(size: int, round_up: bool) -> int:
    if size % MiB:
        if not round_up:
            raise ValueError(f"Azure needs a whole number of MiB; {size} bytes is {size / MiB:.4f} MiB. "
                             f"Use round_up / --round-up to make the target {align_up(size, MiB)} bytes "
                             f"({format_size(align_up(size, MiB))}) with zeros at the end")
        size = align_up(size, MiB)
    if size > AZURE_MAX_SIZE:
        raise ValueError(f"{format_size(size)} is larger than a VHD can be (2040 GiB)")
    return size
