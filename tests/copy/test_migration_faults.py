"""Live migrations that go wrong for real: a share that fills up, a file server that stops, the
migrating process killed. Each time the guest keeps its disk, the source reads exactly as the
guest's shadow copy says, and a new migration can start and finish."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import vhdkit

from ..conftest import run
from ..test_cli import vhdkit_cmd
from .guestload import read_all
from .test_mirror import make_source
from .test_serve import GUEST, Served, need_libnbd

MiB = 1 << 20


class Guest:
    """The libnbd writer in its own process, writing through the export until stopped."""

    def __init__(self, served: Served, shadow: Path, rate: int = 200) -> None:
        ready = shadow.with_suffix(".ready")
        self.proc = subprocess.Popen(["/usr/bin/python3", str(GUEST), "--uri", served.uri, "--shadow", str(shadow),
                                      "--rate", str(rate), "--ready-file", str(ready)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while not ready.exists():
            assert self.proc.poll() is None, self.proc.communicate()
            time.sleep(0.02)

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out + err


def start(tmp_path: Path, fmt: str = "vhdx") -> tuple[Path, Path, Served, Guest]:
    need_libnbd()
    image = tmp_path / f"src.{fmt}"
    shadow = tmp_path / "shadow.raw"
    shadow.write_bytes(make_source(image, fmt))
    served = Served(image, tmp_path)
    return image, shadow, served, Guest(served, shadow)


def status(served: Served) -> dict:
    return json.loads(vhdkit_cmd("migrate", "--control", str(served.control), "--status", "--json").stdout)


def wait_for_job(served: Served, states: tuple[str, ...], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = status(served)["job"]
        if job and job["state"] in states:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def same_content(image: Path, shadow: Path) -> bool:
    fmt = {".vhdx": "vhdx", ".vhd": "vpc", ".raw": "raw"}[image.suffix]
    return run("qemu-img", "compare", "-f", fmt, "-F", "raw", image, shadow, check=False).returncode == 0


def adopt_the_write_in_flight(disk: bytes, shadow: Path, block: int = 64 << 10) -> None:
    """The guest writes one block at a time and keeps in its shadow only what was acknowledged.
    Killed mid-write, the server may already have put that last block on the disk without
    acknowledging it: a block device may hold an unacknowledged write, or not. So the disk may
    differ from the shadow in at most one block, and only by the write the guest was making: its
    stamp, newer than every acknowledged write. That block becomes part of the shadow."""
    known = shadow.read_bytes()
    differing = [at for at in range(0, len(known), block) if disk[at : at + block] != known[at : at + block]]
    if not differing:
        return
    assert len(differing) == 1, f"{len(differing)} blocks differ from the acknowledged writes"
    at = differing[0]
    seq, offset = int.from_bytes(disk[at : at + 8], "little"), int.from_bytes(disk[at + 8 : at + 16], "little")
    assert offset == at and disk[at : at + block] == disk[at : at + 16] * (block // 16), "not a guest's stamped write"
    acknowledged = [int.from_bytes(known[b : b + 8], "little") for b in range(0, len(known), block)
                    if known[b : b + block] == known[b : b + 16] * (block // 16)
                    and int.from_bytes(known[b + 8 : b + 16], "little") == b]
    assert seq > max(acknowledged, default=0), "an older write than the guest last had acknowledged"
    with open(shadow, "r+b") as f:
        f.seek(at)
        f.write(disk[at : at + block])


def source_is_the_shadow(served: Served, guest: Guest, shadow: Path) -> None:
    """The guest stops (every write it made acknowledged, and in its shadow); the disk it was
    left on — the source, through the export — reads exactly as the shadow."""
    rc, out = guest.stop()
    assert rc == 0 and int(out.split()[0]) > 20, out
    same = run("qemu-img", "compare", "-f", "raw", "-F", "raw", served.uri, shadow, check=False)
    assert same.returncode == 0, same.stdout


def finish_elsewhere(served: Served, tmp_path: Path) -> None:
    """A new migration, to a local folder, starts and completes."""
    again = tmp_path / "again" / "dst.vhdx"
    again.parent.mkdir(exist_ok=True)
    done = vhdkit_cmd("migrate", "--control", str(served.control), "--to", str(again), "--complete", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "completed"


def test_the_target_share_fills_up_for_real(tmp_path, smb_env):
    samba = smb_env
    small = samba.share_path("small")
    tenant = small / "other-tenant.bin"
    image, shadow, served, guest = start(tmp_path)
    try:
        with open(tenant, "wb") as f:  # 40 of the 64 MiB taken: the ~38 MiB of data cannot fit
            f.write(os.urandom(40 * MiB))
        target = samba.url("small", "moved.vhdx")
        failed = vhdkit_cmd("migrate", "--control", str(served.control), "--to", target, "--complete")
        assert failed.returncode == 1 and "full" in failed.stderr + failed.stdout, failed.stderr
        job = wait_for_job(served, ("failed",))
        assert "target" in job["error"]
        time.sleep(0.3)  # the guest goes on writing, to the source alone
        assert status(served)["image"].endswith("src.vhdx")
        deadline = time.monotonic() + 10
        while (small / "moved.vhdx").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(p.name for p in small.iterdir()) == ["other-tenant.bin"]  # the partial target is gone
        source_is_the_shadow(served, guest, shadow)
        finish_elsewhere(served, tmp_path)
    finally:
        tenant.unlink(missing_ok=True)
        guest.stop()
        served.stop()
    assert same_content(tmp_path / "again" / "dst.vhdx", shadow)


def test_the_file_server_stops_mid_job_and_the_guest_carries_on(tmp_path, smb_env):
    samba = smb_env
    image, shadow, served, guest = start(tmp_path)
    try:
        target = samba.url("share1", f"stopped-{os.urandom(4).hex()}.vhdx")
        began = vhdkit_cmd("migrate", "--control", str(served.control), "--to", target, "--speed", "4M", "--detach")
        assert began.returncode == 0, began.stderr
        wait_for_job(served, ("copying",))
        samba.stop()
        try:
            job = wait_for_job(served, ("failed",), timeout=60)
            assert "target" in job["error"] and samba.password not in json.dumps(job)
            time.sleep(0.3)
        finally:
            samba.start()
        source_is_the_shadow(served, guest, shadow)
        finish_elsewhere(served, tmp_path)
    finally:
        guest.stop()
        served.stop()
    assert same_content(tmp_path / "again" / "dst.vhdx", shadow)


def test_the_migrating_process_is_killed_and_the_source_is_whole(tmp_path):
    image, shadow, served, guest = start(tmp_path)
    target = tmp_path / "moved" / "dst.vhdx"
    target.parent.mkdir()
    began = vhdkit_cmd("migrate", "--control", str(served.control), "--to", str(target), "--speed", "8M", "--detach")
    assert began.returncode == 0, began.stderr
    wait_for_job(served, ("copying",))
    time.sleep(0.5)
    served.proc.kill()  # SIGKILL, mid-copy, the guest still writing
    served.proc.wait(10)
    guest.stop()  # its connection is gone: it stops, its shadow holds what was acknowledged
    assert shadow.read_bytes() != bytes(make_source(tmp_path / "first.raw", "raw"))  # it did write
    with vhdkit.open(image) as disk:  # the source opens (its log replayed in memory)...
        content = read_all(disk)
    adopt_the_write_in_flight(content, shadow)  # (the one write the kill may have caught half-answered)
    assert content == shadow.read_bytes()  # ...and holds every acknowledged write
    run("qemu-img", "check", "-r", "all", image)  # qemu-img replays the log too,
    assert same_content(image, shadow)  # and reads the same
    served = Served(image, tmp_path)  # a new job, on the same source
    try:
        finish_elsewhere(served, tmp_path)
    finally:
        served.stop()
    assert same_content(tmp_path / "again" / "dst.vhdx", shadow)


def test_only_the_one_newer_unacknowledged_write_is_adopted(tmp_path):
    block = 64 << 10

    def stamped(seq: int, at: int) -> bytes:
        return (seq.to_bytes(8, "little") + at.to_bytes(8, "little")) * (block // 16)

    base = bytearray(os.urandom(8 * block))
    base[block : 2 * block] = stamped(7, block)  # an acknowledged write
    shadow = tmp_path / "shadow.raw"
    for disk_blocks, accepted in (({3: stamped(8, 3 * block)}, True),  # the write in flight
                                  ({3: stamped(6, 3 * block)}, False),  # older than one acknowledged
                                  ({3: stamped(8, 2 * block)}, False),  # stamped for another place
                                  ({3: stamped(8, 3 * block), 5: stamped(9, 5 * block)}, False)):  # two
        shadow.write_bytes(base)
        disk = bytearray(base)
        for index, data in disk_blocks.items():
            disk[index * block : (index + 1) * block] = data
        if accepted:
            adopt_the_write_in_flight(bytes(disk), shadow)
            assert shadow.read_bytes() == disk
        else:
            try:
                adopt_the_write_in_flight(bytes(disk), shadow)
            except AssertionError:
                continue
            raise AssertionError(f"adopted {sorted(disk_blocks)}")
