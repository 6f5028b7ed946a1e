"""The one exception tree of vhdkit: every class vhdkit raises for bad input is here.

Bad input (a damaged or hostile image, a missing parent, an unreachable store) raises a
``VhdkitError`` subclass, never ``VhdkitError`` itself; misuse by the caller (a negative offset, a
wrong type, an unknown option) raises ``ValueError`` or ``TypeError`` as the standard library does.

::

    VhdkitError
     ├── CorruptImageError            a structure fails its signature, checksum or a range check
     ├── UnsupportedFeatureError      valid, but something vhdkit does not implement (or refuses)
     ├── ParentNotFoundError          also a FileNotFoundError; lists every path tried
     ├── ParentMismatchError          a parent was found but its identity does not match the child
     ├── ChainError                   a differencing chain loops, or is deeper than vhdkit follows
     ├── ReadOnlyError                also io.UnsupportedOperation: a write to a disk or store opened read-only
     ├── RefusedError                 an operation that would lose data or cannot apply to this image
     │    ├── ResizeRefusedError      resize: a size the format cannot hold, or a shrink over data
     │    └── MergeRefusedError       merge: nothing to merge, or not into that parent
     ├── StorageError                 the store itself failed (I/O error, bad URL)
     │    ├── ImageNotFoundError      also a FileNotFoundError
     │    ├── ImageExistsError        also a FileExistsError: creating over an existing file
     │    └── ImageInUseError         another writer holds the image
     ├── PlacementError               placement layer: a VM's files cannot be placed or verified
     ├── LibraryError                 the disk library's database or folders cannot be used
 ├── PreflightError               preflight: host facts that cannot be read or gathered
 ├── VmConfigError                a VM's configuration cannot be read, or names files it may not
     ├── MigrationError               copy engine and mirror jobs; the source stays intact
     │    └── CopyVerificationError   a verify pass found the target differing from the source
     ├── NetworkModelError            netvirt: an inconsistent network model
     │    └── PoolExhaustedError      an address or VSID pool has nothing left
     ├── FrameError                   netvirt: a malformed NVGRE/VXLAN frame
     └── VmbusError                   vmbus: the ring, its channel or its registry settings
          ├── RingCorruptError        a descriptor points outside what was written
          ├── ChannelError            the other side stopped, or failed
          └── RegistryError           a .reg file or buffer setting that cannot be written or read
"""

from __future__ import annotations

import io

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Sequence


class VhdkitError(Exception):
    """Root of every error vhdkit raises for bad input or a failing environment."""


class CorruptImageError(VhdkitError):
    """An on-disk structure is damaged or inconsistent.

    ``structure`` names it as the spec does ("VHDX header 1", "region table 2", "log entry"),
    ``offset`` is its file offset, ``field`` the failing field, ``expected``/``found`` the values.
    """

    def __init__(
        self,
        message: str,
        *,
        structure: str | None = None,
        offset: int | None = None,
        field: str | None = None,
        expected: Any = None,
        found: Any = None,
    ) -> None:
        self.structure = structure
        self.offset = offset
        self.field = field
        self.expected = expected
        self.found = found
        parts = [message]
        where = []
        if structure:
            where.append(structure)
        if offset is not None:
            where.append(f"at offset {offset:#x}")
        if field:
            where.append(f"field {field}")
        if where:
            parts.append("(" + ", ".join(where) + ")")
        if expected is not None or found is not None:
            parts.append(f"expected {_show(expected)}, found {_show(found)}")
        super().__init__(" ".join(parts))


def _show(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:#x}" if value > 9 else str(value)
    return repr(value)


class UnsupportedFeatureError(VhdkitError):
    """The image is valid but uses something vhdkit does not implement or must refuse."""


class ParentMismatchError(VhdkitError):
    """A parent image was found but it is not the one the child was made from."""


class ParentNotFoundError(VhdkitError, FileNotFoundError):
    """A differencing disk's parent cannot be found; ``tried`` lists every path looked at."""

    def __init__(self, message: str, tried: Sequence[str] = ()) -> None:
        self.tried = list(tried)
        text = message
        if self.tried:
            text += "; tried: " + ", ".join(self.tried)
        VhdkitError.__init__(self, text)

    def __str__(self) -> str:  # FileNotFoundError would otherwise format errno/filename
        return str(self.args[0]) if self.args else ""


class ChainError(VhdkitError):
    """A differencing chain comes back to a disk already in it, or is deeper than vhdkit follows."""


class ReadOnlyError(VhdkitError, io.UnsupportedOperation):
    """A write was attempted on a disk or store opened read-only (an ``io.UnsupportedOperation``
    too, as writing to a file opened for reading is)."""

    def __str__(self) -> str:  # OSError would otherwise format errno/filename
        return str(self.args[0]) if self.args else ""


class RefusedError(VhdkitError):
    """An operation that would lose data, or that cannot apply to this image, was refused."""


class ResizeRefusedError(RefusedError):
    """A resize to a size the format cannot hold, or a shrink that would cut stored data."""


class MergeRefusedError(RefusedError):
    """A merge of a disk that is not a differencing disk, or into a disk that is not its parent."""


class StorageError(VhdkitError):
    """The store behind an image failed: an I/O error, a bad URL, a missing file."""


class ImageNotFoundError(StorageError, FileNotFoundError):
    """The image file (or URL) does not exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ImageExistsError(StorageError, FileExistsError):
    """Creating an image where a file already exists (and overwriting was not asked for)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ImageInUseError(StorageError):
    """Another writer (this process or another) has the image open for writing."""


class PlacementError(VhdkitError):
    """The placement layer could not place or verify a VM's files."""


class LibraryError(VhdkitError):
    """The disk library's database or the folders it indexes cannot be used."""


class PreflightError(VhdkitError):
    """Host facts for a migration preflight cannot be gathered, or a facts file cannot be read
    (the message names the file and the field)."""


class VmConfigError(VhdkitError):
    """A virtual machine's configuration cannot be read (the message names the file and what is
    wrong), or it names files outside the VM's folder."""


class MigrationError(VhdkitError):
    """A copy or mirror job failed; the source stays intact and in use."""


class CopyVerificationError(MigrationError):
    """The verify pass found the target differing from the source."""


class NetworkModelError(VhdkitError):
    """A network virtualization model is inconsistent (overlap, unknown name, out-of-range VSID)."""


class PoolExhaustedError(NetworkModelError):
    """An address or VSID pool has nothing left to assign."""


class FrameError(VhdkitError):
    """An encapsulated frame is malformed or breaks its format's rules (NVGRE, VXLAN)."""


class VmbusError(VhdkitError):
    """The VMBus sibling package: its ring, channel or registry settings."""


class RingCorruptError(VmbusError):
    """A VMBus ring holds a packet descriptor that points outside what was written."""


class RegistryError(VmbusError):
    """A .reg file or a buffer setting vhdkit cannot write or read."""


class ChannelError(VmbusError):
    """The other side of a shared ring stopped while this side waited on it, or failed."""
