"""``vhdkit create`` as an admin runs it."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys

import pytest

import vhdkit

from .conftest import require_tool, run

GiB = 1 << 30


def vhdkit_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vhdkit", *args], capture_output=True, text=True)


def test_blank_large_is_60_gib_dynamic_and_tiny_on_disk(tmp_path):
    path = tmp_path / "Blank Disk - Large.vhdx"
    r = vhdkit_cmd("create", str(path), "--blank", "large")
    assert r.returncode == 0, r.stderr
    assert "60 GiB (64424509440 bytes)" in r.stdout
    st = path.stat()
    assert st.st_size <= 8 << 20, "apparent size should be a few MiB"
    assert st.st_blocks * 512 <= 2 << 20, "on-disk size should be at most about 2 MiB"
    with vhdkit.open(path) as disk:
        assert (disk.size, disk.disk_type, disk.block_size) == (60 * GiB, "dynamic", 32 << 20)
    require_tool("qemu-img")
    assert run("qemu-img", "check", path, check=False).returncode == 0


def test_blank_small_is_16_gib(tmp_path):
    path = tmp_path / "small.vhdx"
    assert vhdkit_cmd("create", str(path), "--blank", "small").returncode == 0
    with vhdkit.open(path) as disk:
        assert disk.size == 16 * GiB


def test_fixed_60g_reserves_the_space_without_writing_it(tmp_path):
    if shutil.disk_usage(tmp_path).free < 64 * GiB:
        pytest.skip("needs 64 GiB free disk for a 60 GiB fixed image")
    path = tmp_path / "fixed.vhdx"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock
    try:
        r = vhdkit_cmd("create", str(path), "--type", "fixed", "--size", "60G")
        written = (resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock - before) * 512
        assert r.returncode == 0, r.stderr
        assert path.stat().st_blocks * 512 >= 60 * GiB  # du: all reserved
        assert written < 64 << 20, f"the command wrote {written} bytes: it should reserve, not write zeros"
        with vhdkit.open(path) as disk:
            info = disk.info()
            assert info.type == "fixed" and info.blocks["fully_present"] == info.blocks["total"] == 1920
            assert disk.pread(30 * GiB, 4096) == bytes(4096)
    finally:
        path.unlink(missing_ok=True)


@pytest.mark.parametrize("text", ["1G", "1GiB", "1GB", str(GiB)])
def test_sizes_are_binary_and_reported_with_their_unit(tmp_path, text):
    path = tmp_path / "d.vhdx"
    r = vhdkit_cmd("create", str(path), "--size", text, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["virtual_size"] == GiB


def test_refuses_to_overwrite_unless_forced(tmp_path):
    path = tmp_path / "d.vhdx"
    path.write_bytes(b"precious")
    r = vhdkit_cmd("create", str(path), "--size", "1G")
    assert r.returncode == 1 and "already exists" in r.stderr
    assert path.read_bytes() == b"precious"
    r = vhdkit_cmd("create", str(path), "--size", "1G", "--force")
    assert r.returncode == 0
    with vhdkit.open(path) as disk:
        assert disk.size == GiB


def test_differencing_from_the_command_line(tmp_path):
    parent, child = tmp_path / "base.vhdx", tmp_path / "diff.avhdx"
    assert vhdkit_cmd("create", str(parent), "--size", "1G", "--logical-sector-size", "4096").returncode == 0
    r = vhdkit_cmd("create", str(child), "--parent", str(parent), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["type"] == "differencing" and info["virtual_size"] == GiB
    assert info["logical_sector_size"] == 4096 and info["block_size"] == 2 << 20
    assert info["parent"]["locators"]["relative_path"] == ".\\base.vhdx"
    assert info["parent"]["resolved"] == str(parent)


@pytest.mark.parametrize("args,message", [
    (["--size", "1000"], "multiple of the 512-byte logical sector"),
    (["--size", "1G", "--block-size", "3M"], "power of two"),
    (["--size", "1G", "--logical-sector-size", "4096", "--physical-sector-size", "512"], "Hyper-V refuses"),
    (["--size", "65T"], "64 TiB"),
    ([], "give --size"),
])
def test_bad_parameters_get_a_sentence_and_no_file(tmp_path, args, message):
    path = tmp_path / "bad.vhdx"
    r = vhdkit_cmd("create", str(path), *args)
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr
    assert os.listdir(tmp_path) == []


def test_differencing_child_keeps_a_physical_sector_size_it_is_given(tmp_path):
    parent, child = tmp_path / "p.vhdx", tmp_path / "c.vhdx"
    vhdkit.create(parent, GiB, physical_sector_size=4096).close()
    with vhdkit.create(child, parent=parent, physical_sector_size=512) as disk:
        assert (disk.logical_sector_size, disk.physical_sector_size) == (512, 512)
    with pytest.raises(ValueError, match="parent's size"):
        vhdkit.create(tmp_path / "d.vhdx", 2 * GiB, parent=parent)
