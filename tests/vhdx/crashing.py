"""A Store that "loses power" after a given number of write operations.

Two models of what reaches the disk at the crash:
- "prefix": every operation before the cut is on disk (the OS wrote everything it was given);
- "flushed": only what a flush made durable survives: operations after the last completed
  flush are undone (the OS wrote nothing it was not forced to).
Real crashes lie between the two. After the cut every operation raises PowerCut, so whatever
the code under test tries in its error handling never reaches the disk either.
"""

from __future__ import annotations

from typing import Iterator

from vhdkit.storage import BaseStore, Store


class PowerCut(Exception):
    pass


class CrashingStore(BaseStore):
    def __init__(self, base: Store, budget: int | None = None, model: str = "prefix") -> None:
        self.base = base
        self.url = base.url
        self.writable = True
        self.budget = budget
        self.model = model
        self.ops = 0
        self.crashed = False
        self._undo: list[tuple[str, int, bytes | int]] = []  # since the last flush

    def _spend(self) -> None:
        if self.crashed or (self.budget is not None and self.ops >= self.budget):
            if not self.crashed:
                self.crashed = True
                if self.model == "flushed":
                    self._roll_back()
            raise PowerCut()
        self.ops += 1

    def _roll_back(self) -> None:
        for kind, offset, old in reversed(self._undo):
            if kind == "write":
                self.base.pwrite(offset, old)  # type: ignore[arg-type]
            else:
                self.base.truncate(old)  # type: ignore[arg-type]
        self._undo.clear()

    def pwrite(self, offset: int, data: bytes | memoryview) -> int:
        self._spend()
        old = self.base.pread(offset, len(data))
        size = self.base.size()
        self._undo.append(("truncate", 0, size))
        self._undo.append(("write", offset, old))
        return self.base.pwrite(offset, data)

    def truncate(self, n: int) -> None:
        self._spend()
        self._undo.append(("truncate", 0, self.base.size()))
        if n < self.base.size():
            self._undo.append(("write", n, self.base.pread(n, self.base.size() - n)))
        self.base.truncate(n)

    def flush(self) -> None:
        self._spend()
        self.base.flush()
        self._undo.clear()

    def preallocate(self, offset: int, n: int) -> bool:
        self._spend()
        return bool(getattr(self.base, "preallocate", lambda *a: False)(offset, n))

    def preadinto(self, offset: int, buf: memoryview) -> int:
        return self.base.preadinto(offset, buf)

    def size(self) -> int:
        return self.base.size()

    def allocated_ranges(self) -> Iterator[tuple[int, int]]:
        return self.base.allocated_ranges()

    def allocated_bytes(self) -> int | None:
        return self.base.allocated_bytes()

    def close(self) -> None:
        self.base.close()
