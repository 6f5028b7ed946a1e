"""The switch-over: the short pause in which a guest moves from the source to the target.

``complete_together`` closes the gate of every disk of one guest, lets each job copy what is
still dirty, flushes each target and makes it an ordinary image (its metadata through the log
from now on), and only then points every guest handle at its target: all disks switch, or none
does. The pause the guest sees is measured. ``verify`` afterwards reads source and target and
finds any grain that differs where the guest has not written since.
"""

from __future__ import annotations

import contextlib
import time
from typing import Protocol, Sequence

from ..disk import ExtentState, VirtualDisk
from ..errors import MigrationError
from ..guest import GuestDisk
from .copier import Copier
from .dirty import DirtyMap
from .state import MirrorState


class SwitchingJob(Protocol):
    """What the switch-over needs of a job (a MirrorJob)."""

    guest: GuestDisk
    source: VirtualDisk
    target: VirtualDisk
    dirty: DirtyMap
    copier: Copier
    state: MirrorState
    pause: float | None
    ended_at: float

    def begin_switch(self, timeout: float | None) -> None: ...

    def set_state(self, state: MirrorState) -> None: ...

    def fail(self, message: str) -> None: ...


def complete_together(jobs: Sequence[SwitchingJob], timeout: float | None = None) -> float:
    """Switch several disks of one guest at the same instant: every gate closes, every job
    finishes and flushes, then all pivot; if any fails, none does (each guest stays on its
    source). Returns the pause in seconds."""
    started = time.perf_counter()
    try:
        for job in jobs:
            job.begin_switch(timeout)
        started = time.perf_counter()
        with contextlib.ExitStack() as gates:
            for job in jobs:
                gates.enter_context(job.guest.gate.closed())
            for job in jobs:
                _finish_behind_gate(job)
            for job in jobs:  # nothing below can fail: the switch is all or nothing
                _pivot(job, started)
    except BaseException as e:
        for job in jobs:
            job.fail(f"switch-over failed: {e}")  # the gates are open again
        raise MigrationError(f"switch-over failed, the guest stays on the source: {e}") from e
    for job in jobs:
        job.ended_at = time.perf_counter()
        job.set_state(MirrorState.COMPLETED)
    return time.perf_counter() - started if len(jobs) > 1 else (jobs[0].pause or 0.0)


def _finish_behind_gate(job: SwitchingJob) -> None:
    """With the guest's gate closed: the last copies, the final flush, and the target made an
    ordinary image, nothing switched yet."""
    job.copier.quiesce()
    job.copier.copy_rest()
    job.target.write_direct(False)  # the guest's writes go through the page cache, as on any disk
    job.target.flush()
    job.target.publish()


def _pivot(job: SwitchingJob, started: float) -> None:
    job.guest.changed_since_switch = DirtyMap(job.guest.size, job.dirty.granularity)
    job.guest.active = job.target
    job.guest.job = None
    job.pause = time.perf_counter() - started


def verify(job: SwitchingJob, chunk: int = 1 << 20) -> int:
    """After the switch-over: every grain the guest has not written since reads the same from
    source and target. Returns the bytes compared; MigrationError names the first difference."""
    if job.state is not MirrorState.COMPLETED:
        raise MigrationError("verify comes after a completed switch-over")
    changed = job.guest.changed_since_switch
    assert isinstance(changed, DirtyMap)
    g = job.dirty.granularity
    compared = 0
    a, b = bytearray(chunk), bytearray(chunk)
    for pos, length in _holding_data(job.source, job.target):
        end = pos + length
        while pos < end:
            n = min(chunk, end - pos)
            job.source.preadinto(pos, memoryview(a)[:n])
            job.target.preadinto(pos, memoryview(b)[:n])  # read first, look at the marks after
            if a[:n] != b[:n]:
                for at in range(0, n, g):
                    first, last = changed.span(pos + at, min(g, n - at))
                    if a[at : at + g] != b[at : at + g] and not changed.is_dirty(first, last):
                        raise MigrationError(f"after the switch-over the target differs from the source at "
                                             f"{pos + at:#x}, where the guest has not written since")
            compared += n
            pos += n
    return compared


def _holding_data(*disks: VirtualDisk) -> list[tuple[int, int]]:
    """(offset, length) ranges where any of the disks holds data, merged and in order."""
    ranges = sorted((e.offset, e.offset + e.length) for d in disks for e in d.extents() if e.state is ExtentState.DATA)
    merged: list[list[int]] = []
    for start, end in ranges:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end - start) for start, end in merged]
