"""A guest for migration tests: a thread writing stamped blocks at a fixed rate, and the shadow
copy (what the disk must hold: its first content plus every acknowledged write)."""

from __future__ import annotations

import random
import struct
import threading
import time
from typing import Any


class StampedWriter:
    """Open loop: ``rate`` writes/s of ``block`` bytes at random ``align``-aligned offsets (or,
    with ``hot``, 90% of them in the first 5% of the disk); each block is stamped with its
    sequence number and offset, so no two writes carry the same bytes."""

    def __init__(self, disk: Any, shadow: bytearray, *, rate: float = 200, block: int = 64 * 1024,
                 align: int | None = None, seed: int = 1, hot: bool = False) -> None:
        self.disk, self.shadow = disk, shadow
        self.rate, self.block, self.align = rate, block, align or block
        self.rng = random.Random(seed)
        self.hot = hot
        self.acknowledged = 0
        self.errors: list[BaseException] = []
        self.after_switch = 0  # writes acknowledged once ``mark_switch`` was called
        self._switched = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "StampedWriter":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop writing; a write that never returns fails the test here, showing where it stands
        (the next switch-over would otherwise wait for it without end)."""
        self._stop.set()
        self._thread.join(30)
        if self._thread.is_alive():
            import sys
            import traceback

            frame = sys._current_frames().get(self._thread.ident)  # noqa: SLF001
            where = "".join(traceback.format_stack(frame)) if frame is not None else "(no frame)"
            raise AssertionError(f"the guest's write has not returned in 30 s; it stands at:\n{where}")

    def mark_switch(self) -> None:
        self._switched = True

    def _offset(self) -> int:
        slots = (len(self.shadow) - self.block) // self.align + 1
        if self.hot and self.rng.random() < 0.9:
            slots = max(1, slots // 20)
        return self.rng.randrange(slots) * self.align

    def _run(self) -> None:
        period = 1.0 / self.rate
        due = time.monotonic()
        seq = 0
        while not self._stop.is_set():
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            due += period
            offset = self._offset()
            seq += 1
            stamp = struct.pack("<QQ", seq, offset)
            data = (stamp * (self.block // len(stamp) + 1))[: self.block]
            try:
                self.disk.pwrite(offset, data)
            except BaseException as e:  # noqa: BLE001 - the test looks at these
                self.errors.append(e)
                return
            self.shadow[offset : offset + self.block] = data
            self.acknowledged += 1
            if self._switched:
                self.after_switch += 1


def read_all(disk: Any, size: int | None = None) -> bytes:
    size = disk.size if size is None else size
    buf = bytearray(size)
    disk.preadinto(0, buf)
    return bytes(buf)


class FaultyStore:
    """A store that fails on demand: ``fail_writes`` / ``fail_reads`` (True, or a count of
    calls still to fail), ``fail_flush``; everything else passes to the real store."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.url = inner.url
        self.writable = inner.writable
        self.fail_writes: bool | int = False
        self.fail_reads: bool | int = False
        self.fail_flush = False

    def _failing(self, name: str) -> bool:
        value = getattr(self, name)
        if value is True:
            return True
        if value:
            setattr(self, name, value - 1)
            return True
        return False

    def preadinto(self, offset: int, buf: memoryview) -> int:
        if self._failing("fail_reads"):
            raise OSError(5, "injected read error")
        return self.inner.preadinto(offset, buf)

    def pread(self, offset: int, n: int) -> bytes:
        buf = bytearray(n)
        return bytes(buf[: self.preadinto(offset, memoryview(buf))])

    def pwrite(self, offset: int, data: Any) -> int:
        if self._failing("fail_writes"):
            raise OSError(28, "injected: no space left on device")
        return self.inner.pwrite(offset, data)

    def flush(self) -> None:
        if self.fail_flush:
            raise OSError(5, "injected flush error")
        self.inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
