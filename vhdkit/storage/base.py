"""The Store protocol: positional byte I/O on whatever holds an image's bytes.

Formats never touch a file object; they call ``pread``/``preadinto``/``pwrite`` with explicit
offsets, so one store can serve several readers (a parent shared by two children, a copy engine's
reader and writer threads) without a shared file position.
"""

from __future__ import annotations

import os

from ..errors import ReadOnlyError, StorageError
from ..runtime_types import Protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator


class Store(Protocol):
    """Positional byte I/O. ``url`` names the store for messages; ``writable`` says if pwrite works."""

    url: str
    writable: bool

    def pread(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``offset``; shorter only at the end of the store."""

    def preadinto(self, offset: int, buf: memoryview) -> int:
        """Fill ``buf`` from ``offset``; returns the count, short only at the end of the store."""

    def pwrite(self, offset: int, data: bytes | memoryview) -> int: ...

    def size(self) -> int: ...

    def truncate(self, n: int) -> None: ...

    def flush(self) -> None:
        """Make every completed write durable (fsync for local files)."""

    def close(self) -> None: ...

    def allocated_ranges(self) -> Iterator[tuple[int, int]]:
        """(offset, length) runs that hold data; holes read as zeros. Whole store if unknown."""

    def allocated_bytes(self) -> int | None:
        """Bytes the store really uses (``du``), or None when the backend cannot tell."""

    def punch(self, offset: int, n: int) -> None:
        """Hint: these bytes are no longer needed and read back as zeros afterwards."""

    def write_zeros(self, offset: int, n: int) -> None:
        """Write ``n`` zero bytes at ``offset`` (allocated, unlike punch)."""

    def writeback_hint(self) -> None:
        """Hint: start writing what has been written so far; a later flush() will wait less."""

    def copy_range(self, src: int, dst: int, n: int) -> None:
        """Copy ``n`` bytes within the store from ``src`` to ``dst`` (the ranges must not overlap)."""


class BaseStore:
    """Shared behaviour: bounds checks, read-only refusal, sparse hints that do nothing."""

    url: str = "<store>"
    writable: bool = False

    def pread(self, offset: int, n: int) -> bytes:
        _check_range(offset, n)
        buf = bytearray(n)
        got = self.preadinto(offset, memoryview(buf))
        del buf[got:]
        return bytes(buf)

    def preadinto(self, offset: int, buf: memoryview) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def pwrite(self, offset: int, data: bytes | memoryview) -> int:
        raise ReadOnlyError(f"{self.url} is open read-only")

    def size(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def truncate(self, n: int) -> None:
        raise ReadOnlyError(f"{self.url} is open read-only")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def allocated_ranges(self) -> Iterator[tuple[int, int]]:
        size = self.size()
        if size:
            yield (0, size)

    def allocated_bytes(self) -> int | None:
        return None

    def punch(self, offset: int, n: int) -> None:
        self._require_writable()

    def write_zeros(self, offset: int, n: int) -> None:
        zeros = bytes(min(n, 1 << 20))
        done = 0
        while done < n:
            step = min(len(zeros), n - done)
            self.pwrite(offset + done, zeros[:step] if step < len(zeros) else zeros)
            done += step

    def writeback_hint(self) -> None:
        pass

    def copy_range(self, src: int, dst: int, n: int) -> None:
        self._require_writable()
        buf = bytearray(min(n, 1 << 20))
        done = 0
        while done < n:
            view = memoryview(buf)[: min(len(buf), n - done)]
            read_fully(self, src + done, view, "the range to copy")
            self.pwrite(dst + done, view)
            done += len(view)

    def start_writeback(self, wait: bool = False) -> None:
        """Write back what was written (``wait``: and wait), without a flush's commit (see LocalStore)."""

    def write_direct(self, enable: bool) -> bool:
        """Write whole, page-aligned pages from page-aligned memory past the page cache from now
        on (``enable``), or no longer; True if this store does (see LocalStore)."""
        return False

    def _require_writable(self) -> None:
        if not self.writable:
            raise ReadOnlyError(f"{self.url} is open read-only")

    def __enter__(self) -> "BaseStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "rw" if self.writable else "ro"
        return f"<{type(self).__name__} {self.url} {mode}>"


def _check_range(offset: int, n: int) -> None:
    if offset < 0 or n < 0:
        raise ValueError(f"negative offset or length: offset={offset} n={n}")


def read_fully(store: Store, offset: int, buf: memoryview, what: str) -> None:
    """Fill ``buf`` or raise StorageError saying what could not be read (used for payload)."""
    got = store.preadinto(offset, buf)
    if got != len(buf):
        raise StorageError(
            f"{store.url}: short read of {what}: {got} of {len(buf)} bytes at offset {offset:#x}"
        )


class Borrowed:
    """A store lent to a disk that must not close it: a VirtualDisk closes its store when it is
    closed or collected, and the lender keeps using this one."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.url = store.url
        self.writable = store.writable

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def close(self) -> None:
        pass


def redact(location: str | os.PathLike[str]) -> str:
    """The one form in which a location is ever shown, logged, reported or stored: a URL without
    its password (``smb://user:secret@host/s`` -> ``smb://user@host/s``); a path as it is."""
    text = os.fspath(location)
    scheme, sep, rest = text.partition("://")
    if not sep or not scheme.isalpha():
        return text
    authority, slash, tail = rest.partition("/")
    user, at, host = authority.rpartition("@")
    if at and ":" in user:
        return f"{scheme}{sep}{user.split(':', 1)[0]}@{host}{slash}{tail}"
    return text
