"""vhdkit: Microsoft's virtual disks (VHD, VHDX) on Linux.

    import vhdkit
    with vhdkit.open("disk.vhdx") as disk:      # read-only; a dirty log is replayed in memory
        first_sector = disk.read(512)
        for extent in disk.extents():          # (offset, length, state): data/zero/unallocated/parent

This module is the public face and nothing else: no module inside the package imports it. The
operations load when first used (PEP 562), so ``import vhdkit`` costs little and loads no
migration, NBD, SMB, netvirt or vmbus code.
"""

from __future__ import annotations

from ._version import __version__
from .disk import DiskInfo, Extent, ExtentState, RawDisk, VirtualDisk
from .errors import (
    ChainError,
    CorruptImageError,
    ImageExistsError,
    ImageInUseError,
    ImageNotFoundError,
    MergeRefusedError,
    ParentMismatchError,
    ParentNotFoundError,
    ReadOnlyError,
    ResizeRefusedError,
    StorageError,
    UnsupportedFeatureError,
    VhdkitError,
)
from .formats import FORMATS, Format
from .runtime_types import lazy_attributes

TYPE_CHECKING = False  # typing is not loaded at run time (vhdkit/runtime_types.py says why)
if TYPE_CHECKING:
    from .ops.check import check
    from .ops.convert import convert
    from .ops.create import BLANK_SIZES, create
    from .ops.merge import merge
    from .ops.open import detect_format
    from .ops.open import open_image as open  # noqa: A004
    from .ops.reparent import set_parent
    from .ops.resize import compact, resize
    from .vhd.image import VhdDisk
    from .vhdx.image import VhdxDisk

# name -> "module:attribute": what each public name is, loaded on first use
_LAZY = {
    "open": "vhdkit.ops.open:open_image",
    "detect_format": "vhdkit.ops.open",
    "create": "vhdkit.ops.create",
    "BLANK_SIZES": "vhdkit.ops.create",
    "check": "vhdkit.ops.check",
    "convert": "vhdkit.ops.convert",
    "merge": "vhdkit.ops.merge",
    "resize": "vhdkit.ops.resize",
    "compact": "vhdkit.ops.resize",
    "set_parent": "vhdkit.ops.reparent",
    "VhdxDisk": "vhdkit.vhdx.image",
    "VhdDisk": "vhdkit.vhd.image",
}
__getattr__ = lazy_attributes(globals(), _LAZY)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BLANK_SIZES",
    "FORMATS",
    "ChainError",
    "CorruptImageError",
    "DiskInfo",
    "Extent",
    "ExtentState",
    "Format",
    "ImageExistsError",
    "ImageInUseError",
    "ImageNotFoundError",
    "MergeRefusedError",
    "ParentMismatchError",
    "ParentNotFoundError",
    "RawDisk",
    "ReadOnlyError",
    "ResizeRefusedError",
    "StorageError",
    "UnsupportedFeatureError",
    "VhdDisk",
    "VhdkitError",
    "VhdxDisk",
    "VirtualDisk",
    "__version__",
    "check",
    "compact",
    "convert",
    "create",
    "detect_format",
    "merge",
    "open",
    "resize",
    "set_parent",
]
