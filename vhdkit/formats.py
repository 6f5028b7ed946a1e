"""The one place that says what a disk format is: ``Format`` records for vhdx, vhd and raw.

Everything that depends on the format looks it up here instead of comparing names: which file
name extensions mean it, how to recognise it from its first and last bytes, which class reads it,
how a new one is planned and how large its file starts, how it is checked and repaired, resized and
compacted. tarfile's ``OPEN_METH`` table is the precedent.

This module stands on the bottom floor (it imports nothing of vhdkit), so every layer may ask it
what a format is. The code that implements a format lives higher up; a record names it by dotted
path (``"vhdkit.vhdx.image:VhdxDisk"``) and imports it on first use, so a command that never meets a
VHD does not load the VHD code (start-up is most of a small job's time).
"""

from __future__ import annotations

import os

from .runtime_types import NamedTuple, Protocol, import_module

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _Readable(Protocol):
    def pread(self, offset: int, n: int) -> bytes: ...
    def size(self) -> int: ...


# The signatures detection needs; tests hold them against vhdx.layout and vhd.layout.
VHDX_SIGNATURE = b"vhdxfile"  # [MS-VHDX] 2.2.1 file type identifier
VHD_COOKIE = b"conectix"  # VHD specification, hard disk footer "Cookie"
VHD_FOOTER_SIZE = 512


class Format(NamedTuple):
    """A disk format and where its implementation lives (``module:attribute``, loaded on use)."""

    name: str  # as users type it: -O vhdx, --format vhd
    title: str  # as prose writes it
    extensions: tuple[str, ...]  # lower case, the one new files get first
    logical_sector_sizes: tuple[int, ...]  # what the format can record
    structured: bool  # False for raw: the file's bytes are the disk, no metadata to check
    disk: str  # the VirtualDisk subclass
    plan: str  # (target, size, **choices) -> (writer, options): how a new image will be written
    new_file_size: str  # (size, disk_type) -> bytes the new file takes
    resize: str  # (disk, new_size, force=) -> None
    compact: str | None  # (disk) -> CompactReport; None: nothing to compact
    check: str | None  # (store, report, open_parent) -> None
    repair: str | None  # (target, report) -> list of what was done

    def load(self, what: str) -> Any:
        """The implementation named in field ``what``, imported now."""
        ref = getattr(self, what)
        if ref is None:
            raise LookupError(f"{self.title} has no {what}")
        module, _, attribute = ref.partition(":")
        return getattr(import_module(module), attribute)

    def disk_class(self) -> Any:
        return self.load("disk")

    def open_disk(self, store: Any, **options: Any) -> Any:
        """The disk on an open store (``writable``, ``parent_resolver``, ``tolerate_checksum``,
        ``unpublished``: every disk class takes the same keywords)."""
        return self.disk_class()(store, **options)

    def new_file_bytes(self, size: int, disk_type: str = "dynamic") -> int:
        return int(self.load("new_file_size")(size, disk_type))

    def __repr__(self) -> str:
        return f"<Format {self.name}>"


VHDX = Format(
    name="vhdx", title="VHDX", extensions=(".vhdx", ".avhdx"), logical_sector_sizes=(512, 4096), structured=True,
    disk="vhdkit.vhdx.image:VhdxDisk", plan="vhdkit.vhdx.create:plan_new", new_file_size="vhdkit.vhdx.create:new_file_size",
    resize="vhdkit.vhdx.resize:resize", compact="vhdkit.vhdx.compact:compact",
    check="vhdkit.validation.vhdx:check_vhdx", repair="vhdkit.validation.vhdx:repair_vhdx",
)
VHD = Format(
    name="vhd", title="VHD", extensions=(".vhd", ".avhd"), logical_sector_sizes=(512,), structured=True,
    disk="vhdkit.vhd.image:VhdDisk", plan="vhdkit.vhd.create:plan_new", new_file_size="vhdkit.vhd.create:new_file_size",
    resize="vhdkit.vhd.resize:resize", compact="vhdkit.vhd.compact:compact",
    check="vhdkit.validation.vhd:check_vhd", repair="vhdkit.validation.vhd:repair_vhd",
)
RAW = Format(
    name="raw", title="raw", extensions=(".raw", ".img", ".bin"), logical_sector_sizes=(512,), structured=False,
    disk="vhdkit.disk:RawDisk", plan="vhdkit.raw:plan_new", new_file_size="vhdkit.raw:new_file_size",
    resize="vhdkit.raw:resize", compact=None, check=None, repair=None,
)

FORMATS: tuple[Format, ...] = (VHDX, VHD, RAW)
NAMES: tuple[str, ...] = tuple(f.name for f in FORMATS)
_BY_NAME = {f.name: f for f in FORMATS}
_BY_EXTENSION = {ext: f for f in FORMATS for ext in f.extensions}
DISK_EXTENSIONS: tuple[str, ...] = VHDX.extensions + VHD.extensions  # what a library of disks holds


def get(name: str | Format) -> Format:
    """The format called ``name`` (ValueError naming the choices otherwise)."""
    if isinstance(name, Format):
        return name
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(f"format must be one of {', '.join(NAMES)}, not {name!r}") from None


def by_extension(path: str | os.PathLike[str]) -> Format | None:
    """The format a file name's extension says (case-insensitive), or None."""
    return _BY_EXTENSION.get(os.path.splitext(os.fspath(path))[1].lower())


def for_target(path: str | os.PathLike[str], name: str | Format | None = None, *,
               default: Format | None = None) -> Format:
    """The format of a file about to be written: ``name`` if given, which must then agree with an
    extension that names a format (Hyper-V refuses a VHDX in a file called .vhd), else the
    extension's, else ``default``. ValueError with a sentence when none says, or they disagree."""
    named = by_extension(path)
    if name is None:
        if named is None and default is not None:
            return default
        if named is None:
            ext = os.path.splitext(os.fspath(path))[1]
            raise ValueError(f"cannot tell the format from {ext or 'no extension'!r}: "
                             f"name the file .vhdx/.vhd/.raw or say the format (-O/--format {'|'.join(NAMES)})")
        return named
    fmt = get(name)
    if named is not None and named is not fmt:
        raise ValueError(f"{os.path.basename(os.fspath(path))} is named as a {named.title} file but the format asked "
                         f"for is {fmt.title}: Hyper-V goes by the extension, so use {fmt.extensions[0]} "
                         f"(or --format {named.name})")
    return fmt


def detect(store: _Readable) -> Format:
    """VHDX by its file identifier; VHD by a footer copy at 0 or a footer at the end; else raw.

    A fixed VHD is raw data plus a 512-byte footer, so it is recognised by the end of the file,
    never taken for raw.
    """
    head = store.pread(0, 8)
    if head == VHDX_SIGNATURE:
        return VHDX
    if head == VHD_COOKIE:
        return VHD
    size = store.size()
    if size >= VHD_FOOTER_SIZE and store.pread(size - VHD_FOOTER_SIZE, 8) == VHD_COOKIE:
        return VHD
    return RAW


def of(disk: Any) -> Format:
    """The format of an open disk."""
    return get(disk.format_name)


__all__ = ["DISK_EXTENSIONS", "FORMATS", "NAMES", "RAW", "VHD", "VHDX", "Format", "by_extension", "detect", "for_target",
           "get", "of"]
