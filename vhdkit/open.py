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
from typing import Iterable, Sequence

from .disk import RawDisk, VirtualDisk
from .errors import (
    ImageNotFoundError,
    ParentMismatchError,
    ParentNotFoundError,
    VhdkitError,
)
from .storage import Store, is_url, open_store

FORMATS = ("vhdx", "vhd", "raw")
MAX_CHAIN_DEPTH = 256
# The signatures detection needs, kept here so that detecting (and opening a raw file) does not
# load the format packages; tests check them against vhdx.layout and vhd.layout.
VHDX_SIGNATURE = b"vhdxfile"  # [MS-VHDX] 2.2.1 file type identifier
VHD_COOKIE = b"conectix"  # VHD spec, hard disk footer "Cookie"


def detect_format(store: Store) -> str:
    """'vhdx' by its file identifier; 'vhd' by a footer copy at 0 or a footer at the end; else 'raw'.

    A fixed VHD is raw data plus a 512-byte footer, so it is recognised by the end of the file,
    never taken for raw.
    """
    head = store.pread(0, 8)
    if head == VHDX_SIGNATURE:
        return "vhdx"
    if head == VHD_COOKIE:
        return "vhd"
    size = store.size()
    if size >= 512:
        tail = store.pread(size - 512, 8)
        if tail == VHD_COOKIE:
            return "vhd"
    return "raw"


def disk_class(fmt: str) -> type[VirtualDisk]:
    """The VirtualDisk class of a format, its package imported only now: a command that never
    meets a VHD does not pay for loading the VHD code (start-up time is most of a small job)."""
    if fmt == "vhdx":
        from .vhdx.image import VhdxDisk

        return VhdxDisk
    if fmt == "vhd":
        from .vhd.image import VhdDisk

        return VhdDisk
    if fmt == "raw":
        return RawDisk
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def open(  # noqa: A001 - named like tarfile.open
    target: str | os.PathLike[str],
    mode: str = "r",
    *,
    format: str | None = None,  # noqa: A002
    allowed_parent_dirs: Sequence[str | os.PathLike[str]] | None = None,
    resolve_parents: bool = True,
    tolerate_checksum: bool = False,
    unpublished: bool = False,
) -> VirtualDisk:
    """Open an image (path or URL) as a VirtualDisk.

    ``mode`` is "r" (the default: the file is never changed, a dirty VHDX log is replayed in
    memory) or "r+" (a dirty log is replayed to the file). ``format`` forces one of "vhdx",
    "vhd", "raw". ``allowed_parent_dirs`` restricts where parents may be found.
    ``resolve_parents=False`` opens a differencing disk without its parent (metadata only;
    reads that need the parent raise ParentNotFoundError). ``tolerate_checksum`` opens a VHD
    whose footer or dynamic header checksum is wrong (read-only; the damage is in ``problems``).
    ``unpublished`` (with "r+"): the image is being filled where nobody uses it yet (a migration's
    target before its switch-over), so metadata skips the log and the ordering flushes until
    ``publish()``; a crash before then may leave it inconsistent, and it must then be discarded.
    """
    if mode not in ("r", "r+"):
        raise ValueError(f"mode must be 'r' or 'r+', not {mode!r}")
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    if unpublished and mode != "r+":
        raise ValueError("unpublished is for images opened r+")
    options = _Options(allowed_parent_dirs, resolve_parents, tolerate_checksum)
    return _open_chain(target, mode == "r+", format, options, chain=[], unpublished=unpublished)


class _Options:
    def __init__(self, allowed: Sequence[str | os.PathLike[str]] | None, resolve_parents: bool,
                 tolerate_checksum: bool) -> None:
        self.allowed = [os.path.realpath(os.fspath(d)) for d in allowed] if allowed is not None else None
        self.resolve_parents = resolve_parents
        self.tolerate_checksum = tolerate_checksum


def _open_chain(target: str | os.PathLike[str], writable: bool, format: str | None,  # noqa: A002
                options: _Options, chain: list[str], unpublished: bool = False) -> VirtualDisk:
    store = open_store(target, writable=writable)
    try:
        fmt = format or detect_format(store)
        resolver = _ParentResolver(options, chain + [_identity(store.url)]) if options.resolve_parents else None
        if fmt == "vhdx":
            return disk_class("vhdx")(store, writable=writable, parent_resolver=resolver, unpublished=unpublished)
        if fmt == "vhd":
            return disk_class("vhd")(store, writable=writable, parent_resolver=resolver,
                                     tolerate_checksum=options.tolerate_checksum, unpublished=unpublished)
        return RawDisk(store, writable=writable)
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
            raise VhdkitError(f"differencing chain deeper than {MAX_CHAIN_DEPTH} disks at {child.name}")
        tried: list[str] = []
        for key, value in child.parent_paths():  # type: ignore[attr-defined]
            for candidate in candidate_paths(child.name, key, value):
                tried.append(candidate)
                if not self._inside_allowed(candidate):
                    tried[-1] += " (outside the allowed folders)"
                    continue
                if _identity(candidate) in self.chain:
                    raise VhdkitError(f"differencing chain has a cycle: {candidate} is its own ancestor")
                try:
                    parent = _open_chain(candidate, False, None, self.options, self.chain)
                except ImageNotFoundError:
                    continue
                refusal = child.accepts_parent(parent)  # type: ignore[attr-defined]
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
