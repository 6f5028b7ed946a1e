"""``vhdkit.create()``: a new disk image, whole or not at all.

A local file is written under a temporary name in the same folder, flushed, then linked to its
name (which fails if something appeared there meanwhile) and the folder flushed: a crash at any
point leaves either no image or a complete one, never a half-written file under the user's name.
"""

from __future__ import annotations

import ntpath
import os
import posixpath

from .. import formats
from ..disk import VirtualDisk
from ..errors import ImageExistsError
from ..formats import VHDX, Format
from ..guid import Guid
from ..storage import Store, is_url, open_store
from ..units import GiB
from .leftovers import remove_stale_temporaries, temporary_name
from .open import allowed_parent_dirs_for, folder_of, open_image, path_part

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    Plan = tuple[Callable[..., None], dict[str, Any]]  # a format's writer and its arguments

#: The blank disks VMM's library ships: "Blank Disk - Small" and "Blank Disk - Large".
BLANK_SIZES = {"small": 16 * GiB, "large": 60 * GiB}


def create(
    target: str | os.PathLike[str],
    size: int | None = None,
    *,
    format: str | Format | None = None,  # noqa: A002
    type: str | None = None,  # noqa: A002
    block_size: int | None = None,
    logical_sector_size: int | None = None,
    physical_sector_size: int | None = None,
    parent: str | os.PathLike[str] | None = None,
    disk_id: Guid | None = None,
    overwrite: bool = False,
) -> VirtualDisk:
    """Create an image and return it opened read-write.

    ``format`` is "vhdx", "vhd" or "raw" (a sparse file; "fixed" reserves it); by default the
    file name's extension says (.vhdx/.avhdx, .vhd/.avhd, .raw/.img/.bin), and a name with none
    of these gets a VHDX, Hyper-V's default. A format that contradicts the extension is refused:
    Hyper-V goes by the extension. ``type`` is "dynamic" (the default), "fixed" or
    "differencing" (implied by ``parent``, whose size and sector size the child takes). Defaults
    follow Hyper-V: VHDX 32 MiB blocks (2 MiB for differencing), 512-byte logical and 4096-byte
    physical sectors; VHD 2 MiB blocks.
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
    # the parent named here is allowed for this open, wherever it is (later opens need allowing it)
    allowed = None if parent is None else [*allowed_parent_dirs_for(target), folder_of(parent)]
    return open_image(target, "r+", allowed_parent_dirs=allowed)


def plan_image(target: str | os.PathLike[str], size: int | None, *, format: str | Format | None = None,  # noqa: A002
               type: str | None = None, block_size: int | None = None,  # noqa: A002
               logical_sector_size: int | None = None, physical_sector_size: int | None = None,
               parent: str | os.PathLike[str] | None = None, disk_id: Guid | None = None) -> Plan:
    """Check the parameters and say how the image will be written (ValueError if it cannot be)."""
    fmt = formats.for_target(_local_path(target), format, default=VHDX)
    disk_type = type or ("differencing" if parent is not None else "dynamic")
    if parent is not None and disk_type != "differencing":
        raise ValueError(f"a disk with a parent is a differencing disk, not {disk_type}")
    if disk_type == "differencing" and parent is None:
        raise ValueError("a differencing disk needs parent=")
    if parent is not None and not path_part(parent).lower().endswith(formats.DISK_EXTENSIONS):
        raise ValueError(f"a parent must be named {'/'.join(formats.DISK_EXTENSIONS)}: readers follow a locator "
                         f"only to such a name, so a child of {os.path.basename(path_part(parent))} could not be opened")
    choices: dict[str, Any] = dict(disk_type=disk_type, block_size=block_size, logical_sector_size=logical_sector_size,
                                   physical_sector_size=physical_sector_size, disk_id=disk_id)
    plan_new = fmt.load("plan")
    if parent is None:
        return plan_new(target, size, **choices)  # type: ignore[no-any-return]
    with open_image(parent) as parent_disk:
        return plan_new(target, size, parent=parent_disk, parent_paths=_parent_paths(target, parent),  # type: ignore[no-any-return]
                        **choices)


def refuse_existing(path: str, overwrite: bool) -> None:
    if os.path.exists(path) and not overwrite:
        raise ImageExistsError(f"{path} already exists (use overwrite / --force to replace it)")


def write_temporary(path: str, writer: Callable[..., None], options: dict[str, Any], *, sync: bool = True) -> str:
    """Write the new image under a temporary name beside ``path`` (flushed if ``sync``); returns that
    name. Temporary files an earlier, killed run left for the same target go first (leftovers.py)."""
    remove_stale_temporaries(path)
    temp = temporary_name(path)
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


def open_unpublished(temp: str, format: str | Format) -> VirtualDisk:  # noqa: A002
    """Open a freshly written temporary image for filling (see UnpublishedSession)."""
    store = open_store(temp, writable=True)
    try:
        disk: VirtualDisk = formats.get(format).open_disk(store, writable=True, unpublished=True)
        return disk
    except BaseException:
        store.close()
        raise


def _local_path(target: str | os.PathLike[str]) -> str:
    text = os.fspath(target)
    if not text.startswith("file://"):
        return text
    from urllib.parse import urlsplit  # only here: it loads ipaddress

    return urlsplit(text).path


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

    from ..storage.smb import SmbLocation, SmbStore

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
