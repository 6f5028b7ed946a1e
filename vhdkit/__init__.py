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
from .convert import convert
from .create import BLANK_SIZES, create
from .open import detect_format, open
from .vhdx import VhdxDisk

__version__ = "0.1.0"

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
    "VhdkitError",
    "VhdxDisk",
    "VirtualDisk",
    "__version__",
    "convert",
    "create",
    "detect_format",
    "open",
]
