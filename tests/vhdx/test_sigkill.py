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
    rng = random.Random()
    acknowledged: list[tuple[int, int]] = []
    for _round in range(3):  # three kills at different moments, each reopening the last state
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(image), str(rng.randrange(1 << 30))],
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
        final: dict[int, int] = {}
        for slot, value in acknowledged:  # later rounds may overwrite earlier slots
            final[slot] = value
        with vhdkit.open(image) as disk:
            assert disk.log_replay.state == "empty"
            for slot, value in final.items():
                assert disk.pread(slot * SLOT, SLOT) == bytes([value]) * SLOT, f"flushed slot {slot} lost"
            assert [disk.pread(slot * SLOT, SLOT) for slot, _ in acknowledged] == content_ro
