"""A mirror job: move a disk a guest keeps writing, then switch the guest over.

The job is three parts, each with one task: the **dirty map** (dirty.py: what is still to copy),
the **copier** (copier.py: the bulk pass, in worker threads) and the **switch-over**
(switchover.py: the pause in which the guest moves). This module holds the job itself: its state
(state.py draws the machine), the guest's writes, the convergence watch, errors and events.

Guest writes are seen first by ``guest_write``. In **background** mode (the default, as QEMU's
mirror) a write goes to the source and marks its grains dirty, so the guest never waits for the
target; when the guest dirties faster than the copy runs, the job notices within
``convergence_window`` and (``auto_switch``) turns itself into write-blocking. In
**write-blocking** mode (Hyper-V's, ESX 5's, QEMU's active mirror) a write goes to the source and
then synchronously to the target, so the dirty set only shrinks and the job always converges, at
the price of the guest's write latency during the bulk pass (specs/migration.md, point 6). A
guest write and a copy of the same grains never overlap (``RangeLock``), so nothing stale can
reach the target.

Errors follow a policy per side: "report" (fail the job), "retry" (mark the range dirty again,
back off, fail after ``max_retries`` in a row) or "stop" (pause until ``resume()``). A failed or
cancelled job leaves the guest on the complete, current source.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from ..disk import ExtentState, VirtualDisk
from ..errors import MigrationError
from ..guest import GuestDisk
from .copier import Copier
from .dirty import DEFAULT_GRANULARITY, DirtyMap, RangeLock
from .state import ENDED, MODES, POLICIES, STATES, ErrorPolicy, MirrorMode, MirrorState
from .switchover import complete_together, verify


class MirrorJob:
    def __init__(self, guest: GuestDisk, target: VirtualDisk, *, mode: str = "background",
                 granularity: int = DEFAULT_GRANULARITY, buf_size: int = 1 << 20, in_flight: int = 2,
                 speed: int | None = None, on_source_error: str = "report", on_target_error: str = "report",
                 max_retries: int = 5, target_is_zeroed: bool = True, flush_interval: float = 0.1,
                 convergence_window: float = 5.0, auto_switch: bool = True, shallow: bool = False,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        """``shallow``: the source is the top of a differencing chain and the target a new child
        of a copy of its parents (QEMU's sync=top): only the top layer's own data is copied, and
        zeros are written as zeros, since the target's parents show through where it holds none."""
        try:
            self.mode = MirrorMode(mode)
            self.policies = {"source": ErrorPolicy(on_source_error), "target": ErrorPolicy(on_target_error)}
        except ValueError:
            raise ValueError(f"mode is one of {', '.join(MODES)} (not {mode!r}); an error policy is one of "
                             f"{', '.join(POLICIES)} (not {on_source_error!r}/{on_target_error!r})") from None
        if target.size < guest.size:
            raise ValueError(f"the target ({target.size} bytes) is smaller than the disk ({guest.size} bytes)")
        if not target.writable():
            raise ValueError(f"the target {target.name} is not open for writing")
        if granularity < 512 or granularity & (granularity - 1):
            raise ValueError(f"the granularity must be a power of two of at least 512 bytes, not {granularity}")
        if buf_size < granularity or buf_size % granularity:
            raise ValueError("buf_size must be a multiple of the granularity")
        if in_flight < 1 or (speed is not None and speed <= 0) or max_retries < 0:
            raise ValueError(f"in_flight must be at least 1 (not {in_flight}), speed positive (not {speed}), "
                             f"max_retries not negative (not {max_retries})")
        self.guest = guest
        self.source = guest.active
        self.target = target
        self.dirty = DirtyMap(guest.size, granularity)
        self.ranges = RangeLock()
        self.cond = threading.Condition()  # guards the state, and the copier's bookkeeping with it
        self.copier = Copier(self, buf_size=buf_size, in_flight=in_flight, speed=speed,
                             target_is_zeroed=target_is_zeroed and not shallow, flush_interval=flush_interval)
        self.max_retries = max_retries
        self.retries = 0  # errors in a row under the "retry" policy
        self.resumes = 0  # resume() calls: tells an error of an operation begun before the latest one
        self.shallow = shallow
        self.convergence_window = convergence_window
        self.auto_switch = auto_switch
        self.on_event = on_event
        self.state = MirrorState.CREATED
        self.error: str | None = None
        self.converging: bool | None = None  # background mode's verdict, once it has one
        self.total = 0  # bytes the pass set out to copy (grows as the guest dirties more)
        self.mirrored = 0  # guest bytes written to the target by write-blocking mirroring
        self.pause: float | None = None  # seconds the guest's requests were held at the switch-over
        self.started_at = self.ready_at = self.ended_at = 0.0
        self._samples: list[tuple[float, int]] = []  # (time, bytes remaining), for the convergence watch

    @property
    def copied(self) -> int:
        return self.copier.copied

    @property
    def skipped_zero(self) -> int:
        return self.copier.skipped_zero

    # -- life ----------------------------------------------------------------------------------
    def start(self) -> "MirrorJob":
        """Take over the guest's writes and begin the copy pass."""
        if self.state is not MirrorState.CREATED:
            raise MigrationError(f"the job is {self.state}; it starts once")
        if self.guest.job is not None:
            raise MigrationError(f"{self.guest.name} is already being migrated")
        with self.guest.gate.closed():  # no guest write between "what is allocated" and "watching"
            for ext in self.source.extents(through_parents=not self.shallow):
                if ext.state is ExtentState.DATA:
                    self.dirty.mark(ext.offset, ext.length)
            self.total = self.dirty.dirty_bytes
            self.guest.job = self
            self.set_state(MirrorState.COPYING)
        self.started_at = time.perf_counter()
        self.copier.start()
        threading.Thread(target=self._watch, name="vhdkit-mirror-monitor", daemon=True).start()
        return self

    def wait(self, state: str = "ready", timeout: float | None = None) -> str:
        """Block until the job reaches ``state`` (or ends); returns the state it is in."""
        wanted = MirrorState(state)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while self.state is not wanted and not self.state.ended:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self.cond.wait(left)
            return self.state

    def complete(self, timeout: float | None = None) -> float:
        """Switch the guest to the target (waits for ``ready``); returns the pause in seconds."""
        return complete_together([self], timeout)

    def verify(self, chunk: int = 1 << 20) -> int:
        """After the switch-over: see switchover.verify."""
        return verify(self, chunk)

    def end_verification(self) -> None:
        self.guest.changed_since_switch = None

    def cancel(self, why: str = "cancelled") -> None:
        """Stop; the guest stays on the source, which is complete. The target is left as it is."""
        if not self.state.ended:
            self._end(MirrorState.CANCELLED, why)

    def pause_copy(self) -> None:
        """Hold the bulk copy (an engine giving the bandwidth back for a while). The guest's writes
        go on as before: mirrored (write-blocking) or marked dirty (background); ``resume()``
        continues from where the copy was. Only a copying job pauses."""
        with self.cond:
            if self.state is not MirrorState.COPYING:
                return
            self.copier.hold = True
            self.state = MirrorState.PAUSED
            self.cond.notify_all()
        self._emit("paused", error=None)

    def resume(self) -> None:
        """After ``pause_copy()``, or a "stop" policy's pause on an error: go on copying."""
        with self.cond:
            if self.state is not MirrorState.PAUSED:
                return
            self.retries = 0
            self.resumes += 1
            self.copier.hold = False
            self.state = MirrorState.COPYING
            self.cond.notify_all()
        self._emit("copying")

    # -- steps the copier and the switch-over take ----------------------------------------------
    def become_ready(self) -> None:
        """The pass is done and nothing is dirty (called with ``cond`` held)."""
        self.state = MirrorState.READY
        self.ready_at = time.perf_counter()
        self.cond.notify_all()
        threading.Thread(target=self._emit, args=("ready",), daemon=True).start()

    def begin_switch(self, timeout: float | None) -> None:
        if self.wait("ready", timeout) != MirrorState.READY:
            raise MigrationError(f"cannot switch over: the job is {self.state}" + (f" ({self.error})" if self.error else ""))
        self.set_state(MirrorState.SWITCHING)

    def set_state(self, state: MirrorState) -> None:
        with self.cond:
            self.state = state
            self.cond.notify_all()
        self._emit(state.value)

    def fail(self, message: str) -> None:
        self._end(MirrorState.FAILED, message)

    # -- the guest's writes --------------------------------------------------------------------
    def guest_write(self, offset: int, data: Any) -> None:
        view = memoryview(data).cast("B")
        begun = self.resumes
        first, end = self.dirty.span(offset, len(view))
        self.ranges.acquire(first, end)
        try:
            self.source.pwrite(offset, view)  # the guest's own error, if any, is the guest's to see
            if self.state.ended:
                return
            if self.mode is MirrorMode.BACKGROUND:
                self.dirty.mark_grains(first, end)
                with self.cond:
                    self.cond.notify_all()
                return
            try:
                self.target.pwrite(offset, view)
            except Exception as e:  # noqa: BLE001 - the guest's write succeeded on the source
                self.dirty.mark_grains(first, end)  # the copier retries it, if the policy says so
                self.trouble("target", f"mirroring a guest write at {offset:#x}: {e}", wait=False, begun=begun)
                return
            self.dirty.touch_grains(first, end)
            self.dirty.clear_grains(*self.dirty.inside(offset, len(view)))
            self.mirrored += len(view)
            self.copier.written_since_flush = True
        finally:
            self.ranges.release(first, end)

    # -- status --------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        now = time.perf_counter()
        return {
            "state": self.state.value, "mode": self.mode.value, "error": self.error, "size": self.guest.size,
            "total": self.total, "remaining": self.dirty.dirty_bytes, "copied": self.copied,
            "skipped_zero": self.skipped_zero, "mirrored": self.mirrored, "converging": self.converging,
            "granularity": self.dirty.granularity,
            "bulk_seconds": (self.ready_at - self.started_at) if self.ready_at else None,
            "elapsed": ((self.ended_at or now) - self.started_at) if self.started_at else 0.0,
            "pause_ms": None if self.pause is None else round(self.pause * 1000, 3),
            "source": self.source.name, "target": self.target.name,
        }

    # -- watching ------------------------------------------------------------------------------
    def _watch(self) -> None:
        """Samples the remaining bytes; in background mode, judges convergence."""
        while not self.state.ended:
            time.sleep(0.1)
            now = time.perf_counter()
            remaining = self.dirty.dirty_bytes
            self.total = max(self.total, self.copied + self.skipped_zero + remaining)
            self._samples.append((now, remaining))
            while self._samples and self._samples[0][0] < now - 2 * self.convergence_window:
                self._samples.pop(0)
            if self.mode is not MirrorMode.BACKGROUND or self.state is not MirrorState.COPYING:
                continue
            window = [r for t, r in self._samples if t >= now - self.convergence_window]
            old = [r for t, r in self._samples if t < now - self.convergence_window]
            if not old:
                continue
            if min(window) > 0.95 * old[-1]:  # not even 5% less than a window ago
                self.converging = False
                self._emit("not-converging", remaining=remaining)
                if self.auto_switch:
                    self.mode = MirrorMode.WRITE_BLOCKING  # from now on the dirt only shrinks
                    self._samples.clear()
                    self._emit("mode", mode=self.mode.value)
            else:
                self.converging = True

    # -- trouble -------------------------------------------------------------------------------
    def trouble(self, side: str, what: str, *, wait: bool = True, begun: int | None = None) -> None:
        """An error reading the source or writing the target: do what that side's policy says.
        The caller has marked the range dirty again. ``begun``: ``resumes`` when the operation
        began. Under "stop", an operation that was under way when the job paused may fail after
        the operator's resume(): that error is the old one's, and must not pause the job again
        (its range is copied again, and a target still in trouble fails that copy anew)."""
        policy = self.policies[side]
        message = f"{side} error {what}"
        if policy is ErrorPolicy.RETRY:
            self.retries += 1
            if self.retries <= self.max_retries:
                if wait:  # never in a guest's write: the guest must not feel the target's trouble
                    time.sleep(min(0.05 * 2 ** self.retries, 1.0))
                return
            message += f" (after {self.max_retries} retries)"
        elif policy is ErrorPolicy.STOP:
            with self.cond:
                stale = begun is not None and begun != self.resumes
                if stale or self.state not in (MirrorState.COPYING, MirrorState.READY):
                    return  # resumed since, already paused, or over: nothing to stop
                self.state = MirrorState.PAUSED
                self.error = message
                self.copier.hold = True
                self.cond.notify_all()
            self._emit("paused", error=message)
            return
        self.fail(message)

    def _end(self, state: MirrorState, message: str) -> None:
        with self.cond:
            if self.state.ended:
                return
            self.state = state
            self.error = message
            self.copier.hold = True
            self.ended_at = time.perf_counter()
            self.cond.notify_all()
        if self.guest.job is self:
            self.guest.job = None  # the guest goes on with the source alone
        self._emit(state.value, error=message)

    def _emit(self, event: str, **data: Any) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event, dict(self.status(), **data))
            except Exception:  # noqa: BLE001 - a listener's trouble is not the job's
                pass


__all__ = ["ENDED", "MODES", "POLICIES", "STATES", "MirrorJob", "MirrorMode", "MirrorState", "complete_together"]
