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
from typing import Any, Callable

from .disk import RawDisk, VirtualDisk
from .errors import ImageExistsError, UnsupportedFeatureError
from .open import disk_class
from .open import open as open_image
from .storage import Store, is_url, open_store
from .units import GiB

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

    ``format`` is "vhdx" (the default), "vhd" or "raw" (a sparse file; "fixed" reserves it).
    ``type`` is "dynamic" (the default), "fixed" or "differencing" (implied by ``parent``, whose
    size and sector size the child takes). Defaults follow Hyper-V: VHDX 32 MiB blocks (2 MiB for
    differencing), 512-byte logical and 4096-byte physical sectors; VHD 2 MiB blocks.
    """
    plan = plan_image(target, size, format=format, type=type, block_size=block_size,
                      logical_sector_size=logical_sector_size, physical_sector_size=physical_sector_size,
                      parent=parent, disk_id=disk_id)
    text = os.fspath(target)
    if is_url(text) and not text.startswith("file://"):
        _create_at_url(text, overwrite, *plan)
    else:
        path = _local_path(target)
        refuse_existing(path, overwrite)
        publish(write_temporary(path, *plan), path, overwrite)
    return open_image(target, "r+")


Plan = tuple[Callable[..., None], dict[str, Any]]


def plan_image(target: str | os.PathLike[str], size: int | None, *, format: str = "vhdx",  # noqa: A002
               type: str | None = None, block_size: int | None = None,  # noqa: A002
               logical_sector_size: int | None = None, physical_sector_size: int | None = None,
               parent: str | os.PathLike[str] | None = None, disk_id: uuid.UUID | None = None) -> Plan:
    """Check the parameters and say how the image will be written (ValueError if it cannot be)."""
    if format not in ("vhdx", "vhd", "raw"):
        raise ValueError(f"format must be 'vhdx', 'vhd' or 'raw', not {format!r}")
    disk_type = type or ("differencing" if parent is not None else "dynamic")
    if parent is not None and disk_type != "differencing":
        raise ValueError(f"a disk with a parent is a differencing disk, not {disk_type}")
    if disk_type == "differencing" and parent is None:
        raise ValueError("a differencing disk needs parent=")
    if format == "raw":
        if disk_type not in ("dynamic", "fixed"):
            raise ValueError("a raw image is dynamic (sparse) or fixed (reserved); it has no parent")
        if size is None or size < 0:
            raise ValueError("size is required")
        return _write_raw, dict(size=size, reserve=disk_type == "fixed")
    if format == "vhd":
        return _vhd_options(target, size, disk_type, block_size, logical_sector_size, physical_sector_size,
                            parent, disk_id)
    return _vhdx_options(target, size, disk_type, block_size, logical_sector_size, physical_sector_size,
                         parent, disk_id)


def refuse_existing(path: str, overwrite: bool) -> None:
    if os.path.exists(path) and not overwrite:
        raise ImageExistsError(f"{path} already exists (use overwrite / --force to replace it)")


def write_temporary(path: str, writer: Callable[..., None], options: dict[str, Any], *, sync: bool = True) -> str:
    """Write the new image under a temporary name beside ``path`` (flushed if ``sync``); returns that name."""
    folder = os.path.dirname(os.path.abspath(path))
    temp = os.path.join(folder, f".{os.path.basename(path)}.{os.urandom(4).hex()}.vhdkit-tmp")
    store = open_store(temp, create=True)
    try:
        writer(store, **options)
        if sync:
            store.flush()
    except BaseException:
        store.close()
        os.unlink(temp)
        raise
    store.close()
    return temp


def publish(temp: str, path: str, overwrite: bool, *, sync: bool = True) -> None:
    """Give the finished temporary file its name: atomically, and never over a file that appeared
    meanwhile unless ``overwrite``; then flush the folder so the name is durable too."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        if overwrite:
            os.replace(temp, path)
        else:
            try:
                os.link(temp, path)
            except FileExistsError as e:
                raise ImageExistsError(f"{path} already exists (use overwrite / --force to replace it)") from e
            os.unlink(temp)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    if sync:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def open_unpublished(temp: str, format: str) -> VirtualDisk:  # noqa: A002
    """Open a freshly written temporary image for filling (see UnpublishedSession)."""
    store = open_store(temp, writable=True)
    try:
        if format in ("vhdx", "vhd"):
            return disk_class(format)(store, writable=True, unpublished=True)  # type: ignore[call-arg]
        return RawDisk(store, writable=True)
    except BaseException:
        store.close()
        raise


def _vhdx_options(target: Any, size: int | None, disk_type: str, block_size: int | None, logical: int | None,
                  physical: int | None, parent: Any, disk_id: uuid.UUID | None) -> tuple[Callable[..., None], dict[str, Any]]:
    from .vhdx.create import DEFAULT_BLOCK_SIZE, DEFAULT_DIFFERENCING_BLOCK_SIZE, ParentLink, write_new_vhdx
    from .vhdx.image import VhdxDisk

    link = None
    if parent is not None:
        with open_image(parent) as disk:
            if not isinstance(disk, VhdxDisk):
                raise UnsupportedFeatureError(f"the parent of a VHDX differencing disk must be a VHDX, "
                                              f"{disk.name} is {disk.format_name}")
            guid = disk.header.data_write_guid
            size = _inherit(size, disk.size, logical, disk.logical_sector_size)
            logical = disk.logical_sector_size
            physical = physical or disk.physical_sector_size
        relative, absolute = _parent_paths(target, parent)
        link = ParentLink(guid, relative, absolute)
    if size is None:
        raise ValueError("size is required (or a parent for a differencing disk)")
    return write_new_vhdx, dict(
        size=size, disk_type=disk_type,
        block_size=block_size or (DEFAULT_DIFFERENCING_BLOCK_SIZE if link else DEFAULT_BLOCK_SIZE),
        logical_sector_size=logical or 512, physical_sector_size=physical or 4096,
        disk_id=disk_id, parent=link, creator=_creator(),
    )


def _vhd_options(target: Any, size: int | None, disk_type: str, block_size: int | None, logical: int | None,
                 physical: int | None, parent: Any, disk_id: uuid.UUID | None) -> tuple[Callable[..., None], dict[str, Any]]:
    from .vhd.create import VhdParentLink, write_new_vhd
    from .vhd.image import VhdDisk
    from .vhd.layout import DEFAULT_BLOCK_SIZE as VHD_BLOCK_SIZE

    if logical not in (None, 512) or physical not in (None, 512):
        raise ValueError("a VHD has 512-byte sectors only")
    link = None
    if parent is not None:
        with open_image(parent) as disk:
            if not isinstance(disk, VhdDisk):
                raise UnsupportedFeatureError(f"the parent of a VHD differencing disk must be a VHD, "
                                              f"{disk.name} is {disk.format_name}")
            unique_id = bytes(disk.footer.unique_id)
            size = _inherit(size, disk.size, None, 512)
        relative, absolute = _parent_paths(target, parent)
        link = VhdParentLink(unique_id, os.path.basename(os.fspath(parent)), relative, absolute)
    if size is None:
        raise ValueError("size is required (or a parent for a differencing disk)")
    return write_new_vhd, dict(size=size, disk_type=disk_type, block_size=block_size or VHD_BLOCK_SIZE,
                               disk_id=disk_id, parent=link)


def _write_raw(store: Store, *, size: int, reserve: bool) -> None:
    """A raw image: a sparse file of ``size`` bytes (space reserved with fallocate if asked)."""
    store.truncate(size)
    preallocate = getattr(store, "preallocate", None)
    if reserve and preallocate is not None and size:
        preallocate(0, size)


def _inherit(size: int | None, parent_size: int, logical: int | None, parent_logical: int) -> int:
    """A differencing disk's size (and logical sector) are its parent's: refuse anything else."""
    if size is not None and size != parent_size:
        raise ValueError(f"a differencing disk has its parent's size ({parent_size}), not {size}")
    if logical is not None and logical != parent_logical:
        raise ValueError(f"a differencing disk has its parent's logical sector size ({parent_logical})")
    return parent_size


def _creator() -> str:
    from . import __version__

    return f"vhdkit {__version__}"


def _local_path(target: str | os.PathLike[str]) -> str:
    from urllib.parse import urlsplit

    text = os.fspath(target)
    return urlsplit(text).path if text.startswith("file://") else text


def _create_at_url(url: str, overwrite: bool, writer: Callable[..., None], options: dict[str, Any]) -> None:
    if url.startswith("smb://"):
        _create_on_share(url, overwrite, writer, options)
        return
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    if fs.exists(path):
        if not overwrite:
            raise ImageExistsError(f"{url} already exists (use overwrite / --force to replace it)")
        fs.rm(path)
    store: Store = open_store(url, create=True)
    try:
        writer(store, **options)
        store.flush()
    finally:
        store.close()


def _parent_paths(child: str | os.PathLike[str], parent: str | os.PathLike[str]) -> tuple[str, str | None]:
    """(relative path in Windows form, absolute path) by which the child will find its parent."""
    from urllib.parse import urlsplit

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
    return relative, absolute


def _create_on_share(url: str, overwrite: bool, writer: Callable[..., None], options: dict[str, Any]) -> None:
    """As on a local disk: written and flushed under a temporary name, then renamed into place
    (SMB rename refuses an existing name, so a file that appeared meanwhile is not replaced)."""
    import smbclient

    from .storage.smb import SmbLocation, SmbStore

    final = SmbLocation(url)
    # no leading dot: Samba would mark the file hidden, and the mark survives the rename
    temp_url = f"{url}.{os.urandom(4).hex()}.vhdkit-tmp"
    store = SmbStore(temp_url, create=True)
    temp = store.location
    try:
        try:
            writer(store, **options)
            store.flush()
        finally:
            store.close()
        if overwrite:
            smbclient.replace(temp.unc, final.unc, **final.options)
        else:
            try:
                smbclient.rename(temp.unc, final.unc, **final.options)
            except OSError as e:
                if e.errno == 17:
                    raise ImageExistsError(f"{final.url} already exists (use overwrite / --force to replace it)") from None
                raise
    except BaseException:
        try:
            smbclient.remove(temp.unc, **temp.options)
        except Exception:  # noqa: BLE001 - the original error matters more
            pass
        raise
    if not store.sparse:  # a fixed disk: its space is reserved, not sparse
        return
    published = SmbStore(url, writable=True)  # Samba drops the sparse mark on rename
    try:
        published.set_sparse()
    finally:
        published.close()
