"""Any fsspec filesystem (``memory://``, ``http://``, ``s3://`` ...) as a Store.

fsspec files have a shared position, so every positional call takes a lock and seeks first.
Random-access writes work where the filesystem supports ``r+b`` (memory:// does); elsewhere the
store is read-only.
"""

from __future__ import annotations

import threading

from ..errors import ImageNotFoundError, StorageError, UnsupportedFeatureError
from .base import BaseStore, _check_range

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class FsspecStore(BaseStore):
    def __init__(self, url: str, *, writable: bool = False, create: bool = False) -> None:
        try:
            import fsspec
        except ImportError as e:  # pragma: no cover - fsspec is a dependency
            raise UnsupportedFeatureError("fsspec is not installed") from e
        self.url = url
        self.writable = writable or create
        self._lock = threading.Lock()
        try:
            self._fs, self._path = fsspec.core.url_to_fs(url)
            if create:
                if self._fs.exists(self._path):
                    raise FileExistsError(url)
                with self._fs.open(self._path, "wb"):
                    pass
            self._file: Any = self._fs.open(self._path, "r+b" if self.writable else "rb")
        except FileNotFoundError as e:
            raise ImageNotFoundError(f"no such file: {url}") from e
        except (ValueError, ImportError, NotImplementedError) as e:
            raise StorageError(f"cannot open {url}: {e}") from e
        except OSError as e:
            raise StorageError(f"cannot open {url}: {e}") from e

    def preadinto(self, offset: int, buf: memoryview) -> int:
        _check_range(offset, len(buf))
        with self._lock:
            try:
                self._file.seek(offset)
                data = self._file.read(len(buf))
            except OSError as e:
                raise StorageError(f"read error on {self.url} at {offset:#x}: {e}") from e
        buf[: len(data)] = data
        return len(data)

    def pwrite(self, offset: int, data: bytes | memoryview) -> int:
        self._require_writable()
        _check_range(offset, len(data))
        with self._lock:
            try:
                end = self._file_size()
                if offset > end:  # fill the gap: not every fsspec file zero-extends on seek
                    self._file.seek(end)
                    self._file.write(bytes(offset - end))
                self._file.seek(offset)
                self._file.write(bytes(data))
            except OSError as e:
                raise StorageError(f"write error on {self.url} at {offset:#x}: {e}") from e
        return len(data)

    def _file_size(self) -> int:
        pos = self._file.tell()
        end = self._file.seek(0, 2)
        self._file.seek(pos)
        return int(end)

    def size(self) -> int:
        with self._lock:
            return self._file_size()

    def truncate(self, n: int) -> None:
        self._require_writable()
        with self._lock:
            try:
                self._file.truncate(n)
            except (OSError, AttributeError, NotImplementedError) as e:
                raise StorageError(f"cannot resize {self.url}: {e}") from e

    def flush(self) -> None:
        if self.writable:
            with self._lock:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
