"""A differencing VHD pointed at its parent's new place (vhd/locators.py): every power cut leaves a
disk whose footers point at a whole header, with the old paths or the new, that `check --repair`
makes clean; paths too long for the old spaces leave the header after the blocks, where later
writes do not reach it; a Windows-made child keeps its blocks byte for byte."""

from __future__ import annotations

import shutil

import pytest

import vhdkit
from vhdkit.vhd.image import VhdDisk

from ..conftest import require_tool, run
from ..vhdx.test_crash_points import MODELS, run_cut

MiB = 1 << 20


@pytest.fixture
def chain(tmp_path):
    """base.vhd <- child.avhd in a/, with data in both; a copy of base in b/ (both places serve)."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    with vhdkit.create(a / "base.vhd", 16 * MiB) as base:
        base.pwrite(0, b"B" * 3 * MiB)
    with vhdkit.create(a / "child.avhd", parent=a / "base.vhd") as child:
        child.pwrite(MiB, b"C" * 5 * MiB)
        content = child.pread(0, child.size)
    shutil.copyfile(a / "base.vhd", b / "base.vhd")
    return tmp_path, a, b, content


def _paths(path):
    with vhdkit.open(path, resolve_parents=False, force_share=True) as disk:
        return disk.parent_paths()


def test_every_power_cut_leaves_old_or_new_paths_and_repair_makes_it_clean(chain, monkeypatch):
    root, a, b, content = chain
    pristine = a / "child.avhd"
    old = _paths(pristine)
    new_relative, new_absolute = "..\\b\\base.vhd", str(b / "base.vhd")
    new = [("relative_path", new_relative), ("absolute_win32_path", new_absolute)]
    monkeypatch.setenv("VHDKIT_ALLOWED_PARENT_DIRS", str(root))
    work = a / "work.avhd"

    def scenario(disk):
        disk.set_parent_paths(new_relative, new_absolute)

    shutil.copyfile(pristine, work)
    total = run_cut(work, None, "prefix", scenario, disk_class=VhdDisk).ops
    assert total >= 8  # two phases, each flushed between its steps
    seen = set()
    for model in MODELS:
        for budget in range(total + 1):
            shutil.copyfile(pristine, work)
            run_cut(work, budget, model, scenario, disk_class=VhdDisk)
            where = f"cut after {budget} of {total} ({model})"
            paths = _paths(work)
            assert paths in (old, new), where
            with vhdkit.open(work) as disk:  # either parent serves: the chain reads the same
                assert disk.pread(0, disk.size) == content, where
            report = vhdkit.check(work, repair=True)
            assert report.verdict == "clean", (where, [f.message for f in report.findings], report.repairs)
            assert _paths(work) == paths, where  # repair finished nothing by guessing: it kept what was there
            if budget == total:
                assert paths == new and work.stat().st_size == pristine.stat().st_size, where
            seen.add(paths == new)
    assert seen == {True, False}


def test_paths_too_long_for_the_old_spaces_keep_the_header_after_the_blocks(chain):
    root, a, b, content = chain
    deep = b / ("d" * 100) / ("e" * 100) / ("f" * 100)  # > 256 characters: more than a sector
    deep.mkdir(parents=True)
    shutil.copyfile(b / "base.vhd", deep / "base.vhd")
    child = a / "child.avhd"
    vhdkit.set_parent(child, deep / "base.vhd", allowed_parent_dirs=[root])
    with vhdkit.open(child, "r+", allowed_parent_dirs=[root]) as disk:
        assert disk.header_offset > 512  # moved after the blocks
        assert disk.parent.name == str(deep / "base.vhd")
        disk.pwrite(12 * MiB, b"N" * 2 * MiB)  # a new block is appended after the header, not over it
    expected = content[:12 * MiB] + b"N" * 2 * MiB + content[14 * MiB:]
    with vhdkit.open(child, allowed_parent_dirs=[root]) as disk:
        assert disk.parent.name == str(deep / "base.vhd")
        assert disk.pread(0, disk.size) == expected
    assert vhdkit.check(child, allowed_parent_dirs=[root]).verdict == "clean"
    require_tool("vhdiinfo")
    assert "Parent filename\t\t: base.vhd" in run("vhdiinfo", child).stdout  # its header read at the new place


def test_a_windows_made_child_keeps_its_blocks(sample):
    path = sample("dfvfs/fat-differential.vhd")
    with vhdkit.open(path, resolve_parents=False) as disk:
        blocks = [(e * 512, disk.bitmap_bytes + disk.block_size) for e in disk.bat if e != 0xFFFFFFFF]
    before = path.read_bytes()
    with vhdkit.open(path, "r+", resolve_parents=False) as disk:
        disk.set_parent_paths(".\\moved\\fat-parent.vhd", "D:\\VMs\\moved\\fat-parent.vhd")
    after = path.read_bytes()
    for offset, length in blocks:
        assert after[offset:offset + length] == before[offset:offset + length]
    with vhdkit.open(path, resolve_parents=False) as disk:
        assert disk.parent_locators() == {"W2ru": ".\\moved\\fat-parent.vhd", "W2ku": "D:\\VMs\\moved\\fat-parent.vhd"}
        assert disk.parent_name == "fat-parent.vhd"
    assert vhdkit.check(path, check_parent=False).verdict == "clean"
    require_tool("vhdiinfo")
    assert "Parent filename\t\t: fat-parent.vhd" in run("vhdiinfo", path).stdout


def test_a_damaged_child_is_refused_unchanged(chain):
    _, a, b, _ = chain
    child = a / "child.avhd"
    data = bytearray(child.read_bytes())
    data[-8:-4] = b"XXXX"  # the end footer's reserved bytes: its checksum fails, the copy at 0 is used
    child.write_bytes(bytes(data))
    with pytest.raises(vhdkit.errors.ReadOnlyError, match="damaged"):
        vhdkit.set_parent(child, b / "base.vhd")
    assert child.read_bytes() == bytes(data)

