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
from typing import Any

from .copy import CopyStats, copy_disk
from .copy.engine import DEFAULT_CHUNK, ProgressCallback
from .create import create, open_unpublished, plan_image, publish, refuse_existing, write_temporary
from .open import open as open_image
from .storage import is_url
from .units import MiB, align_up, format_size

#: What the file name's extension says the format is, when the caller does not say.
EXTENSIONS = {".vhdx": "vhdx", ".avhdx": "vhdx", ".vhd": "vhd", ".avhd": "vhd", ".raw": "raw", ".img": "raw",
              ".bin": "raw"}
AZURE_MAX_SIZE = 2040 << 30  # a VHD cannot be larger; Azure's own per-disk limits are lower still


def target_format(target: str | os.PathLike[str], format: str | None) -> str:  # noqa: A002
    if format:
        return format
    ext = os.path.splitext(os.fspath(target))[1].lower()
    if ext not in EXTENSIONS:
        raise ValueError(f"cannot tell the target format from {ext or 'no extension'!r}: say -O vhdx|vhd|raw")
    return EXTENSIONS[ext]


def convert(source: str | os.PathLike[str], target: str | os.PathLike[str], *, format: str | None = None,  # noqa: A002
            type: str = "dynamic", block_size: int | None = None, overwrite: bool = False,  # noqa: A002
            azure: bool = False, round_up: bool = False, verify: bool = False, sync: bool = True,
            progress: ProgressCallback | None = None, tolerate_checksum: bool = False,
            chunk_size: int = DEFAULT_CHUNK) -> CopyStats:
    """Copy ``source`` into a new image ``target``; returns what the copy did.

    A local target is built under a temporary name and given its name only when complete (and,
    with ``sync``, durable: flushed, then the folder flushed). ``sync=False`` skips both flushes,
    as qemu-img convert does by default (cache=unsafe): faster, but a crash soon after may lose it.
    """
    if azure:
        format, type = "vhd", "fixed"  # noqa: A001
    fmt = target_format(target, format)
    if type not in ("dynamic", "fixed"):
        raise ValueError(f"a converted image is dynamic or fixed, not {type!r}")
    with open_image(source, tolerate_checksum=tolerate_checksum) as src:
        size = src.size
        if azure:
            size = _azure_size(size, round_up)
        if fmt != "vhdx" and src.logical_sector_size != 512:
            raise ValueError(f"{src.name} has {src.logical_sector_size}-byte sectors; only VHDX can hold those")
        options: dict[str, Any] = dict(format=fmt, type=type, block_size=block_size)
        if fmt == "vhdx":
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
