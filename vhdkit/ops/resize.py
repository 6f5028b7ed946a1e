"""``vhdkit.resize`` and ``vhdkit.compact``: Resize-VHD and Optimize-VHD, crash-safe.

Each format's own module does the work (``formats.Format.resize`` / ``.compact`` name it);
this module opens the image for writing and hands it over.
"""

from __future__ import annotations

import os

from .. import formats
from ..disk import CompactReport
from ..errors import ResizeRefusedError, UnsupportedFeatureError
from ..units import parse_size
from .open import open_image

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence


def resize(target: str | os.PathLike[str], size: int | str, *, force: bool = False,
           allowed_parent_dirs: Sequence[str | os.PathLike[str]] | None = None) -> int:
    """Resize the image at ``target`` to ``size`` bytes ("+10G" / "-1G": relative, as qemu-img
    resize takes it). Grows VHD and VHDX of every type (the new part reads zeros); shrinks VHDX
    and raw only over space that holds no data, unless ``force``. Returns the new size."""
    with open_image(target, "r+", allowed_parent_dirs=allowed_parent_dirs) as disk:
        if isinstance(size, str) and size[:1] in "+-":
            delta = parse_size(size[1:])
            new_size = disk.size + delta if size[0] == "+" else disk.size - delta
        else:
            new_size = size if isinstance(size, int) else parse_size(size)
        if new_size <= 0:
            raise ResizeRefusedError(f"the new size must be positive, not {new_size}")
        formats.of(disk).load("resize")(disk, new_size, force=force)
        return disk.size


def compact(target: str | os.PathLike[str], *,
            allowed_parent_dirs: Sequence[str | os.PathLike[str]] | None = None) -> CompactReport:
    """Compact the image at ``target`` (Optimize-VHD): blocks of zeros stop being stored, the
    rest moves down, the file is cut. Refused while another writer has it open (the advisory lock
    every vhdkit writer takes). Returns the report (``reclaimed`` bytes, blocks zeroed and moved)."""
    with open_image(target, "r+", allowed_parent_dirs=allowed_parent_dirs) as disk:
        fmt = formats.of(disk)
        if fmt.compact is None:
            raise UnsupportedFeatureError(f"{fmt.title} images cannot be compacted here")
        report: CompactReport = fmt.load("compact")(disk)
        return report
