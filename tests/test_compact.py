"""Compact (Optimize-VHD): the file shrinks by what the guest zeroed and the gaps, the content
does not change by one byte (sha256, qemu-img compare), and a crash at any write leaves it whole."""

from __future__ import annotations

import hashlib
import json
import random
import shutil

import pytest

import vhdkit
from vhdkit import formats
from vhdkit.errors import ImageInUseError
from vhdkit.vhd.image import VhdDisk
from vhdkit.vhdx import VhdxDisk

from .conftest import run
from .test_cli import vhdkit_cmd
from .vhdx.test_crash_points import run_cut

MiB = 1 << 20
BLOCK = 2 * MiB


def content(path) -> str:
    with vhdkit.open(path) as disk:
        h = hashlib.sha256()
        for at in range(0, disk.size, 8 * MiB):
            h.update(disk.pread(at, min(8 * MiB, disk.size - at)))
        return h.hexdigest()


def half_zeroed(path, blocks: int = 64, fmt: str = "vhdx") -> None:
    """Every block written with data, then every other one zeroed by the guest."""
    rng = random.Random(3)
    with vhdkit.create(path, blocks * BLOCK, block_size=BLOCK, format=fmt) as disk:
        for b in range(blocks):
            disk.pwrite(b * BLOCK, rng.randbytes(BLOCK))
    with vhdkit.open(path, "r+") as disk:
        for b in range(0, blocks, 2):
            disk.pwrite(b * BLOCK, bytes(BLOCK))


@pytest.mark.parametrize("fmt", ["vhdx", "vhd"])
def test_a_half_zeroed_disk_shrinks_by_at_least_that_half_and_reads_the_same(tmp_path, fmt):
    path = tmp_path / f"d.{fmt}"
    half_zeroed(path, fmt=fmt)
    raw = tmp_path / "d.raw"
    vhdkit.convert(path, raw)  # the content before
    before, size = content(path), path.stat().st_size
    report = vhdkit.compact(path)
    assert report.zero_blocks == 32 and report.moved > 0
    assert size - path.stat().st_size >= 32 * BLOCK and size - path.stat().st_size == report.reclaimed
    assert content(path) == before
    if fmt == "vhdx":
        assert run("qemu-img", "check", path, check=False).returncode == 0
    assert vhdkit.check(path).verdict == "clean"
    qemu_fmt = {"vhdx": "vhdx", "vhd": "vpc"}[fmt]
    assert run("qemu-img", "compare", "-f", qemu_fmt, "-F", "raw", path, raw, check=False).returncode == 0
    again = vhdkit.compact(path)  # nothing left to give back
    assert again.reclaimed == 0 and content(path) == before


@pytest.mark.parametrize("fmt", ["vhdx", "vhd"])
def test_a_differencing_disk_keeps_hiding_its_parent_where_it_was_zeroed(tmp_path, fmt):
    parent, child = tmp_path / f"p.{fmt}", tmp_path / f"c.{fmt}"
    rng = random.Random(5)
    with vhdkit.create(parent, 32 * BLOCK, block_size=BLOCK, format=fmt) as disk:
        disk.pwrite(0, rng.randbytes(32 * BLOCK))
    options = {"block_size": BLOCK} if fmt == "vhdx" else {}
    with vhdkit.create(child, format=fmt, parent=parent, **options) as disk:
        disk.pwrite(0, bytes(4 * BLOCK))  # zeros over the parent's data: they must stay zeros
        disk.pwrite(8 * BLOCK, rng.randbytes(BLOCK))
    before = content(child)
    report = vhdkit.compact(child)
    assert report.zero_blocks == (4 if fmt == "vhdx" else 0)  # a VHD has no "zero" block state
    assert content(child) == before
    with vhdkit.open(child) as disk:
        assert not any(disk.pread(0, 4 * BLOCK)) and any(disk.pread(4 * BLOCK, BLOCK))
    assert vhdkit.check(child).verdict == "clean"


def test_a_disk_in_use_is_refused_and_a_fixed_one_left_alone(tmp_path):
    path = tmp_path / "d.vhdx"
    half_zeroed(path, 8)
    with vhdkit.open(path, "r+"):
        with pytest.raises(ImageInUseError):
            vhdkit.compact(path)
    fixed = tmp_path / "f.vhdx"
    vhdkit.create(fixed, 8 * BLOCK, type="fixed", block_size=BLOCK).close()
    assert vhdkit.compact(fixed).reclaimed == 0


@pytest.mark.parametrize("fmt", ["vhdx", "vhd"])
def test_every_cut_leaves_a_whole_disk(tmp_path, fmt):
    pristine, work = tmp_path / f"p.{fmt}", tmp_path / f"w.{fmt}"
    half_zeroed(pristine, 12, fmt)
    before = content(pristine)
    shutil.copyfile(pristine, work)
    disk_class = VhdxDisk if fmt == "vhdx" else VhdDisk
    total = run_cut(work, None, "prefix", lambda disk: formats.of(disk).load("compact")(disk), disk_class=disk_class).ops
    assert total > 5
    for model in ("prefix", "flushed"):
        for budget in range(total + 1):
            shutil.copyfile(pristine, work)
            run_cut(work, budget, model, lambda disk: formats.of(disk).load("compact")(disk), disk_class=disk_class)
            where = f"cut after {budget} of {total} ({model})"
            assert content(work) == before, where
            with vhdkit.open(work, "r+") as disk:
                assert not getattr(disk, "problems", []), where  # a VHD: both footers whole
            if fmt == "vhdx":
                checked = run("qemu-img", "check", work, check=False)
                assert checked.returncode == 0, f"{where}: {checked.stdout}"
    assert content(work) == before


def test_the_command(tmp_path):
    path = tmp_path / "d.vhdx"
    half_zeroed(path, 8)
    done = vhdkit_cmd("compact", str(path), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["zero_blocks"] == 4 and report["reclaimed"] >= 4 * BLOCK
    raw = tmp_path / "d.raw"
    vhdkit.create(raw, 8 * BLOCK, format="raw").close()
    refused = vhdkit_cmd("compact", str(raw))
    assert refused.returncode == 1 and "cannot be compacted" in refused.stderr
