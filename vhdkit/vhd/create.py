"""New VHD files (fixed, dynamic, differencing).

Sizes follow specs/architecture.md ("VHD size"): CurrentSize is exactly what was asked (16 GiB stays 17179869184, a
whole number of MiB), and the CHS geometry is the specification's when it represents that size
exactly, else the maximum 65535/16/255, so that Windows, libvhdi, dissect and qemu old and new
all see CurrentSize.

    fixed:        data (reserved with fallocate, not written), then the footer
    dynamic:      footer copy @0, dynamic header @512, BAT @1536 (all unused),
                  parent locator data (differencing), then blocks, then the footer
"""

from __future__ import annotations

import time

from .._version import __version__
from ..disk import VirtualDisk, child_size
from ..guid import Guid
from ..runtime_types import NamedTuple
from ..storage import Store
from ..units import align_up
from . import layout as L

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

DISK_TYPES = ("dynamic", "fixed", "differencing")


class VhdParentLink(NamedTuple):
    unique_id: bytes  # the parent footer's UniqueId, raw
    name: str  # the parent's file name, for the header (UTF-16BE there)
    relative_path: str  # W2ru, Windows style: ".\\base.vhd"
    absolute_path: str | None  # W2ku


def _creator_version() -> int:
    major, minor = (int(x) for x in __version__.split(".")[:2])
    return major << 16 | minor


def timestamp_now() -> int:
    return int(time.time()) - L.EPOCH_UNIX_SECONDS


def build_footer(size: int, disk_type: int, data_offset: int, unique_id: bytes) -> bytes:
    c, h, s = L.chs_for_size(size)
    raw = L.Footer.build(dict(
        cookie=L.FOOTER_COOKIE, features=L.FEATURES_RESERVED, file_format_version=L.FILE_FORMAT_VERSION,
        data_offset=data_offset, timestamp=timestamp_now(), creator_application=L.CREATOR_APPLICATION,
        creator_version=_creator_version(), creator_host_os=L.CREATOR_HOST_OS, original_size=size,
        current_size=size, cylinders=c, heads=h, sectors_per_track=s, disk_type=disk_type, checksum=0,
        unique_id=unique_id, saved_state=0, reserved=bytes(427),
    ))
    return L.with_checksum(raw, L.FOOTER_CHECKSUM_OFFSET)


def check_parameters(size: int, disk_type: str, block_size: int) -> None:
    if disk_type not in DISK_TYPES:
        raise ValueError(f"type must be one of {', '.join(DISK_TYPES)}, not {disk_type!r}")
    if size <= 0 or size % L.SECTOR:
        raise ValueError(f"size {size} is not a positive multiple of 512")
    if size > L.MAX_SIZE:
        raise ValueError(f"size {size} is larger than the VHD maximum of 2040 GiB")
    if block_size & (block_size - 1) or not L.SECTOR <= block_size <= 1 << 28:
        raise ValueError(f"VHD block size must be a power of two up to 256 MiB, not {block_size}")


def new_file_size(size: int, disk_type: str = "dynamic", block_size: int = L.DEFAULT_BLOCK_SIZE) -> int:
    """Bytes of the file ``write_new_vhd`` makes (without parent locators): a fixed disk is its
    data and the footer; a dynamic one the footer copy, header, BAT and footer."""
    if disk_type == "fixed":
        return size + L.FOOTER_SIZE
    table_bytes = align_up(-(-size // block_size) * 4, L.SECTOR)
    return L.FOOTER_SIZE + L.DYNAMIC_HEADER_SIZE + table_bytes + L.FOOTER_SIZE


def write_new_vhd(store: Store, *, size: int, disk_type: str = "dynamic", block_size: int = L.DEFAULT_BLOCK_SIZE,
                  disk_id: Guid | None = None, parent: VhdParentLink | None = None) -> None:
    """Write a complete new VHD into an empty ``store`` (the caller flushes)."""
    check_parameters(size, disk_type, block_size)
    if (disk_type == "differencing") != (parent is not None):
        raise ValueError("a differencing disk needs a parent, and only a differencing disk has one")
    unique_id = (disk_id or Guid.random()).bytes
    if disk_type == "fixed":
        # reserve first, then extend: a server reserves only what lies beyond the end of file
        preallocate = getattr(store, "preallocate", None)
        if preallocate is not None:
            preallocate(0, size)
        if store.size() < size:
            store.truncate(size)
        store.pwrite(size, build_footer(size, L.DiskType.FIXED, L.FIXED_DATA_OFFSET, unique_id))
        return
    entries = -(-size // block_size)
    table_offset = L.FOOTER_SIZE + L.DYNAMIC_HEADER_SIZE
    table_bytes = align_up(entries * 4, L.SECTOR)
    at = table_offset + table_bytes
    locators = []  # (code, length, offset)
    locator_data = []
    if parent is not None:
        for code, path in ((L.PLATFORM_W2RU, parent.relative_path), (L.PLATFORM_W2KU, parent.absolute_path)):
            if not path:
                continue
            data = path.encode("utf-16-le")
            locators.append((code, len(data), at))
            locator_data.append((at, data))
            at += align_up(len(data), L.SECTOR)
    header = L.build_dynamic_header(
        table_offset=table_offset, max_table_entries=entries, block_size=block_size,
        parent_unique_id=parent.unique_id if parent else bytes(16), parent_name=parent.name if parent else "",
        locators=locators)  # ParentTimeStamp 0: Windows leaves it 0 as well; nobody checks it
    disk_type_code = L.DiskType.DIFFERENCING if parent else L.DiskType.DYNAMIC
    footer = build_footer(size, disk_type_code, L.FOOTER_SIZE, unique_id)
    store.pwrite(L.FOOTER_SIZE, header)
    store.pwrite(table_offset, b"\xff" * table_bytes)
    for offset, data in locator_data:
        store.pwrite(offset, data)
    store.pwrite(at, footer)  # the footer at the end ...
    store.pwrite(0, footer)  # ... and its copy at 0: written last, it makes the file a VHD


def plan_new(target: object, size: int | None, *, disk_type: str, block_size: int | None = None,
             logical_sector_size: int | None = None, physical_sector_size: int | None = None,
             parent: VirtualDisk | None = None, parent_paths: tuple[str, str | None] | None = None,
             disk_id: Guid | None = None) -> tuple[Callable[..., None], dict[str, Any]]:
    """How ``write_new_vhd`` will make the image the caller asks for (ValueError if it cannot).

    ``parent`` is the open parent of a differencing disk and ``parent_paths`` the (relative,
    absolute) paths by which the child will find it."""
    from .image import VhdDisk

    if logical_sector_size not in (None, L.SECTOR) or physical_sector_size not in (None, L.SECTOR):
        raise ValueError("a VHD has 512-byte sectors only")
    link = None
    if parent is not None:
        size = child_size(parent, VhdDisk, size)
        assert isinstance(parent, VhdDisk)
        relative, absolute = parent_paths or (None, None)
        link = VhdParentLink(bytes(parent.footer.unique_id), _file_name(parent.name), relative or "", absolute)
    if size is None:
        raise ValueError("size is required (or a parent for a differencing disk)")
    return write_new_vhd, dict(size=size, disk_type=disk_type, block_size=block_size or L.DEFAULT_BLOCK_SIZE,
                               disk_id=disk_id, parent=link)


def _file_name(path_or_url: str) -> str:
    return path_or_url.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
