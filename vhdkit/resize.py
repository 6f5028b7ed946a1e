"""``vhdkit.resize``: change an image's virtual size (Resize-VHD), crash-safe."""

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
