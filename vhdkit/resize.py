"""``vhdkit.resize`` and ``vhdkit.compact``: Resize-VHD and Optimize-VHD, crash-safe."""

from __future__ import annotations

import os

from .errors import VhdkitError
from .open import open as open_image


def resize(target: str | os.PathLike[str], size: int | str, *, force: bool = False) -> int:
    """Resize the image at ``target`` to ``size`` bytes ("+10G" / "-1G": relative, as qemu-img
    resize takes it). Grows VHD and VHDX of every type (the new part reads zeros); shrinks VHDX
    and raw only over space that holds no data, unless ``force``. Returns the new size."""
    from .units import parse_size

    with open_image(target, "r+") as disk:
        if isinstance(size, str) and size[:1] in "+-":
            delta = parse_size(size[1:])
            new_size = disk.size + delta if size[0] == "+" else disk.size - delta
        else:
            new_size = size if isinstance(size, int) else parse_size(size)
        if new_size <= 0:
            raise VhdkitError(f"the new size must be positive, not {new_size}")
        disk.resize(new_size, force=force)
        return disk.size


def compact(target: str | os.PathLike[str]) -> object:
    """Compact the image at ``target`` (Optimize-VHD): blocks of zeros stop being stored, the
    rest moves down, the file is cut. Refused while another writer has it open (the advisory lock
    every vhdkit writer takes). Returns the report (``reclaimed`` bytes, blocks zeroed and moved)."""
    with open_image(target, "r+") as disk:
        return disk.compact()
