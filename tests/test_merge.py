"""Merge (Merge-VHD): a child folded into its parent, or a chain into a new disk, reads exactly as
the chain did (qemu-img compare against a raw export of the chain); a crash at any write of a
merge into the parent leaves a chain that reads the same."""

from __future__ import annotations

import json
import random
import shutil

import pytest

import vhdkit
from vhdkit.errors import ParentMismatchError, VhdkitError
from vhdkit.ops.open import open_image
from vhdkit.vhd.image import VhdDisk
from vhdkit.vhdx import VhdxDisk

from .conftest import run
from .test_cli import vhdkit_cmd
from .vhdx.test_crash_points import run_cut

MiB = 1 << 20


def chain(tmp_path, fmt: str = "vhdx", grow_child: bool = False):
    """base (data, 32 MiB) <- child (its own data, zeros over some of the base's)."""
    rng = random.Random(9)
    base, child = tmp_path / f"base.{fmt}", tmp_path / f"child.{fmt}"
    with vhdkit.create(base, 32 * MiB, format=fmt) as disk:
        disk.pwrite(0, rng.randbytes(12 * MiB))
        disk.pwrite(20 * MiB, rng.randbytes(4 * MiB))
    with vhdkit.create(child, format=fmt, parent=base) as disk:
        disk.pwrite(MiB + 4096, rng.randbytes(3 * MiB))
        disk.pwrite(8 * MiB, bytes(2 * MiB))  # zeros hiding the base's data
        disk.pwrite(28 * MiB, rng.randbytes(MiB))
    if grow_child:
        vhdkit.resize(child, 48 * MiB)
        with vhdkit.open(child, "r+") as disk:
            disk.pwrite(40 * MiB, rng.randbytes(MiB))
    raw = tmp_path / "chain.raw"
    vhdkit.convert(child, raw)  # what the chain reads as, exported
    return base, child, raw


def same(image, raw, fmt="vhdx") -> bool:
    return run("qemu-img", "compare", "-f", {"vhdx": "vhdx", "vhd": "vpc"}[fmt], "-F", "raw", image, raw,
               check=False).returncode == 0


@pytest.mark.parametrize("fmt", ["vhdx", "vhd"])
def test_a_child_merged_into_its_parent_reads_as_the_chain_did(tmp_path, fmt):
    base, child, raw = chain(tmp_path, fmt)
    report = vhdkit.merge(child)
    assert report.child_removed and not child.exists() and report.bytes_merged >= 6 * MiB
    assert same(base, raw, fmt)
    assert vhdkit.check(base).verdict == "clean"


def test_a_chain_merged_to_a_new_disk_leaves_the_chain(tmp_path):
    base, child, raw = chain(tmp_path, grow_child=True)
    report = vhdkit.merge(child, to=tmp_path / "flat.vhdx")
    assert not report.child_removed and child.exists()
    assert same(tmp_path / "flat.vhdx", raw)
    with vhdkit.open(child) as disk:  # (qemu-img does not open VHDX differencing disks)
        assert disk.pread(0, disk.size) == raw.read_bytes()


def test_a_child_grown_past_its_parent_grows_the_parent(tmp_path):
    base, child, raw = chain(tmp_path, grow_child=True)
    vhdkit.merge(child)
    assert same(base, raw)


def test_other_children_of_a_merged_vhdx_parent_are_refused_not_misread(tmp_path):
    base, child, raw = chain(tmp_path)
    sibling = tmp_path / "sibling.vhdx"
    vhdkit.create(sibling, format="vhdx", parent=base).close()
    vhdkit.merge(child)
    with pytest.raises(ParentMismatchError):
        vhdkit.open(sibling)


@pytest.mark.parametrize("fmt", ["vhdx", "vhd"])
def test_every_cut_of_a_merge_leaves_a_chain_that_reads_the_same(tmp_path, fmt):
    base, child, raw = chain(tmp_path, fmt)
    expected = raw.read_bytes()
    pristine = tmp_path / f"pristine-base.{fmt}"
    shutil.copyfile(base, pristine)
    disk_class = VhdxDisk if fmt == "vhdx" else VhdDisk

    def scenario(parent_disk):
        from vhdkit.ops.merge import merge_into

        with open_image(child) as source:
            merge_into(source, parent_disk)

    total = run_cut(base, None, "prefix", scenario, disk_class=disk_class).ops
    assert total > 5
    for model in ("prefix", "flushed"):
        for budget in range(total + 1):
            shutil.copyfile(pristine, base)
            run_cut(base, budget, model, scenario, disk_class=disk_class)
            where = f"cut after {budget} of {total} ({model})"
            try:
                with vhdkit.open(child) as disk:
                    assert disk.pread(0, disk.size) == expected, where
            except ParentMismatchError:  # only once every byte is in: then the parent alone is the disk
                with vhdkit.open(base) as disk:
                    assert disk.pread(0, disk.size) == expected, where
            vhdkit.open(base, "r+").close()  # a VHDX's log replayed to the file
            assert vhdkit.check(base).verdict in ("clean", "leaks"), where
            if fmt == "vhdx":  # (qemu-img checks no VHD)
                assert run("qemu-img", "check", base, check=False).returncode == 0, where


def test_the_command(tmp_path):
    base, child, raw = chain(tmp_path)
    wrong = vhdkit_cmd("merge", str(child), "--into", str(raw))
    assert wrong.returncode == 1 and "parent is" in wrong.stderr and child.exists()
    done = vhdkit_cmd("merge", str(child), "--into", str(base), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["child_removed"] and same(base, raw)
    with pytest.raises(VhdkitError):
        vhdkit.merge(base)  # not a differencing disk
