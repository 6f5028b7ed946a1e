"""The raw format's operations: a new raw image, its file size, and resizing one.

A raw image is a plain file whose bytes are the disk (``disk.RawDisk`` reads it). New ones are
sparse; "fixed" reserves their space up front (fallocate), as a fixed VHD or VHDX does.
"""

from __future__ import annotations


from .disk import ExtentState, RawDisk, VirtualDisk, is_zero
from .errors import ReadOnlyError, ResizeRefusedError
from .guid import Guid
from .storage import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

DISK_TYPES = ("dynamic", "fixed")


def plan_new(target: object, size: int | None, *, disk_type: str, block_size: int | None = None,
             logical_sector_size: int | None = None, physical_sector_size: int | None = None,
             parent: VirtualDisk | None = None, parent_paths: tuple[str, str | None] | None = None,
             disk_id: Guid | None = None) -> tuple[Callable[..., None], dict[str, Any]]:
    """How ``write_new_raw`` will make the image (ValueError if a raw image cannot be that)."""
    if disk_type not in DISK_TYPES or parent is not None:
        raise ValueError("a raw image is dynamic (sparse) or fixed (reserved); it has no parent")
    if size is None or size < 0:
        raise ValueError("size is required")
    return write_new_raw, dict(size=size, reserve=disk_type == "fixed")


def write_new_raw(store: Store, *, size: int, reserve: bool) -> None:
    """A sparse file of ``size`` bytes (its space reserved with fallocate if asked)."""
    store.truncate(size)
    preallocate = getattr(store, "preallocate", None)
    if reserve and preallocate is not None and size:
        preallocate(0, size)


def new_file_size(size: int, disk_type: str = "dynamic") -> int:
    return size


def resize(disk: RawDisk, new_size: int, *, force: bool = False) -> None:
    """Grow (the new part reads zeros) or shrink, refusing to cut data unless ``force``."""
    if not disk.writable():
        raise ReadOnlyError(f"{disk.name} is open read-only")
    if new_size < 0:
        raise ResizeRefusedError("the new size must not be negative")
    if new_size < disk.size and not force:
        buf = bytearray(1 << 20)
        for ext in disk.extents(new_size, disk.size - new_size):
            if ext.state is not ExtentState.DATA:
                continue
            pos = ext.offset
            while pos < ext.offset + ext.length:
                n = disk.preadinto(pos, memoryview(buf)[: min(len(buf), ext.offset + ext.length - pos)])
                if not is_zero(memoryview(buf)[:n]):
                    raise ResizeRefusedError(f"shrinking {disk.name} would cut data stored past {new_size} bytes "
                                             "(force to cut it)")
                pos += n
    disk.store.truncate(new_size)
    disk.size = new_size
