"""``vhdkit.open()``: detect the format, open the store, resolve parents, return a VirtualDisk.

Parents of differencing disks are found through a resolver, never by guessing: the locator's
paths are tried in the spec's order (relative first), and the candidate's identity must match the
child's record of it (VHDX: DataWriteGuid == parent_linkage). A chain that comes back to a file
already in it is an error.

Every path in a locator is the image's word, and images can be hostile, so a candidate is opened
only when (1) its name is a disk image's (.vhdx, .avhdx, .vhd, .avhd: never /etc/shadow), (2) it
lies inside the allowed folders, and (3) it is a regular file (never a FIFO, which would block the
open forever, nor a device), checked before it is opened and again on the open descriptor. The
allowed folders are those the caller names (``allowed_parent_dirs``); else those the
``VHDKIT_ALLOWED_PARENT_DIRS`` environment variable names (separated by ``os.pathsep``); else the
folder of the image opened and everything below it, where Hyper-V keeps checkpoints and
differencing disks. ``allowed_parent_dirs=["/"]`` allows any folder.
"""

from __future__ import annotations

import os
import posixpath
import stat

from .. import formats
from ..disk import VirtualDisk
from ..errors import ChainError, ImageNotFoundError, ParentMismatchError, ParentNotFoundError
from ..formats import Format
from ..storage import Store, is_url, open_store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Iterable, Sequence

MAX_CHAIN_DEPTH = 256
ALLOWED_DIRS_ENV = "VHDKIT_ALLOWED_PARENT_DIRS"
#: What ``mode`` may be, and what each means.
MODES = {
    "r": "read-only: the file is never changed; a dirty VHDX log is replayed in memory",
    "r+": "read-write: a dirty VHDX log is replayed into the file first",
}


def detect_format(store: Store) -> str:
    """The name of the format the store holds ("vhdx", "vhd" or "raw"; see formats.detect)."""
    return formats.detect(store).name


def open_image(
    target: str | os.PathLike[str] | None = None,
    mode: str = "r",
    *,
    fileobj: IO[bytes] | None = None,
    format: str | Format | None = None,  # noqa: A002
    allowed_parent_dirs: Sequence[str | os.PathLike[str]] | None = None,
    resolve_parents: bool = True,
    tolerate_checksum: bool = False,
    unpublished: bool = False,
    force_share: bool | None = None,
) -> VirtualDisk:
    """Open an image (a path, a URL, or ``fileobj=`` an open binary file) as a VirtualDisk.

    ``mode`` is "r" (the default: the file is never changed, a dirty VHDX log is replayed in
    memory) or "r+" (a dirty log is replayed to the file). ``fileobj``: a seekable binary file
    object, used as it is and left open (opened "r+b" for mode "r+"); a differencing disk read
    from one looks for its parent beside ``target`` when that names its path.
    ``format`` forces one of "vhdx", "vhd", "raw". ``allowed_parent_dirs`` restricts where
    parents may be found. ``resolve_parents=False`` opens a differencing disk without its parent
    (metadata only; reads that need the parent raise ParentNotFoundError). ``tolerate_checksum``
    opens a VHD whose footer or dynamic header checksum is wrong (read-only; the damage is in
    ``problems``). ``unpublished`` (with "r+"): the image is being filled where nobody uses it
    yet (a migration's target before its switch-over), so metadata skips the log and the
    ordering flushes until ``publish()``; a crash before then may leave it inconsistent, and it
    must then be discarded. ``force_share`` (mode "r"): read an image other processes are
    writing, as qemu-img -U does (what is read may be inconsistent); by default a reader is
    refused such an image, and keeps writers out while it reads (see storage.locks). None: the
    VHDKIT_FORCE_SHARE environment variable decides.
    """
    if mode not in MODES:
        raise ValueError("mode must be one of: " + "; ".join(f"{m!r} ({why})" for m, why in MODES.items())
                         + f"; not {mode!r}")
    fmt = formats.get(format) if format is not None else None
    if unpublished and mode != "r+":
        raise ValueError("unpublished is for images opened r+")
    if force_share and mode != "r":
        raise ValueError("force_share is for images opened read-only")
    options = _Options(allowed_parent_dirs, resolve_parents, tolerate_checksum, force_share)
    if fileobj is not None:
        from ..storage.fileobj import FileObjectStore  # loaded when used: every module costs start-up

        store: Store = FileObjectStore(fileobj, writable=mode == "r+")
        if target is not None:
            store.url = os.fspath(target)  # where its parents are looked for
        return _open_on_store(store, mode == "r+", fmt, options, [], unpublished)
    if target is None:
        raise TypeError("open() needs a path or URL, or fileobj=")
    return _open_chain(target, mode == "r+", fmt, options, chain=[], unpublished=unpublished)


class _Options:
    def __init__(self, allowed: Sequence[str | os.PathLike[str]] | None, resolve_parents: bool,
                 tolerate_checksum: bool, force_share: bool | None = None) -> None:
        if allowed is None and os.environ.get(ALLOWED_DIRS_ENV):
            allowed = [d for d in os.environ[ALLOWED_DIRS_ENV].split(os.pathsep) if d]
        # None: the folder of the image opened (known only when the chain is walked)
        self.allowed = [_folder(os.fspath(d)) for d in allowed] if allowed is not None else None
        self.resolve_parents = resolve_parents
        self.tolerate_checksum = tolerate_checksum
        self.force_share = force_share


def _open_chain(target: str | os.PathLike[str], writable: bool, fmt: Format | None,
                options: _Options, chain: list[str], unpublished: bool = False,
                regular_only: bool = False) -> VirtualDisk:
    store = open_store(target, writable=writable, regular_only=regular_only, force_share=options.force_share)
    return _open_on_store(store, writable, fmt, options, chain, unpublished)


def _open_on_store(store: Store, writable: bool, fmt: Format | None, options: _Options, chain: list[str],
                   unpublished: bool) -> VirtualDisk:
    """The disk on ``store``, which it then owns (closed here if the disk cannot be made)."""
    try:
        fmt = fmt or formats.detect(store)
        resolver = _ParentResolver(options, chain + [_identity(store.url)]) if options.resolve_parents else None
        disk: VirtualDisk = fmt.open_disk(store, writable=writable, parent_resolver=resolver,
                                          tolerate_checksum=options.tolerate_checksum, unpublished=unpublished)
        return disk
    except BaseException:
        store.close()
        raise


def allowed_parent_dirs_for(top: str | os.PathLike[str],
                            allowed: Sequence[str | os.PathLike[str]] | None = None) -> list[str]:
    """The folders the parents of the chain topped by ``top`` may lie in (see the module note)."""
    options = _Options(allowed, True, False)
    return options.allowed if options.allowed is not None else [folder_of(top)]


def folder_of(location: str | os.PathLike[str]) -> str:
    """The folder holding a file (or a URL's), in the form the allowed-folder test compares."""
    return _folder(_identity(os.fspath(location)), parent=True)


def _identity(url: str) -> str:
    return url if is_url(url) else os.path.realpath(url)


def path_part(location: str | os.PathLike[str]) -> str:
    """The path of a path, or of a URL."""
    location = os.fspath(location)
    if is_url(location):
        from urllib.parse import unquote, urlsplit

        return unquote(urlsplit(location).path)
    return location


def _folder(location: str, *, parent: bool = False) -> str:
    """A comparable form of a folder (or, with ``parent``, of the folder holding a file): a real
    path, or for a URL ``scheme://host:port/path`` without user or password."""
    if is_url(location):
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(location)
        path = posixpath.normpath(unquote(parts.path) or "/")
        if parent:
            path = posixpath.dirname(path)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{(parts.hostname or '').lower()}{port}{path}"
    real = os.path.realpath(location)
    return os.path.dirname(real) if parent else real


def _inside(place: str, folder: str) -> bool:
    """Whether ``place`` (a _folder() form) is ``folder`` or lies below it."""
    if is_url(place) != is_url(folder):
        return False
    if is_url(place):
        return place == folder or place.startswith(folder.rstrip("/") + "/")
    return os.path.commonpath([place, folder]) == folder


class _ParentResolver:
    """Finds, opens (read-only, always) and checks a differencing disk's parent, any format.

    The child says where to look (``parent_paths()``) and whether a candidate is its parent
    (``accepts_parent()``: VHDX compares DataWriteGuid with parent_linkage, VHD the parent's
    unique id with the one it recorded).
    """

    def __init__(self, options: _Options, chain: list[str]) -> None:
        self.options = options
        self.chain = chain
        # the allowed folders; by default the top image's (chain[0] is its identity already)
        self.allowed = options.allowed if options.allowed is not None else [_folder(chain[0], parent=True)]

    def __call__(self, child: VirtualDisk) -> VirtualDisk:
        if len(self.chain) >= MAX_CHAIN_DEPTH:
            raise ChainError(f"differencing chain deeper than {MAX_CHAIN_DEPTH} disks at {child.name}")
        tried: list[str] = []
        for key, value in child.parent_paths():
            for candidate in candidate_paths(child.name, key, value):
                tried.append(candidate)
                refusal = self._refusal(candidate)
                if refusal is not None:
                    tried[-1] += f" ({refusal})"
                    continue
                if _identity(candidate) in self.chain:
                    raise ChainError(f"differencing chain has a cycle: {candidate} is its own ancestor")
                try:
                    parent = _open_chain(candidate, False, None, self.options, self.chain, regular_only=True)
                except ImageNotFoundError:
                    continue
                refusal = child.accepts_parent(parent)
                if refusal is not None:
                    parent.close()
                    raise ParentMismatchError(refusal)
                return parent
        if not tried:
            raise ParentNotFoundError(f"parent of {child.name} not found: the child records no usable parent path")
        raise ParentNotFoundError(f"parent of {child.name} not found", tried)

    def _refusal(self, candidate: str) -> str | None:
        """Why ``candidate`` is not to be opened (see the module note), or None."""
        if not path_part(candidate).lower().endswith(formats.DISK_EXTENSIONS):
            return "not a disk image's name"
        where = _folder(candidate)
        if not any(_inside(where, folder) for folder in self.allowed):
            return f"outside the allowed folders; allow them with --allowed-parent-dir or {ALLOWED_DIRS_ENV}"
        if not is_url(candidate):
            try:
                mode = os.stat(candidate).st_mode
            except OSError:
                return None  # not there (or not reachable): the open says so
            if not stat.S_ISREG(mode):
                return "not a regular file"
        return None


def parent_resolver(child: str | os.PathLike[str], *,
                    allowed_parent_dirs: Sequence[str | os.PathLike[str]] | None = None) -> _ParentResolver:
    """The resolver ``open()`` uses, for code that builds a disk on its own store."""
    return _ParentResolver(_Options(allowed_parent_dirs, True, False), [_identity(os.fspath(child))])


def candidate_paths(child: str, key: str, value: str) -> Iterable[str]:
    """Where a locator value may point, for a child at ``child`` (a path or URL).

    Windows paths use backslashes; ``relative_path`` is relative to the child's folder.
    ``absolute_win32_path`` and ``volume_path`` name Windows volumes, which only mean something
    here when they are also valid POSIX paths after turning the slashes round.
    """
    text = value.replace("\\", "/")
    if key == "relative_path":
        if is_url(child):
            from urllib.parse import urlsplit, urlunsplit

            parts = urlsplit(child)
            path = posixpath.normpath(posixpath.join(posixpath.dirname(parts.path), text))
            yield urlunsplit(parts._replace(path=path))
        else:
            yield os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(child)), text))
        return
    import ntpath  # a differencing chain's Windows paths only

    drive, rest = ntpath.splitdrive(value)
    if drive or value.startswith("\\\\?\\"):
        return  # C:\... or \\?\Volume{...}\...: a Windows volume, not reachable by that name here
    if text.startswith("/"):
        yield text
