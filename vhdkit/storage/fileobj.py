"""A Store over a binary file object the caller opened (``vhdkit.open(fileobj=...)``, as
``tarfile.open(fileobj=...)``): any seekable object with ``readinto`` (and ``write`` to be
writable), an ``io.BytesIO`` as well as a real file.

A file object has one position, so each positional call seeks and reads under a lock. The store
never closes the object: it stays the caller's.
"""

from __future__ import annotations

import io
import os
import threading

from ..errors import StorageError
from .base import BaseStore, _check_range

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class FileObjectStore(BaseStore):
    def __init__(self, fileobj: Any, *, writable: bool = False) -> None:
        for needed in ("seek", "readinto"):
            if not callable(getattr(fileobj, needed, None)):
                raise TypeError(f"fileobj needs a {needed}() method; {type(fileobj).__name__} has none")
        if getattr(fileobj, "seekable", lambda: True)() is False:
            raise ValueError("fileobj must be seekable")
        if writable and getattr(fileobj, "writable", lambda: True)() is False:
            raise ValueError("fileobj is not open for writing; open it 'r+b' or use mode 'r'")
        self._file = fileobj
        self._lock = threading.Lock()
        self.writable = writable
        name = getattr(fileobj, "name", None)
        self.url = os.fsdecode(name) if isinstance(name, (str, bytes)) else f"<{type(fileobj).__name__}>"

    def preadinto(self, offset: int, buf: memoryview) -> int:
        _check_range(offset, len(buf))
        view = memoryview(buf).cast("B")
        with self._lock:
            try:
                self._file.seek(offset)
                done = 0
                while done < len(view):
                    got = self._file.readinto(view[done:])
                    if not got:
                        break
                    done += got
            except OSError as e:
                raise StorageError(f"{self.url}: read at {offset:#x} failed: {e}") from e
        return done

    def pwrite(self, offset: int, data: bytes | memoryview) -> int:
        self._require_writable()
        _check_range(offset, len(data))
        with self._lock:
            try:
                self._file.seek(offset)
                view = memoryview(data).cast("B")
                done = 0
                while done < len(view):
                    done += self._file.write(view[done:]) or 0
            except OSError as e:
                raise StorageError(f"{self.url}: write at {offset:#x} failed: {e}") from e
        return len(data)

    def size(self) -> int:
        with self._lock:
            return self._file.seek(0, io.SEEK_END)

    def truncate(self, n: int) -> None:
        self._require_writable()
        with self._lock:
            self._file.truncate(n)

    def flush(self) -> None:
        if self.writable:
            with self._lock:
                self._file.flush()
                fileno = getattr(self._file, "fileno", None)
                try:
                    fd = fileno() if fileno is not None else None
                except (OSError, io.UnsupportedOperation):
                    fd = None
                if fd is not None:
                    os.fsync(fd)
