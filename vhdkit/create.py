"""``vhdkit.create()``: a new disk image, whole or not at all.

A local file is written under a temporary name in the same folder, flushed, then linked to its
name (which fails if something appeared there meanwhile) and the folder flushed: a crash at any
point leaves either no image or a complete one, never a half-written file under the user's name.
"""

from __future__ import annotations

import ntpath
import os
import posixpath
import uuid
from typing import Any
from urllib.parse import urlsplit

from .disk import VirtualDisk
from .errors import ImageExistsError, UnsupportedFeatureError
from .open import open as open_image
from .storage import Store, is_url, open_store
from .units import GiB
from .vhdx import VhdxDisk
from .vhdx.create import DEFAULT_BLOCK_SIZE, DEFAULT_DIFFERENCING_BLOCK_SIZE, ParentLink, write_new_vhdx

#: The blank disks VMM's library ships: "Blank Disk - Small" and "Blank Disk - Large".
BLANK_SIZES = {"small": 16 * GiB, "large": 60 * GiB}


def create(
    target: str | os.PathLike[str],
    size: int | None = None,
    *,
    format: str = "vhdx",  # noqa: A002
    type: str | None = None,  # noqa: A002
    block_size: int | None = None,
    logical_sector_size: int | None = None,
    physical_sector_size: int | None = None,
    parent: str | os.PathLike[str] | None = None,
    disk_id: uuid.UUID | None = None,
    overwrite: bool = False,
) -> VirtualDisk:
    """Create an image and return it opened read-write.

    ``type`` is "dynamic" (the default), "fixed" or "differencing" (implied by ``parent``, whose
    size and sector size the child takes). Defaults follow Hyper-V: 32 MiB blocks (2 MiB for
    differencing disks), 512-byte logical and 4096-byte physical sectors.
    """
    if format != "vhdx":
        raise UnsupportedFeatureError(f"creating {format!r} images is not available; use format='vhdx'")
    disk_type = type or ("differencing" if parent is not None else "dynamic")
    link = None
    if disk_type == "differencing" or parent is not None:
        if parent is None:
            raise ValueError("a differencing disk needs parent=")
        if disk_type != "differencing":
            raise ValueError(f"a disk with a parent is a differencing disk, not {disk_type}")
        link, parent_size, parent_lss, parent_pss = _parent_link(target, parent)
        if size is not None and size != parent_size:
            raise ValueError(f"a differencing disk has its parent's size ({parent_size}), not {size}")
        if logical_sector_size is not None and logical_sector_size != parent_lss:
            raise ValueError(f"a differencing disk has its parent's logical sector size ({parent_lss})")
        size, logical_sector_size = parent_size, parent_lss
        physical_sector_size = physical_sector_size or parent_pss
    if size is None:
        raise ValueError("size is required (or a parent for a differencing disk)")
    logical = logical_sector_size or 512
    options: dict[str, Any] = dict(
        size=size, disk_type=disk_type,
        block_size=block_size or (DEFAULT_DIFFERENCING_BLOCK_SIZE if link else DEFAULT_BLOCK_SIZE),
        logical_sector_size=logical, physical_sector_size=physical_sector_size or 4096,
        disk_id=disk_id, parent=link, creator=_creator(),
    )
    if is_url(os.fspath(target)) and not os.fspath(target).startswith("file://"):
        _create_at_url(os.fspath(target), overwrite, options)
    else:
        _create_local_file(_local_path(target), overwrite, options)
    return open_image(target, "r+")


def _creator() -> str:
    from . import __version__

    return f"vhdkit {__version__}"


def _local_path(target: str | os.PathLike[str]) -> str:
    text = os.fspath(target)
    return urlsplit(text).path if text.startswith("file://") else text


def _create_local_file(path: str, overwrite: bool, options: dict[str, Any]) -> None:
    if os.path.exists(path) and not overwrite:
        raise ImageExistsError(f"{path} already exists (use overwrite / --force to replace it)")
    folder = os.path.dirname(os.path.abspath(path))
    temp = os.path.join(folder, f".{os.path.basename(path)}.{os.urandom(4).hex()}.vhdkit-tmp")
    store = open_store(temp, create=True)
    try:
        write_new_vhdx(store, **options)
    except BaseException:
        store.close()
        os.unlink(temp)
        raise
    store.close()
    try:
        if overwrite:
            os.replace(temp, path)
        else:
            try:
                os.link(temp, path)  # atomic, and never replaces a file that appeared meanwhile
            except FileExistsError as e:
                raise ImageExistsError(f"{path} already exists (use overwrite / --force to replace it)") from e
            os.unlink(temp)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the new name is durable too
    finally:
        os.close(dir_fd)


def _create_at_url(url: str, overwrite: bool, options: dict[str, Any]) -> None:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    if fs.exists(path):
        if not overwrite:
            raise ImageExistsError(f"{url} already exists (use overwrite / --force to replace it)")
        fs.rm(path)
    store: Store = open_store(url, create=True)
    try:
        write_new_vhdx(store, **options)
    finally:
        store.close()


def _parent_link(child: str | os.PathLike[str], parent: str | os.PathLike[str]) -> tuple[ParentLink, int, int, int]:
    """Open the parent read-only and record how the child will find and recognise it."""
    with open_image(parent) as disk:
        if not isinstance(disk, VhdxDisk):
            raise UnsupportedFeatureError(f"the parent of a VHDX differencing disk must be a VHDX, "
                                          f"{disk.name} is {disk.format_name}")
        guid = disk.header.data_write_guid
        size, lss, pss = disk.size, disk.logical_sector_size, disk.physical_sector_size
    child_text, parent_text = os.fspath(child), os.fspath(parent)
    if is_url(child_text) or is_url(parent_text):
        relative = posixpath.relpath(urlsplit(parent_text).path, posixpath.dirname(urlsplit(child_text).path))
        absolute = None
    else:
        parent_abs = os.path.abspath(parent_text)
        relative = os.path.relpath(parent_abs, os.path.dirname(os.path.abspath(child_text)))
        absolute = parent_abs  # a POSIX path: Windows skips it, Linux readers can use it
    relative = relative.replace("/", "\\")
    if not relative.startswith(".."):
        relative = ntpath.join(".", relative)  # Windows writes ".\\base.vhdx" for the same folder
    return ParentLink(guid, relative, absolute), size, lss, pss
