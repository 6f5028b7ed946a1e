"""The bulk pass of a mirror job: worker threads copy dirty grains from source to target.

Each worker claims the next dirty run (clearing it before it reads, so a guest write after that
marks it again or, waiting on the range lock, is mirrored after this copy), reads it from the
source and writes it to the target, leaving out whole grains of zeros where the target already
reads zeros. When nothing is dirty and nobody is copying, one worker flushes the target and the
job becomes ready (as QEMU does on reaching READY, so what is left for the switch-over is only
what the guest writes from then on); while ready, the target's writeback is started now and then
so the flush inside the switch-over finds little left to write.

The target is written past the page cache where its store can (write_direct; buffers are page-
aligned mmaps for that): a guest that flushes its own disk on the same filesystem would
otherwise wait for the target's writeback (ext4 data=ordered; measured: the guest's fsyncs took
70-160 ms while the bulk pass's 600 MiB went to disk, against 0.3-7 ms before). The switch-over
turns that off before the guest writes to the target.

The copier shares the job's condition variable: the job's state and the copier's bookkeeping
change together under it.
"""

from __future__ import annotations

import mmap
import threading
import time
from typing import Protocol

from ..disk import VirtualDisk, is_zero
from ..errors import MigrationError
from .dirty import DirtyMap, RangeLock
from .state import MirrorState


class CopyingJob(Protocol):
    """What the copier needs of its job (a MirrorJob)."""

    source: VirtualDisk
    target: VirtualDisk
    dirty: DirtyMap
    ranges: RangeLock
    cond: threading.Condition
    state: MirrorState
    started_at: float
    retries: int
    resumes: int

    def trouble(self, side: str, what: str, *, wait: bool = True, begun: int | None = None) -> None: ...

    def become_ready(self) -> None: ...


class Copier:
    def __init__(self, job: CopyingJob, *, buf_size: int, in_flight: int, speed: int | None,
                 target_is_zeroed: bool, flush_interval: float) -> None:
        self.job = job
        self.buf_grains = buf_size // job.dirty.granularity
        self.in_flight = in_flight
        self.speed = speed
        self.target_is_zeroed = target_is_zeroed
        self.flush_interval = flush_interval
        self.copied = 0  # bytes the copier wrote to the target
        self.skipped_zero = 0  # bytes the copier read and found all zeros (not written)
        self.hold = False  # workers stop picking new work (switch-over, pause, end)
        self.written_since_flush = False
        self._workers: list[threading.Thread] = []
        self._copying_now = 0  # operations between claim and release
        self._cursor = 0
        self._settling = False
        self._last_flush = 0.0

    def start(self) -> None:
        self.job.target.write_direct(True)
        for i in range(self.in_flight):
            worker = threading.Thread(target=self._work, name=f"vhdkit-mirror-{i}", daemon=True)
            worker.start()
            self._workers.append(worker)

    # -- one worker ----------------------------------------------------------------------------
    def _work(self) -> None:
        job = self.job
        buf = mmap.mmap(-1, self.buf_grains * job.dirty.granularity)  # page-aligned, for write_direct
        while True:
            claim = self._claim()
            if claim is None:
                return
            first, end, begun = claim
            offset, length = job.dirty.byte_range(first, end)
            view = memoryview(buf)[:length]
            try:
                try:
                    got = job.source.preadinto(offset, view)
                    if got != length:
                        raise MigrationError(f"short read at {offset:#x}")
                except Exception as e:  # noqa: BLE001
                    job.dirty.mark_grains(first, end)
                    job.trouble("source", f"reading {length} bytes at {offset:#x}: {e}", begun=begun)
                    continue
                try:
                    wrote = self._write_target(first, end, offset, view)
                except Exception as e:  # noqa: BLE001
                    job.dirty.mark_grains(first, end)
                    job.trouble("target", f"writing {length} bytes at {offset:#x}: {e}", begun=begun)
                    continue
                self.copied += wrote
                self.skipped_zero += length - wrote
                if wrote:
                    self.written_since_flush = True
                    job.retries = 0
                    self._throttle()
            finally:
                job.ranges.release(first, end)
                with job.cond:
                    self._copying_now -= 1
                    job.cond.notify_all()

    def _write_target(self, first: int, end: int, offset: int, view: memoryview) -> int:
        """Write a copied run to the target, leaving out whole grains of zeros where the target
        reads zeros already (a 64 KiB guest write in a fresh 2 MiB VHDX block makes the whole
        block "data"; only that grain is worth copying). Returns the bytes written."""
        dirty, target = self.job.dirty, self.job.target
        g = dirty.granularity
        if not self.target_is_zeroed:
            target.pwrite(offset, view)
            dirty.touch_grains(first, end)
            return len(view)
        wrote = 0
        run_start = None  # grain where the current run of grains to write began
        for grain in range(first, end + 1):
            keep = False
            if grain < end:
                at = (grain - first) * g
                piece = view[at : at + g]
                keep = not is_zero(piece) or dirty.touched(grain, grain + 1)
            if keep and run_start is None:
                run_start = grain
            elif not keep and run_start is not None:
                lo, hi = (run_start - first) * g, min((grain - first) * g, len(view))
                target.pwrite(offset + lo, view[lo:hi])
                dirty.touch_grains(run_start, grain)
                wrote += hi - lo
                run_start = None
        return wrote

    def _claim(self) -> tuple[int, int, int] | None:
        """The next dirty run, cleared and owned, with the job's resume count at the claim (see
        MirrorJob.trouble); None when the job is over."""
        job = self.job
        while True:
            with job.cond:
                if job.state.ended:
                    return None
                run = None if self.hold else job.dirty.next_run(self._cursor, self.buf_grains)
                if run is not None:
                    self._cursor = run[1] % job.dirty.grains
                    self._copying_now += 1
                    job.dirty.clear_grains(*run)  # before the read: see the module note
                    begun = job.resumes
                    break
                settle = (job.state is MirrorState.COPYING and not self._copying_now and not self.hold
                          and not self._settling)
                if settle:
                    self._settling = True  # one worker flushes; the others wait
                else:
                    job.cond.wait(self.flush_interval)
            if settle:
                self._settle()
            else:
                self._flush_ahead()
        job.ranges.acquire(*run)  # waits out a guest write to these grains
        return run[0], run[1], begun

    def _settle(self) -> None:
        """The pass is done: flush the target once, then be ready, unless the guest dirtied
        more meanwhile (background mode)."""
        job = self.job
        try:
            job.target.start_writeback(wait=True)  # the bulk of it, without a journal commit
            job.target.flush()  # then a short one
        except Exception as e:  # noqa: BLE001
            with job.cond:
                self._settling = False
            job.trouble("target", f"flushing: {e}")
            return
        with job.cond:
            self._settling = False
            self._last_flush = time.perf_counter()
            if job.state is MirrorState.COPYING and not job.dirty.dirty_grains and not self._copying_now:
                job.become_ready()

    def _flush_ahead(self) -> None:
        """While ready: start the target's writeback now and then, without waiting for it."""
        job = self.job
        if job.state is MirrorState.READY and self.written_since_flush and \
                time.perf_counter() - self._last_flush >= self.flush_interval:
            self.written_since_flush = False
            self._last_flush = time.perf_counter()
            try:
                job.target.start_writeback()
            except Exception as e:  # noqa: BLE001
                job.trouble("target", f"flushing: {e}")

    def _throttle(self) -> None:
        if self.speed:
            elapsed = time.perf_counter() - self.job.started_at
            ahead = self.copied / self.speed - elapsed
            if ahead > 0:
                time.sleep(min(ahead, 1.0))

    # -- from the switch-over ------------------------------------------------------------------
    def quiesce(self) -> None:
        """Hold the workers, and wait until none is copying."""
        job = self.job
        with job.cond:
            self.hold = True
            while self._copying_now:
                job.cond.wait()

    def copy_rest(self) -> None:
        """Under the closed gate: copy whatever is still dirty (background mode's last dirt)."""
        job = self.job
        buf = mmap.mmap(-1, self.buf_grains * job.dirty.granularity)  # page-aligned, for write_direct
        while True:
            run = job.dirty.next_run(0, self.buf_grains)
            if run is None:
                return
            first, end = run
            job.dirty.clear_grains(first, end)
            offset, length = job.dirty.byte_range(first, end)
            view = memoryview(buf)[:length]
            job.source.preadinto(offset, view)
            job.target.pwrite(offset, view)
            self.copied += length
