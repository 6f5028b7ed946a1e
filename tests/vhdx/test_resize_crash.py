"""Resize cut at every write: the image opens and is the old disk or the new one, its data whole.

Each scenario runs once uncut to count its store operations, then once per cut point under both
crash models of crashing.py ("prefix": everything before the cut reached the disk; "flushed":
only what a flush made durable). A VHDX is checked by opening it (its log replayed) and by
`qemu-img check`; a VHD, which has no log, by opening it: each of its steps is one sector or
space nothing refers to yet.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

import vhdkit
from vhdkit import formats
from vhdkit.vhd.image import VhdDisk
from vhdkit.vhdx import VhdxDisk

from ..conftest import run
from .test_crash_points import run_cut

MiB, GiB = 1 << 20, 1 << 30
SPOTS = (0, 7 * MiB + 512, 60 * MiB)


def pristine(path: Path, fmt: str, size: int) -> dict[int, bytes]:
    rng = random.Random(11)
    data = {at: rng.randbytes(4096) for at in SPOTS if at + 4096 <= size}
    options = {"block_size": MiB} if fmt == "vhdx" else {}
    with vhdkit.create(path, size, format=fmt, **options) as disk:
        for at, chunk in data.items():
            disk.pwrite(at, chunk)
    return data


def cut_resize(path: Path, fmt: str, new_size: int, budget: int | None, model: str) -> int:
    store = run_cut(path, budget, model, lambda disk: formats.of(disk).load("resize")(disk, new_size, force=True),
                    disk_class=VhdxDisk if fmt == "vhdx" else VhdDisk)
    return store.ops


@pytest.mark.parametrize("fmt, old, new", [
    ("vhdx", 64 * MiB, GiB),  # the BAT region has room: new entries in place
    ("vhdx", GiB, 256 * GiB),  # it has not: a new BAT at the end, the region tables moved to it
    ("vhdx", 256 * MiB, 64 * MiB),  # shrink over empty space
    ("vhdx", 256 * MiB, 32 * MiB),  # forced, cutting the block at 60 MiB: the file end is cut too
    ("vhd", 64 * MiB, 96 * MiB),  # the BAT's sector has room
    ("vhd", 64 * MiB, GiB),  # it has not: the BAT moves where the footer was
])
def test_every_cut_leaves_the_old_disk_or_the_new_one(tmp_path, fmt, old, new):
    source = tmp_path / f"pristine.{fmt}"
    work = tmp_path / f"work.{fmt}"
    data = pristine(source, fmt, old)
    shutil.copyfile(source, work)
    total = cut_resize(work, fmt, new, None, "prefix")
    assert total >= 3
    seen = set()
    for model in ("prefix", "flushed"):
        for budget in range(total + 1):
            shutil.copyfile(source, work)
            cut_resize(work, fmt, new, budget, model)
            where = f"cut after {budget} of {total} ({model})"
            with vhdkit.open(work) as disk:
                assert disk.size in (old, new), where
                seen.add(disk.size)
                for at, chunk in data.items():
                    if at + len(chunk) <= disk.size:
                        assert disk.pread(at, len(chunk)) == chunk, where
                if disk.size > old:
                    assert not any(disk.pread(old, 64 * 1024)), where
            if fmt == "vhdx":
                vhdkit.open(work, "r+").close()  # replays the log to the file
                checked = run("qemu-img", "check", work, check=False)
                assert checked.returncode == 0, f"{where}: {checked.stdout}{checked.stderr}"
            with vhdkit.open(work, "r+") as disk:  # and it takes writes
                disk.pwrite(0, b"after")
    assert seen == {old, new}  # both outcomes occur: the cut points span the change
