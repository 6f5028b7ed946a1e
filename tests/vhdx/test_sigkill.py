"""A writer process killed with SIGKILL mid-write: the image opens, validates, and every write
the writer had flushed (and said so) is there."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import vhdkit

from ..conftest import require_tool, run

MiB = 1 << 20
SLOT = 64 * 1024

WRITER = r"""
import sys, random, vhdkit
path, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
with vhdkit.open(path, "r+") as disk:
    slots = list(range(disk.size // 65536))
    rng.shuffle(slots)
    for i, slot in enumerate(slots):
        disk.pwrite(slot * 65536, bytes([i % 251 + 1]) * 65536)  # most land in new blocks
        disk.flush()
        print(slot, i % 251 + 1, flush=True)  # acknowledged: durable from here on
"""


def test_sigkill_mid_write_loses_nothing_that_was_flushed(tmp_path):
    require_tool("qemu-img")
    image = tmp_path / "victim.vhdx"
    vhdkit.create(image, 256 * MiB, block_size=1 * MiB).close()
    rng = random.Random(1201)  # fixed: a failure reruns the same kills
    acknowledged: list[tuple[int, int]] = []
    unacknowledged: list[tuple[int, int, int]] = []  # (round, slot, value) the writer may have made unsaid
    last_ack: dict[int, tuple[int, int]] = {}  # slot -> (round, value) of its last acknowledged write
    for round_ in range(3):  # three kills at different moments, each reopening the last state
        seed = rng.randrange(1 << 30)
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(image), str(seed)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        want = rng.randrange(20, 120)
        got: list[tuple[int, int]] = []
        deadline = time.monotonic() + 60
        while len(got) < want and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            slot, value = map(int, line.split())
            got.append((slot, value))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert len(got) == want, "the writer stopped early"
        acknowledged.extend(got)
        plan = list(range(256 * MiB // SLOT))  # the writer's own order: it may have gone on past "want"
        random.Random(seed).shuffle(plan)
        assert [slot for slot, _ in got] == plan[:want]
        unacknowledged.extend((round_, slot, i % 251 + 1) for i, slot in enumerate(plan) if i >= want)
        last_ack.update((slot, (round_, value)) for slot, value in got)
        with vhdkit.open(image) as disk:  # read-only: replays in memory
            assert disk.log_replay.state == "replayed_in_memory", "the kill did not find a live writer"
            content_ro = [disk.pread(slot * SLOT, SLOT) for slot, _ in acknowledged]
            whole = hashlib.sha256(disk.pread(0, disk.size)).hexdigest()
        # qemu must be able to replay the log vhdkit left, to the same content.
        twin = tmp_path / "qemu-replay.vhdx"
        shutil.copyfile(image, twin)
        replay = run("qemu-img", "check", "-r", "all", twin, check=False)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        raw = tmp_path / "qemu.raw"
        run("qemu-img", "convert", "-f", "vhdx", "-O", "raw", twin, raw)
        assert hashlib.sha256(raw.read_bytes()).hexdigest() == whole, "qemu's replay reads differently"
        raw.unlink()
        vhdkit.open(image, "r+").close()  # replays to the file, empties the log
        check = run("qemu-img", "check", image, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        with vhdkit.open(image) as disk:
            assert disk.log_replay.state == "empty"
            for slot, (acked_in, value) in last_ack.items():
                # its last acknowledged value, or one the writer wrote after it without saying so yet
                later = {v for r, s, v in unacknowledged if s == slot and r >= acked_in}
                held = disk.pread(slot * SLOT, SLOT)
                assert held in {bytes([v]) * SLOT for v in {value} | later}, f"flushed slot {slot} lost"
            assert [disk.pread(slot * SLOT, SLOT) for slot, _ in acknowledged] == content_ro
