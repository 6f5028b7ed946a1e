"""A mirror job: move a disk a guest keeps writing, then switch the guest over (DESIGN.md §6).

    created ──► copying ──► ready ──► switching ──► completed
                   │           │          │
                   └───────────┴──────────┴──► failed / cancelled   (the guest stays on the source)

One background pass copies the source's allocated grains (holes and zero ranges are never read);
guest writes are seen first by ``guest_write``. In **write-blocking** mode (the default, as
Hyper-V, ESX 5 and QEMU's active mirror do) a write goes to the source and then synchronously to
the target, so the dirty set only shrinks and the job always converges; grains a write covers
whole need no copy afterwards. In **background** mode a write only marks its grains dirty; when
the guest dirties faster than the copy runs, the job notices within ``convergence_window`` and
(``auto_switch``) turns itself into write-blocking. A guest write and a copy of the same grains
never overlap (``RangeLock``), and a copy clears its grains before it reads, so nothing stale can
reach the target.

While ``ready``, the target is flushed ahead every ``flush_interval`` so the final flush is short
(notes/migration.md §3.3: the switch-over pause is mostly that flush). ``complete()`` closes the
guest's gate, copies what is left, flushes the target, points the guest at it, opens the gate, and
reports the pause. Errors follow a policy per side: "report" (fail the job), "retry" (mark the
range dirty again, back off, fail after ``max_retries`` in a row) or "stop" (pause until
``resume()``). A failed or cancelled job leaves the guest on the complete, current source.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from ..disk import ExtentState, VirtualDisk, is_zero
from ..errors import MigrationError
from .dirty import DEFAULT_GRANULARITY, DirtyMap, RangeLock
from .guest import GuestDisk

MODES = ("write-blocking", "background")
POLICIES = ("report", "retry", "stop")
STATES = ("created", "copying", "ready", "switching", "completed", "failed", "cancelled", "paused")
ENDED = ("completed", "failed", "cancelled")


class MirrorJob:
    def __init__(self, guest: GuestDisk, target: VirtualDisk, *, mode: str = "write-blocking",
                 granularity: int = DEFAULT_GRANULARITY, buf_size: int = 1 << 20, in_flight: int = 2,
                 speed: int | None = None, on_source_error: str = "report", on_target_error: str = "report",
                 max_retries: int = 5, target_is_zeroed: bool = True, flush_interval: float = 0.1,
                 convergence_window: float = 5.0, auto_switch: bool = True, shallow: bool = False,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        """``shallow``: the source is the top of a differencing chain and the target a new child
        of a copy of its parents (QEMU's sync=top): only the top layer's own data is copied, and
        zeros are written as zeros, since the target's parents show through where it holds none."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        for policy in (on_source_error, on_target_error):
            if policy not in POLICIES:
                raise ValueError(f"an error policy is one of {', '.join(POLICIES)}, not {policy!r}")
        if target.size < guest.size:
            raise ValueError(f"the target ({target.size} bytes) is smaller than the disk ({guest.size} bytes)")
        if not target.writable():
            raise ValueError(f"the target {target.name} is not open for writing")
        if buf_size < granularity or buf_size % granularity:
            raise ValueError("buf_size must be a multiple of the granularity")
        self.guest = guest
        self.source = guest.active
        self.target = target
        self.mode = mode
        self.dirty = DirtyMap(guest.size, granularity)
        self.ranges = RangeLock()
        self.buf_grains = buf_size // granularity
        self.in_flight = max(1, in_flight)
        self.speed = speed
        self.policies = {"source": on_source_error, "target": on_target_error}
        self.max_retries = max_retries
        self.shallow = shallow
        self.target_is_zeroed = target_is_zeroed and not shallow
        self.flush_interval = flush_interval
        self.convergence_window = convergence_window
        self.auto_switch = auto_switch
        self.on_event = on_event
        self.state = "created"
        self.error: str | None = None
        self.converging: bool | None = None  # background mode's verdict, once it has one
        # figures
        self.total = 0  # bytes the pass set out to copy (grows as the guest dirties more)
        self.copied = 0  # bytes the copier wrote to the target
        self.skipped_zero = 0  # bytes the copier read and found all zeros (not written)
        self.mirrored = 0  # guest bytes written to the target by write-blocking mirroring
        self.pause: float | None = None  # seconds the guest's requests were held at the switch-over
        self.started_at = self.ready_at = self.ended_at = 0.0
        # machinery
        self._cond = threading.Condition()
        self._workers: list[threading.Thread] = []
        self._copying_now = 0  # copier operations between claim and release
        self._cursor = 0
        self._hold = False  # copiers stop picking new work (switch-over, pause, end)
        self._retries = 0
        self._written_since_flush = False
        self._settling = False
        self._last_flush = 0.0
        self._samples: list[tuple[float, int]] = []

    # -- life ----------------------------------------------------------------------------------
    def start(self) -> "MirrorJob":
        """Take over the guest's writes and begin the copy pass."""
        if self.state != "created":
            raise MigrationError(f"the job is {self.state}; it starts once")
        if self.guest.job is not None:
            raise MigrationError(f"{self.guest.name} is already being migrated")
        with self.guest.gate.closed():  # no guest write between "what is allocated" and "watching"
            for ext in self.source.extents(through_parents=not self.shallow):
                if ext.state is ExtentState.DATA:
                    self.dirty.mark(ext.offset, ext.length)
            self.total = self.dirty.dirty_bytes
            self.guest.job = self
            self._set_state("copying")
        self.started_at = time.perf_counter()
        for i in range(self.in_flight):
            worker = threading.Thread(target=self._copier, name=f"vhdkit-mirror-{i}", daemon=True)
            worker.start()
            self._workers.append(worker)
        threading.Thread(target=self._monitor, name="vhdkit-mirror-monitor", daemon=True).start()
        return self

    def wait(self, state: str = "ready", timeout: float | None = None) -> str:
        """Block until the job reaches ``state`` (or ends); returns the state it is in."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.state != state and self.state not in ENDED:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left)
            return self.state

    def complete(self, timeout: float | None = None) -> float:
        """Switch the guest to the target (waits for ``ready``); returns the pause in seconds."""
        return complete_together([self], timeout)

    def _ready_to_switch(self, timeout: float | None) -> None:
        if self.wait("ready", timeout) != "ready":
            raise MigrationError(f"cannot switch over: the job is {self.state}" + (f" ({self.error})" if self.error else ""))
        self._set_state("switching")

    def _finish_behind_gate(self) -> None:
        """With the guest's gate closed: the last copies, the final flush, and the target made an
        ordinary image (its metadata through the log from now on), nothing switched yet."""
        self._quiesce_copiers()
        self._copy_rest()
        self.target.flush()
        self.target.publish()

    def _pivot(self, started: float) -> None:
        self.guest.changed_since_switch = DirtyMap(self.guest.size, self.dirty.granularity)
        self.guest.active = self.target
        self.guest.job = None
        self.pause = time.perf_counter() - started

    def cancel(self, why: str = "cancelled") -> None:
        """Stop; the guest stays on the source, which is complete. The target is left as it is."""
        if self.state in ENDED:
            return
        self._end("cancelled", why)

    def resume(self) -> None:
        """After a "stop" policy paused the job: try again."""
        with self._cond:
            if self.state != "paused":
                return
            self._retries = 0
            self._hold = False
            self.state = "copying"
            self._cond.notify_all()
        self._emit("copying")

    def verify(self, chunk: int = 1 << 20) -> int:
        """After the switch-over: every grain the guest has not written since reads the same from
        source and target. Returns the bytes compared; MigrationError names the first difference."""
        if self.state != "completed":
            raise MigrationError("verify comes after a completed switch-over")
        changed = self.guest.changed_since_switch
        assert changed is not None
        g = self.dirty.granularity
        compared = 0
        a, b = bytearray(chunk), bytearray(chunk)
        for pos, length in _holding_data(self.source, self.target):
            end = pos + length
            while pos < end:
                n = min(chunk, end - pos)
                self.source.preadinto(pos, memoryview(a)[:n])
                self.target.preadinto(pos, memoryview(b)[:n])  # read first, look at the marks after
                if a[:n] != b[:n]:
                    for at in range(0, n, g):
                        first, last = changed.span(pos + at, min(g, n - at))
                        if a[at : at + g] != b[at : at + g] and not changed.is_dirty(first, last):
                            raise MigrationError(f"after the switch-over the target differs from the source at "
                                                 f"{pos + at:#x}, where the guest has not written since")
                compared += n
                pos += n
        return compared

    def end_verification(self) -> None:
        self.guest.changed_since_switch = None

    # -- the guest's writes -------------------------------------------------------------------
    def guest_write(self, offset: int, data: Any) -> None:
        view = memoryview(data).cast("B")
        first, end = self.dirty.span(offset, len(view))
        self.ranges.acquire(first, end)
        try:
            self.source.pwrite(offset, view)  # the guest's own error, if any, is the guest's to see
            if self.state in ENDED:
                return
            if self.mode == "background":
                self.dirty.mark_grains(first, end)
                with self._cond:
                    self._cond.notify_all()
                return
            try:
                self.target.pwrite(offset, view)
            except Exception as e:  # noqa: BLE001 - the guest's write succeeded on the source
                self.dirty.mark_grains(first, end)  # the copier retries it, if the policy says so
                self._trouble("target", f"mirroring a guest write at {offset:#x}: {e}", wait=False)
                return
            self.dirty.touch_grains(first, end)
            self.dirty.clear_grains(*self.dirty.inside(offset, len(view)))
            self.mirrored += len(view)
            self._written_since_flush = True
        finally:
            self.ranges.release(first, end)

    # -- status --------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        now = time.perf_counter()
        return {
            "state": self.state, "mode": self.mode, "error": self.error, "size": self.guest.size,
            "total": self.total, "remaining": self.dirty.dirty_bytes, "copied": self.copied,
            "skipped_zero": self.skipped_zero, "mirrored": self.mirrored, "converging": self.converging,
            "granularity": self.dirty.granularity,
            "bulk_seconds": (self.ready_at - self.started_at) if self.ready_at else None,
            "elapsed": ((self.ended_at or now) - self.started_at) if self.started_at else 0.0,
            "pause_ms": None if self.pause is None else round(self.pause * 1000, 3),
            "source": self.source.name, "target": self.target.name,
        }

    # -- the copy pass -------------------------------------------------------------------------
    def _copier(self) -> None:
        buf = bytearray(self.buf_grains * self.dirty.granularity)
        while True:
            claim = self._claim()
            if claim is None:
                return
            first, end = claim
            offset, length = self.dirty.byte_range(first, end)
            view = memoryview(buf)[:length]
            try:
                try:
                    got = self.source.preadinto(offset, view)
                    if got != length:
                        raise MigrationError(f"short read at {offset:#x}")
                except Exception as e:  # noqa: BLE001
                    self.dirty.mark_grains(first, end)
                    self._trouble("source", f"reading {length} bytes at {offset:#x}: {e}")
                    continue
                try:
                    wrote = self._write_target(first, end, offset, view)
                except Exception as e:  # noqa: BLE001
                    self.dirty.mark_grains(first, end)
                    self._trouble("target", f"writing {length} bytes at {offset:#x}: {e}")
                    continue
                self.copied += wrote
                self.skipped_zero += length - wrote
                if wrote:
                    self._written_since_flush = True
                    self._retries = 0
                    self._throttle(wrote)
            finally:
                self.ranges.release(first, end)
                with self._cond:
                    self._copying_now -= 1
                    self._cond.notify_all()

    def _write_target(self, first: int, end: int, offset: int, view: memoryview) -> int:
        """Write a copied run to the target, leaving out whole grains of zeros where the target
        reads zeros already (a 64 KiB guest write in a fresh 2 MiB VHDX block makes the whole
        block "data"; only that grain is worth copying). Returns the bytes written."""
        g = self.dirty.granularity
        if not self.target_is_zeroed:
            self.target.pwrite(offset, view)
            self.dirty.touch_grains(first, end)
            return len(view)
        wrote = 0
        run_start = None  # grain where the current run of grains to write began
        for grain in range(first, end + 1):
            keep = False
            if grain < end:
                at = (grain - first) * g
                piece = view[at : at + g]
                keep = not is_zero(piece) or self.dirty.touched(grain, grain + 1)
            if keep and run_start is None:
                run_start = grain
            elif not keep and run_start is not None:
                lo, hi = (run_start - first) * g, min((grain - first) * g, len(view))
                self.target.pwrite(offset + lo, view[lo:hi])
                self.dirty.touch_grains(run_start, grain)
                wrote += hi - lo
                run_start = None
        return wrote

    def _claim(self) -> tuple[int, int] | None:
        """The next dirty run, cleared and owned; None when the job is over."""
        while True:
            with self._cond:
                if self.state in ENDED:
                    return None
                run = None if self._hold else self.dirty.next_run(self._cursor, self.buf_grains)
                if run is not None:
                    self._cursor = run[1] % self.dirty.grains
                    self._copying_now += 1
                    # cleared before the read: a guest write after this marks them again (background)
                    # or, waiting on the range lock, is mirrored after this copy (write-blocking)
                    self.dirty.clear_grains(*run)
                    break
                settle = self.state == "copying" and not self._copying_now and not self._hold and not self._settling
                if settle:
                    self._settling = True  # one copier flushes; the others wait
                else:
                    self._cond.wait(self.flush_interval)
            if settle:
                self._settle()
            else:
                self._flush_ahead()
        self.ranges.acquire(*run)  # waits out a guest write to these grains
        return run

    def _settle(self) -> None:
        """The pass is done: flush the target once (as QEMU does on reaching READY, so what is
        left for the switch-over is only what the guest writes from now on), then be ready,
        unless the guest dirtied more meanwhile (background mode)."""
        try:
            self.target.start_writeback(wait=True)  # the bulk of it, without a journal commit
            self.target.flush()  # then a short one
        except Exception as e:  # noqa: BLE001
            with self._cond:
                self._settling = False
            self._trouble("target", f"flushing: {e}")
            return
        with self._cond:
            self._settling = False
            self._last_flush = time.perf_counter()
            if self.state == "copying" and not self.dirty.dirty_grains and not self._copying_now:
                self.state = "ready"
                self.ready_at = time.perf_counter()
                self._cond.notify_all()
                threading.Thread(target=self._emit, args=("ready",), daemon=True).start()

    def _flush_ahead(self) -> None:
        """While ready: start the target's writeback now and then (without waiting for it), so
        the flush inside the switch-over finds little left to write."""
        if self.state == "ready" and self._written_since_flush and \
                time.perf_counter() - self._last_flush >= self.flush_interval:
            self._written_since_flush = False
            self._last_flush = time.perf_counter()
            try:
                self.target.start_writeback()
            except Exception as e:  # noqa: BLE001
                self._trouble("target", f"flushing: {e}")

    def _throttle(self, length: int) -> None:
        if self.speed:
            elapsed = time.perf_counter() - self.started_at
            ahead = self.copied / self.speed - elapsed
            if ahead > 0:
                time.sleep(min(ahead, 1.0))

    def _quiesce_copiers(self) -> None:
        with self._cond:
            self._hold = True
            while self._copying_now:
                self._cond.wait()

    def _copy_rest(self) -> None:
        """Under the closed gate: copy whatever is still dirty (background mode's last dirt)."""
        buf = bytearray(self.buf_grains * self.dirty.granularity)
        while True:
            run = self.dirty.next_run(0, self.buf_grains)
            if run is None:
                return
            first, end = run
            self.dirty.clear_grains(first, end)
            offset, length = self.dirty.byte_range(first, end)
            view = memoryview(buf)[:length]
            self.source.preadinto(offset, view)
            self.target.pwrite(offset, view)
            self.copied += length

    # -- watching ------------------------------------------------------------------------------
    def _monitor(self) -> None:
        """Samples the remaining bytes; in background mode, judges convergence."""
        while self.state not in ENDED:
            time.sleep(0.1)
            now = time.perf_counter()
            remaining = self.dirty.dirty_bytes
            self.total = max(self.total, self.copied + self.skipped_zero + remaining)
            self._samples.append((now, remaining))
            while self._samples and self._samples[0][0] < now - 2 * self.convergence_window:
                self._samples.pop(0)
            if self.mode != "background" or self.state != "copying":
                continue
            window = [r for t, r in self._samples if t >= now - self.convergence_window]
            old = [r for t, r in self._samples if t < now - self.convergence_window]
            if not old:
                continue
            if min(window) > 0.95 * old[-1]:  # not even 5% less than a window ago
                self.converging = False
                self._emit("not-converging", remaining=remaining)
                if self.auto_switch:
                    self.mode = "write-blocking"  # from now on the dirt only shrinks
                    self._samples.clear()
                    self._emit("mode", mode=self.mode)
            else:
                self.converging = True

    # -- trouble -------------------------------------------------------------------------------
    def _trouble(self, side: str, what: str, *, wait: bool = True) -> None:
        policy = self.policies[side]
        message = f"{side} error {what}"
        if policy == "retry":
            self._retries += 1
            if self._retries <= self.max_retries:
                if wait:  # never in a guest's write: the guest must not feel the target's trouble
                    time.sleep(min(0.05 * 2 ** self._retries, 1.0))
                return
            message += f" (after {self.max_retries} retries)"
        elif policy == "stop":
            with self._cond:
                self.state = "paused"
                self.error = message
                self._hold = True
                self._cond.notify_all()
            self._emit("paused", error=message)
            return
        self._fail(message)

    def _fail(self, message: str) -> None:
        self._end("failed", message)

    def _end(self, state: str, message: str) -> None:
        with self._cond:
            if self.state in ENDED:
                return
            self.state = state
            self.error = message
            self._hold = True
            self.ended_at = time.perf_counter()
            self._cond.notify_all()
        if self.guest.job is self:
            self.guest.job = None  # the guest goes on with the source alone
        self._emit(state, error=message)

    def _set_state(self, state: str) -> None:
        with self._cond:
            self.state = state
            self._cond.notify_all()
        self._emit(state)

    def _emit(self, event: str, **data: Any) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event, dict(self.status(), **data))
            except Exception:  # noqa: BLE001 - a listener's trouble is not the job's
                pass


def complete_together(jobs: list[MirrorJob], timeout: float | None = None) -> float:
    """Switch several disks of one guest at the same instant: every gate closes, every job
    finishes and flushes, then all pivot; if any fails, none does (each guest stays on its
    source). Returns the pause in seconds."""
    import contextlib

    started = time.perf_counter()
    try:
        for job in jobs:
            job._ready_to_switch(timeout)  # noqa: SLF001 - same module
        started = time.perf_counter()
        with contextlib.ExitStack() as gates:
            for job in jobs:
                gates.enter_context(job.guest.gate.closed())
            for job in jobs:
                job._finish_behind_gate()  # noqa: SLF001
            for job in jobs:  # nothing below can fail: the switch is all or nothing
                job._pivot(started)  # noqa: SLF001
    except BaseException as e:
        for job in jobs:
            job._fail(f"switch-over failed: {e}")  # noqa: SLF001 - the gates are open again
        raise MigrationError(f"switch-over failed, the guest stays on the source: {e}") from e
    for job in jobs:
        job.ended_at = time.perf_counter()
        job._set_state("completed")  # noqa: SLF001
    return time.perf_counter() - started if len(jobs) > 1 else (jobs[0].pause or 0.0)


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


__all__ = ["ENDED", "MODES", "POLICIES", "STATES", "MirrorJob", "complete_together"]
