"""Mirror jobs with a guest writing all the time: the target holds the first content plus every
acknowledged write, whatever the mode, the formats, or the faults on the way."""

from __future__ import annotations

import random
import threading
import time

import pytest

import vhdkit
from vhdkit.guest import GuestDisk
from vhdkit.migration.mirror import MirrorJob
from vhdkit.errors import MigrationError
from vhdkit import formats
from vhdkit.storage import open_store

from .guestload import FaultyStore, StampedWriter, read_all

MiB = 1 << 20
SIZE = 64 * MiB


def make_source(path, fmt: str, seed: int = 42, size: int = SIZE) -> bytearray:
    """4 MiB pieces: 60% random data, 10% written zeros, 30% never written; returns the content."""
    rng = random.Random(seed)
    shadow = bytearray(size)
    with vhdkit.create(path, size, format=fmt, **({"block_size": 2 * MiB} if fmt == "vhdx" else {})) as disk:
        for at in range(0, size, 4 * MiB):
            roll = rng.random()
            if roll < 0.6:
                data = rng.randbytes(4 * MiB)
                disk.pwrite(at, data)
                shadow[at : at + 4 * MiB] = data
            elif roll < 0.7:
                disk.pwrite(at, bytes(4 * MiB))
    return shadow


def new_target(path, fmt: str, size: int = SIZE):
    return vhdkit.create(path, size, format=fmt)


def migrate(tmp_path, src_fmt="raw", dst_fmt="vhdx", rate=300, job_options=None, writer_options=None,
            after=0.2, hold_ready=0.2, size=SIZE):
    src = tmp_path / f"src.{src_fmt}"
    shadow = make_source(src, src_fmt, size=size)
    guest = GuestDisk(vhdkit.open(src, "r+"))
    writer = StampedWriter(guest, shadow, rate=rate, **(writer_options or {})).start()
    time.sleep(0.1)
    target = new_target(tmp_path / f"dst.{dst_fmt}", dst_fmt, size)
    job = MirrorJob(guest, target, **(job_options or {})).start()
    assert job.wait("ready", 60) == "ready", job.status()
    time.sleep(hold_ready)
    pause = job.complete()
    writer.mark_switch()
    time.sleep(after)
    writer.stop()
    assert not writer.errors
    return guest, job, shadow, writer, pause


@pytest.mark.parametrize("src_fmt, dst_fmt", [("raw", "vhdx"), ("vhd", "vhdx"), ("vhdx", "vhd"), ("vhdx", "raw")])
def test_write_blocking_mirror_keeps_every_acknowledged_write(tmp_path, src_fmt, dst_fmt):
    guest, job, shadow, writer, pause = migrate(tmp_path, src_fmt, dst_fmt)
    assert guest.active is job.target and job.state == "completed"
    assert read_all(guest) == bytes(shadow)  # first content + every write, before and after the pivot
    assert writer.after_switch > 0 and writer.acknowledged > 50
    assert job.verify() > 0  # source and target agree wherever the guest has not written since
    st = job.status()
    assert st["pause_ms"] is not None and st["remaining"] == 0 and pause == job.pause
    guest.close()
    with vhdkit.open(tmp_path / f"dst.{dst_fmt}") as reopened:  # and it is on disk, in its format
        assert read_all(reopened) == bytes(shadow)


def test_only_allocated_nonzero_data_is_copied(tmp_path):
    """W0: no guest writes: the target receives the source's non-zero data and nothing more."""
    src = tmp_path / "src.vhdx"
    shadow = make_source(src, "vhdx")
    guest = GuestDisk(vhdkit.open(src, "r+"))
    job = MirrorJob(guest, new_target(tmp_path / "dst.vhdx", "vhdx")).start()
    job.complete(60)
    nonzero = sum(1 for at in range(0, SIZE, 4 * MiB) if any(shadow[at : at + 4 * MiB]))
    assert job.copied == nonzero * 4 * MiB and job.mirrored == 0
    assert job.skipped_zero > 0  # the written zeros were read, found zero, and not written
    assert read_all(guest) == bytes(shadow)
    guest.close()


def test_unaligned_small_writes_against_a_coarse_grain(tmp_path):
    guest, job, shadow, writer, _ = migrate(
        tmp_path, "raw", "vhdx", rate=400, job_options={"granularity": 256 * 1024},
        writer_options={"block": 4096, "align": 512, "seed": 5})
    assert read_all(guest) == bytes(shadow)
    job.verify()
    guest.close()


def test_background_mode_notices_it_cannot_converge_and_switches(tmp_path):
    """The copy is held to 4 MiB/s while the guest dirties ~12 MiB/s of a 16 MiB disk: background
    mode stalls, says so, and turns write-blocking, which converges."""
    events = []
    guest, job, shadow, writer, _ = migrate(
        tmp_path, "raw", "raw", rate=200, size=16 * MiB,
        job_options={"mode": "background", "speed": 4 * MiB, "convergence_window": 1.0,
                     "on_event": lambda e, s: events.append(e)})
    assert "not-converging" in events and job.converging is False and job.mode == "write-blocking"
    assert read_all(guest) == bytes(shadow)
    guest.close()


def test_write_blocking_converges_with_the_copy_slower_than_the_guest(tmp_path):
    """4 MiB/s of copying against ~12 MiB/s of guest writes: the dirt only ever shrinks."""
    guest, job, shadow, writer, _ = migrate(
        tmp_path, "raw", "vhdx", rate=200, size=16 * MiB, job_options={"speed": 4 * MiB},
        writer_options={"seed": 3})
    assert job.mode == "write-blocking" and job.copied > 0 and job.mirrored > 0
    assert read_all(guest) == bytes(shadow)
    remaining = [r for _, r in job._samples]  # noqa: SLF001 - the job's own record of the pass
    assert len(remaining) > 5 and all(b <= a for a, b in zip(remaining, remaining[1:]))  # never grew
    guest.close()


def test_background_mode_without_auto_switch_says_so_and_cancel_leaves_the_source(tmp_path):
    src = tmp_path / "src.raw"
    shadow = make_source(src, "raw")
    guest = GuestDisk(vhdkit.open(src, "r+"))
    writer = StampedWriter(guest, shadow, rate=200).start()
    job = MirrorJob(guest, new_target(tmp_path / "dst.raw", "raw"), mode="background", speed=2 * MiB,
                    convergence_window=1.0, auto_switch=False).start()
    deadline = time.monotonic() + 10
    while job.converging is not False and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job.converging is False and job.state == "copying"
    job.cancel()
    time.sleep(0.1)
    writer.stop()
    assert job.state == "cancelled" and guest.active is job.source and guest.job is None
    assert read_all(guest) == bytes(shadow)  # the guest never left the source, nothing lost
    with pytest.raises(MigrationError):
        job.complete()
    guest.close()


@pytest.mark.parametrize("side", ["target", "source"])
def test_an_io_error_fails_the_job_and_the_guest_goes_on(tmp_path, side):
    src = tmp_path / "src.vhdx"
    shadow = make_source(src, "vhdx")
    faulty_src = FaultyStore(open_store(src, writable=True))
    guest = GuestDisk(formats.VHDX.disk_class()(faulty_src, writable=True))
    writer = StampedWriter(guest, shadow, rate=200).start()
    new_target(tmp_path / "dst.vhdx", "vhdx").close()
    faulty_dst = FaultyStore(open_store(tmp_path / "dst.vhdx", writable=True))
    target = formats.VHDX.disk_class()(faulty_dst, writable=True)
    job = MirrorJob(guest, target, speed=8 * MiB).start()  # slow enough to be caught mid-copy
    time.sleep(0.3)
    if side == "target":
        faulty_dst.fail_writes = True
    else:
        faulty_src.fail_reads = 1  # one read fails: the copier's, or a guest's (which the guest sees)
    assert job.wait("failed", 30) == "failed"
    assert "injected" in job.error and side in job.error
    time.sleep(0.2)
    writer.stop()
    assert guest.active is job.source and guest.job is None
    assert read_all(guest) == bytes(shadow)  # the guest kept writing to the source; nothing lost
    # and a new job can start, and finish
    faulty_dst.fail_writes = False
    again = MirrorJob(guest, new_target(tmp_path / "again.vhdx", "vhdx")).start()
    again.complete(60)
    assert read_all(guest) == bytes(shadow)
    target.close()
    guest.close()


def raw_guest_and_faulty_target(tmp_path):
    """A guest on a raw source, and a raw target whose store fails on demand."""
    src = tmp_path / "src.raw"
    shadow = make_source(src, "raw")
    guest = GuestDisk(vhdkit.open(src, "r+"))
    new_target(tmp_path / "dst.raw", "raw").close()
    faulty = FaultyStore(open_store(tmp_path / "dst.raw", writable=True))
    return guest, shadow, faulty, formats.RAW.disk_class()(faulty, writable=True)


def test_a_transient_target_error_is_retried(tmp_path):
    """(A raw target: a VHDX that failed a write refuses further writes until reopened.)"""
    guest, shadow, faulty, target = raw_guest_and_faulty_target(tmp_path)
    faulty.fail_writes = 2
    job = MirrorJob(guest, target, on_target_error="retry").start()
    job.complete(60)
    assert job.state == "completed" and read_all(guest) == bytes(shadow)
    guest.close()


def test_a_stop_policy_pauses_until_resumed(tmp_path):
    guest, shadow, faulty, target = raw_guest_and_faulty_target(tmp_path)
    faulty.fail_writes = True
    job = MirrorJob(guest, target, on_target_error="stop").start()
    assert job.wait("paused", 10) == "paused" and "injected" in job.error
    faulty.fail_writes = False
    job.resume()
    job.complete(60)
    assert read_all(guest) == bytes(shadow)
    guest.close()


class FailingInTurn(FaultyStore):
    """A target whose first two writes fail: the first once the second is under way, the second
    only when the test lets it (after the job was resumed)."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.fail_writes = 2
        self.second_under_way = threading.Event()
        self.let_second_fail = threading.Event()

    def pwrite(self, offset, data):
        if self._failing("fail_writes"):
            if self.fail_writes == 1:  # the first
                self.second_under_way.wait(10)
            else:
                self.second_under_way.set()
                self.let_second_fail.wait(10)
            raise OSError(28, "injected: no space left on device")
        return self.inner.pwrite(offset, data)


def test_an_error_from_before_a_resume_does_not_pause_the_job_again(tmp_path):
    """Two copies fail under the "stop" policy; the second fails only after the operator resumed.
    It was under way before the pause: its range is copied again, and the job goes on."""
    src = tmp_path / "src.raw"
    shadow = make_source(src, "raw")
    guest = GuestDisk(vhdkit.open(src, "r+"))
    new_target(tmp_path / "dst.raw", "raw").close()
    faulty = FailingInTurn(open_store(tmp_path / "dst.raw", writable=True))
    job = MirrorJob(guest, formats.RAW.disk_class()(faulty, writable=True), on_target_error="stop").start()
    assert job.wait("paused", 10) == "paused"
    assert faulty.second_under_way.wait(10)
    job.resume()
    faulty.let_second_fail.set()
    assert job.wait("ready", 30) == "ready", job.status()
    job.complete(30)
    assert read_all(guest) == bytes(shadow)
    guest.close()


def test_a_failed_final_flush_keeps_the_guest_on_the_source(tmp_path):
    guest, shadow, faulty, target = raw_guest_and_faulty_target(tmp_path)
    job = MirrorJob(guest, target, flush_interval=60).start()
    assert job.wait("ready", 30) == "ready"
    faulty.fail_flush = True
    with pytest.raises(MigrationError, match="stays on the source"):
        job.complete()
    assert job.state == "failed" and guest.active is job.source
    guest.pwrite(0, b"still here")
    assert guest.pread(0, 10) == b"still here"
    shadow[0:10] = b"still here"
    assert read_all(guest) == bytes(shadow)
    guest.close()


def test_verify_finds_a_difference_the_guest_did_not_make(tmp_path):
    guest, job, shadow, writer, _ = migrate(tmp_path, "raw", "raw", rate=50, after=0.05)
    # find 64 KiB the guest has not written since the switch, and spoil it behind the guest's back
    changed = guest.changed_since_switch
    grain = next(g for g in range(changed.grains) if not changed.is_dirty(g, g + 1) and any(shadow[g << 16 : (g + 1) << 16]))
    job.target.pwrite(grain << 16, b"\x00" * 512)
    with pytest.raises(MigrationError, match="differs"):
        job.verify()
    guest.close()


def test_parameters_are_checked(tmp_path):
    src = tmp_path / "src.raw"
    make_source(src, "raw")
    guest = GuestDisk(vhdkit.open(src, "r+"))
    small = vhdkit.create(tmp_path / "small.raw", MiB, format="raw")
    with pytest.raises(ValueError, match="smaller"):
        MirrorJob(guest, small)
    target = new_target(tmp_path / "dst.raw", "raw")
    with pytest.raises(ValueError, match="mode"):
        MirrorJob(guest, target, mode="sometimes")
    with pytest.raises(ValueError, match="granularity"):
        MirrorJob(guest, target, granularity=1000)
    job = MirrorJob(guest, target).start()
    with pytest.raises(MigrationError, match="already being migrated"):
        MirrorJob(guest, new_target(tmp_path / "other.raw", "raw")).start()
    job.cancel()
    small.close()
    guest.close()


def test_dirt_left_at_the_switch_over_is_copied_under_the_closed_gate(tmp_path):
    """Background mode: guest writes only mark grains dirty. Whatever is still dirty when the gate
    closes must be copied before the guest moves, or the target lacks those writes. The copiers
    are held here so that the switch-over alone can copy them."""
    src = tmp_path / "src.raw"
    shadow = make_source(src, "raw")
    guest = GuestDisk(vhdkit.open(src, "r+"))
    target = new_target(tmp_path / "dst.vhdx", "vhdx")
    job = MirrorJob(guest, target, mode="background").start()
    assert job.wait("ready", 60) == "ready", job.status()
    with job.cond:
        job.copier.hold = True  # the bulk pass picks up nothing more
    rng = random.Random(7)
    for _ in range(40):
        at = rng.randrange(SIZE // 4096) * 4096
        data = rng.randbytes(4096)
        guest.pwrite(at, data)
        shadow[at : at + 4096] = data
    assert job.dirty.dirty_bytes > 0  # dirty, and not mirrored
    job.complete()
    assert guest.active is job.target and read_all(guest) == bytes(shadow)
    guest.close()
