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
from urllib.parse import urlsplit, urlunsplit

from .disk import RawDisk, VirtualDisk
from .errors import (
    ImageNotFoundError,
    ParentMismatchError,
    ParentNotFoundError,
    UnsupportedFeatureError,
    VhdkitError,
)
from .storage import Store, is_url, open_store
from .vhdx import VhdxDisk
from .vhdx import layout as vhdx_layout

FORMATS = ("vhdx", "vhd", "raw")
MAX_CHAIN_DEPTH = 256
_VHD_COOKIE = b"conectix"


def detect_format(store: Store) -> str:
    """'vhdx' by its file identifier; 'vhd' by a footer copy at 0 or a footer at the end; else 'raw'.

    A fixed VHD is raw data plus a 512-byte footer, so it is recognised by the end of the file,
    never taken for raw.
    """
    head = store.pread(0, 8)
    if head == vhdx_layout.FILE_IDENTIFIER_SIGNATURE:
        return "vhdx"
    if head == _VHD_COOKIE:
        return "vhd"
    size = store.size()
    if size >= 512:
        tail = store.pread(size - 512, 8)
        if tail == _VHD_COOKIE:
            return "vhd"
    return "raw"


def open(  # noqa: A001 - named like tarfile.open
    target: str | os.PathLike[str],
    mode: str = "r",
    *,
    format: str | None = None,  # noqa: A002
    allowed_parent_dirs: Sequence[str | os.PathLike[str]] | None = None,
    resolve_parents: bool = True,
) -> VirtualDisk:
    """Open an image (path or URL) as a VirtualDisk.

    ``mode`` is "r" (the default: the file is never changed, a dirty VHDX log is replayed in
    memory) or "r+" (a dirty log is replayed to the file). ``format`` forces one of "vhdx",
    "vhd", "raw". ``allowed_parent_dirs`` restricts where parents may be found.
    ``resolve_parents=False`` opens a differencing disk without its parent (metadata only;
    reads that need the parent raise ParentNotFoundError).
    """
    if mode not in ("r", "r+"):
        raise ValueError(f"mode must be 'r' or 'r+', not {mode!r}")
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    return _open_chain(target, mode == "r+", format, allowed_parent_dirs, resolve_parents, chain=[])


def _open_chain(
    target: str | os.PathLike[str],
    writable: bool,
    format: str | None,  # noqa: A002
    allowed: Sequence[str | os.PathLike[str]] | None,
    resolve_parents: bool,
    chain: list[str],
) -> VirtualDisk:
    store = open_store(target, writable=writable)
    try:
        fmt = format or detect_format(store)
        if fmt == "vhdx":
            resolver = _ParentResolver(allowed, chain + [_identity(store.url)]) if resolve_parents else None
            return VhdxDisk(store, writable=writable, parent_resolver=resolver)
        if fmt == "vhd":
            raise UnsupportedFeatureError(f"{store.url} is a VHD image; VHD support is not available yet")
        return RawDisk(store, writable=writable)
    except BaseException:
        store.close()
        raise


def _identity(url: str) -> str:
    return url if is_url(url) else os.path.realpath(url)


class _ParentResolver:
    """Finds, opens and checks a VHDX child's parent (read-only, always)."""

    def __init__(self, allowed: Sequence[str | os.PathLike[str]] | None, chain: list[str]) -> None:
        self.allowed = [os.path.realpath(os.fspath(d)) for d in allowed] if allowed is not None else None
        self.chain = chain

    def __call__(self, child: VhdxDisk) -> VirtualDisk:
        locator = child.parent_locator
        assert locator is not None
        if len(self.chain) >= MAX_CHAIN_DEPTH:
            raise VhdkitError(f"differencing chain deeper than {MAX_CHAIN_DEPTH} disks at {child.name}")
        tried: list[str] = []
        linkages = {x.lower().strip("{}") for x in (locator.parent_linkage, locator.parent_linkage2) if x}
        for key, value in locator.paths():
            for candidate in candidate_paths(child.name, key, value):
                tried.append(candidate)
                if not self._inside_allowed(candidate):
                    tried[-1] += " (outside the allowed folders)"
                    continue
                if _identity(candidate) in self.chain:
                    raise VhdkitError(f"differencing chain has a cycle: {candidate} is its own ancestor")
                try:
                    parent = _open_chain(candidate, False, None, self.allowed, True, self.chain)
                except ImageNotFoundError:
                    continue
                identity = _data_write_guid(parent)
                if identity is not None and identity not in linkages:
                    parent.close()
                    raise ParentMismatchError(
                        f"{candidate} is not the parent of {child.name}: its DataWriteGuid is {identity}, "
                        f"the child expects {locator.parent_linkage} (the parent changed after the child was made)"
                    )
                return parent
        raise ParentNotFoundError(f"parent of {child.name} not found", tried)

    def _inside_allowed(self, path: str) -> bool:
        if self.allowed is None or is_url(path):
            return True
        real = os.path.realpath(path)
        return any(os.path.commonpath([real, d]) == d for d in self.allowed)


def _data_write_guid(disk: VirtualDisk) -> str | None:
    if isinstance(disk, VhdxDisk):
        return str(disk.header.data_write_guid).lower()
    return None


def candidate_paths(child: str, key: str, value: str) -> Iterable[str]:
    """Where a locator value may point, for a child at ``child`` (a path or URL).

    Windows paths use backslashes; ``relative_path`` is relative to the child's folder.
    ``absolute_win32_path`` and ``volume_path`` name Windows volumes, which only mean something
    here when they are also valid POSIX paths after turning the slashes round.
    """
    text = value.replace("\\", "/")
    if key == "relative_path":
        if is_url(child):
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
