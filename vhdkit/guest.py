"""GuestDisk: the handle a running guest holds on its disk, and the Gate its requests pass.

Every read and write of a running VM (in this toolkit: the NBD export ``vhdkit serve`` makes, or
a program holding the handle) goes through it. Without a migration it passes straight to the
active disk. During a mirror job the job sees every write first (to mirror it or mark it dirty),
and at the switch-over the job closes the gate for a moment, finishes, and points ``active`` at
the target: the guest's next request lands on the new disk without the guest doing anything.

TRIM is accepted and does nothing (NBD lets a server ignore it; both copies then keep the same
bytes, so a migration stays exact). WRITE_ZEROES writes zeros.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator, Protocol

from .disk import Extent, VirtualDisk

_ZEROS = bytes(1 << 20)


class WriteInterceptor(Protocol):
    """What stands between the guest and its disk during a migration (a mirror job): it sees
    every guest write first and does it (to the source, and the target too if it mirrors)."""

    def guest_write(self, offset: int, data: Any) -> None: ...

    def cancel(self, why: str = "cancelled") -> None: ...


class WriteRecorder(Protocol):
    """Where the guest's writes after a switch-over are noted while the copy is verified."""

    def mark(self, offset: int, length: int) -> None: ...


class Gate:
    """Many guest requests at once, or one switch-over alone: a readers-writer gate whose
    ``closed()`` waits for the requests already inside and holds new ones at the door."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._inside = 0
        self._closed = False

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        with self._cond:
            while self._closed:
                self._cond.wait()
            self._inside += 1
        try:
            yield
        finally:
            with self._cond:
                self._inside -= 1
                if not self._inside:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def closed(self) -> Iterator[None]:
        with self._cond:
            while self._closed:  # one switch-over at a time
                self._cond.wait()
            self._closed = True
            while self._inside:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._closed = False
                self._cond.notify_all()


class GuestDisk:
    def __init__(self, disk: VirtualDisk) -> None:
        self.active = disk
        self.gate = Gate()
        self.job: WriteInterceptor | None = None  # a mirror job, while one runs
        self.changed_since_switch: WriteRecorder | None = None  # kept while a switch-over is verified
        self._closed = False

    # -- what the guest sees -------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.active.size

    @property
    def name(self) -> str:
        return self.active.name

    @property
    def logical_sector_size(self) -> int:
        return self.active.logical_sector_size

    @property
    def writable(self) -> bool:
        return self.active.writable()

    def preadinto(self, offset: int, buf: Any) -> int:
        with self.gate.request():
            return self.active.preadinto(offset, buf)

    def pread(self, offset: int, n: int) -> bytes:
        buf = bytearray(max(0, min(n, self.size - offset)))
        got = self.preadinto(offset, buf)
        return bytes(buf[:got])

    def pwrite(self, offset: int, data: Any, *, fua: bool = False) -> int:
        length = memoryview(data).nbytes
        with self.gate.request():
            job = self.job
            if job is not None:
                job.guest_write(offset, data)
            else:
                changed = self.changed_since_switch
                if changed is not None:  # marked before the write: a verifier that reads it sees the mark
                    changed.mark(offset, length)
                self.active.pwrite(offset, data)
            if fua:
                self.active.flush()
        return length

    def write_zeroes(self, offset: int, length: int, *, fua: bool = False) -> None:
        end = offset + length
        while offset < end:
            step = min(len(_ZEROS), end - offset)
            self.pwrite(offset, memoryview(_ZEROS)[:step])
            offset += step
        if fua:
            self.flush()

    def discard(self, offset: int, length: int) -> None:
        """TRIM: a hint the guest no longer needs the range. Ignored (see the module note)."""

    def flush(self) -> None:
        with self.gate.request():
            self.active.flush()

    def extents(self, offset: int = 0, length: int | None = None) -> Iterator[Extent]:
        with self.gate.request():
            return iter(list(self.active.extents(offset, length)))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            job = self.job
            if job is not None:
                job.cancel("the guest's disk was closed")
            self.active.close()
