"""``vhdkit.open()``: detect the format, open the store, resolve parents, return a VirtualDisk.

Parents of differencing disks are found through a resolver, never by guessing: the locator's
paths are tried in the spec's order (relative first), each candidate must lie inside the
directories the caller allows (when it restricts them), and the candidate's identity must match
the child's record of it (VHDX: DataWriteGuid == parent_linkage). A chain that comes back to a
file already in it is an error.
"""

from __future__ import annotations

import ntpath
import os
import posixpath
from typing import IO, Iterable, Sequence

from .. import formats
from ..disk import VirtualDisk
from ..errors import ChainError, ImageNotFoundError, ParentMismatchError, ParentNotFoundError
from ..formats import Format
from ..storage import FileObjectStore, Store, is_url, open_store

MAX_CHAIN_DEPTH = 256
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
    must then be discarded.
    """
    if mode not in MODES:
        raise ValueError("mode must be one of: " + "; ".join(f"{m!r} ({why})" for m, why in MODES.items())
                         + f"; not {mode!r}")
    fmt = formats.get(format) if format is not None else None
    if unpublished and mode != "r+":
        raise ValueError("unpublished is for images opened r+")
    options = _Options(allowed_parent_dirs, resolve_parents, tolerate_checksum)
    if fileobj is not None:
        store: Store = FileObjectStore(fileobj, writable=mode == "r+")
        if target is not None:
            store.url = os.fspath(target)  # where its parents are looked for
        return _open_on_store(store, mode == "r+", fmt, options, [], unpublished)
    if target is None:
        raise TypeError("open() needs a path or URL, or fileobj=")
    return _open_chain(target, mode == "r+", fmt, options, chain=[], unpublished=unpublished)


class _Options:
    def __init__(self, allowed: Sequence[str | os.PathLike[str]] | None, resolve_parents: bool,
                 tolerate_checksum: bool) -> None:
        self.allowed = [os.path.realpath(os.fspath(d)) for d in allowed] if allowed is not None else None
        self.resolve_parents = resolve_parents
        self.tolerate_checksum = tolerate_checksum


def _open_chain(target: str | os.PathLike[str], writable: bool, fmt: Format | None,
                options: _Options, chain: list[str], unpublished: bool = False) -> VirtualDisk:
    return _open_on_store(open_store(target, writable=writable), writable, fmt, options, chain, unpublished)


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


def _identity(url: str) -> str:
    return url if is_url(url) else os.path.realpath(url)


class _ParentResolver:
    """Finds, opens (read-only, always) and checks a differencing disk's parent, any format.

    The child says where to look (``parent_paths()``) and whether a candidate is its parent
    (``accepts_parent()``: VHDX compares DataWriteGuid with parent_linkage, VHD the parent's
    unique id with the one it recorded).
    """

    def __init__(self, options: _Options, chain: list[str]) -> None:
        self.options = options
        self.chain = chain

    def __call__(self, child: VirtualDisk) -> VirtualDisk:
        if len(self.chain) >= MAX_CHAIN_DEPTH:
            raise ChainError(f"differencing chain deeper than {MAX_CHAIN_DEPTH} disks at {child.name}")
        tried: list[str] = []
        for key, value in child.parent_paths():
            for candidate in candidate_paths(child.name, key, value):
                tried.append(candidate)
                if not self._inside_allowed(candidate):
                    tried[-1] += " (outside the allowed folders)"
                    continue
                if _identity(candidate) in self.chain:
                    raise ChainError(f"differencing chain has a cycle: {candidate} is its own ancestor")
                try:
                    parent = _open_chain(candidate, False, None, self.options, self.chain)
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

    def _inside_allowed(self, path: str) -> bool:
        allowed = self.options.allowed
        if allowed is None or is_url(path):
            return True
        real = os.path.realpath(path)
        return any(os.path.commonpath([real, d]) == d for d in allowed)


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
    drive, rest = ntpath.splitdrive(value)
    if drive or value.startswith("\\\\?\\"):
        return  # C:\... or \\?\Volume{...}\...: a Windows volume, not reachable by that name here
    if text.startswith("/"):
        yield text
