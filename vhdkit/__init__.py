"""vhdkit: Microsoft's virtual disks (VHD, VHDX) on Linux.

    import vhdkit
    with vhdkit.open("disk.vhdx") as disk:      # read-only; a dirty log is replayed in memory
        first_sector = disk.read(512)
        for extent in disk.extents():          # (offset, length, state): data/zero/unallocated/parent
            ...
"""

from __future__ import annotations

from .disk import DiskInfo, Extent, ExtentState, RawDisk, VirtualDisk
from .errors import (
    CorruptImageError,
    ImageExistsError,
    ImageInUseError,
    ImageNotFoundError,
    ParentMismatchError,
    ParentNotFoundError,
    ReadOnlyError,
    StorageError,
    UnsupportedFeatureError,
    VhdkitError,
)
from .check import check
from .convert import convert
from .create import BLANK_SIZES, create
from .open import detect_format, open
from .merge import merge
from .resize import compact, resize

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The format packages load when first needed (see open.disk_class), these names included.
    if name in ("VhdxDisk", "VhdDisk"):
        from .open import disk_class

        return disk_class("vhdx" if name == "VhdxDisk" else "vhd")
    raise AttributeError(f"module 'vhdkit' has no attribute {name!r}")

__all__ = [
    "BLANK_SIZES",
    "CorruptImageError",
    "DiskInfo",
    "Extent",
    "ExtentState",
    "ImageExistsError",
    "ImageInUseError",
    "ImageNotFoundError",
    "ParentMismatchError",
    "ParentNotFoundError",
    "RawDisk",
    "ReadOnlyError",
    "StorageError",
    "UnsupportedFeatureError",
    "VhdDisk",
    "VhdkitError",
    "VhdxDisk",
    "VirtualDisk",
    "__version__",
    "check",
    "convert",
    "create",
    "detect_format",
    "open",
]
