"""Resize (grow VHD and VHDX of every type, shrink VHDX), judged by qemu-img, libvhdi and dissect:
the new size is what every reader reports, the data is all there, the grown part reads zeros."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

import vhdkit
from vhdkit.errors import VhdkitError

from .conftest import qemu_img_info, run, vhdiinfo
from .test_cli import vhdkit_cmd

MiB, GiB, TiB = 1 << 20, 1 << 30, 1 << 40
QEMU_FORMAT = {"vhdx": "vhdx", "vhd": "vpc"}


def digest(disk, length: int) -> str:
    h = hashlib.sha256()
    for at in range(0, length, 4 * MiB):
        h.update(disk.pread(at, min(4 * MiB, length - at)))
    return h.hexdigest()


def make(path, fmt: str, kind: str, size: int = 64 * MiB, parent=None):
    """An image with data at several places (and the parent's, for a differencing disk)."""
    rng = random.Random(7)
    if kind == "differencing":
        vhdkit.create(parent, size, format=fmt).close()
        with vhdkit.open(parent, "r+") as p:
            p.pwrite(3 * MiB, rng.randbytes(2 * MiB))
        disk = vhdkit.create(path, format=fmt, parent=parent)
    else:
        disk = vhdkit.create(path, size, format=fmt, type=kind)
    with disk:
        for at in (0, 5 * MiB + 4096, size - 64 * 1024):
            disk.pwrite(at, rng.randbytes(64 * 1024))


def readers_agree(path, fmt: str, size: int) -> None:
    info = qemu_img_info(path, QEMU_FORMAT[fmt])
    assert info["virtual-size"] == size
    assert vhdiinfo(path)["Media size"].endswith(f"({size} bytes)")
    if fmt == "vhdx":
        assert run("qemu-img", "check", path, check=False).returncode == 0
    from dissect.hypervisor.disk.vhd import VHD
    from dissect.hypervisor.disk.vhdx import VHDX

    with open(path, "rb") as f:
        assert (VHDX if fmt == "vhdx" else VHD)(f).size == size
    report = vhdkit.check(path)
    assert report.verdict == "clean", report.findings


@pytest.mark.parametrize("fmt", ["vhdx", "vhd"])
@pytest.mark.parametrize("kind", ["dynamic", "fixed", "differencing"])
def test_grow_keeps_every_byte_and_the_new_part_reads_zeros(tmp_path, fmt, kind):
    path, parent = tmp_path / f"d.{fmt}", tmp_path / f"parent.{fmt}"
    make(path, fmt, kind, parent=parent)
    with vhdkit.open(path) as disk:
        before = digest(disk, 64 * MiB)
    new = 1 * GiB + 8 * MiB  # a VHD's BAT outgrows its room (it moves); a VHDX's fits its region
    assert vhdkit.resize(path, new) == new
    with vhdkit.open(path) as disk:
        assert disk.size == new and digest(disk, 64 * MiB) == before
        assert not any(disk.pread(64 * MiB, 4 * MiB)) and not any(disk.pread(new - 4 * MiB, 4 * MiB))
    with vhdkit.open(path, "r+") as disk:  # and it takes writes up to its new end
        disk.pwrite(new - 4096, b"last" * 1024)
    with vhdkit.open(path) as disk:
        assert disk.pread(new - 4096, 4) == b"last" and digest(disk, 64 * MiB) == before
    if kind == "fixed":
        assert path.stat().st_blocks * 512 >= new  # the new space is reserved, as a fixed disk's is
    if kind != "differencing":
        readers_agree(path, fmt, new)


def test_a_16g_vhdx_with_1m_blocks_grows_to_2t_its_bat_moving(tmp_path):
    path = tmp_path / "big.vhdx"
    with vhdkit.create(path, 16 * GiB, block_size=MiB) as disk:
        disk.pwrite(0, b"first" * 1000)
        disk.pwrite(16 * GiB - 4096, b"end!" * 1024)
        bat_before = disk.regions.current.find(vhdkit.vhdx.layout.BAT_REGION_GUID)
    vhdkit.resize(path, 2 * TiB)
    with vhdkit.open(path, "r+") as disk:
        bat_after = disk.regions.current.find(vhdkit.vhdx.layout.BAT_REGION_GUID)
        assert bat_after.file_offset != bat_before.file_offset and bat_after.length > bat_before.length
        assert disk.pread(0, 5) == b"first" and disk.pread(16 * GiB - 4096, 4) == b"end!"
        assert not any(disk.pread(TiB, 1 << 16))
        disk.pwrite(2 * TiB - 4096, b"far!" * 1024)
    readers_agree(path, "vhdx", 2 * TiB)


def test_shrinking_a_vhdx_cuts_only_empty_space_unless_forced(tmp_path):
    path = tmp_path / "s.vhdx"
    with vhdkit.create(path, 256 * MiB, block_size=MiB) as disk:
        disk.pwrite(0, b"keep" * 1024)
        disk.pwrite(200 * MiB, b"cut!" * 1024)
    with pytest.raises(VhdkitError, match="would cut"):
        vhdkit.resize(path, 128 * MiB)
    with vhdkit.open(path) as disk:
        assert disk.size == 256 * MiB and disk.pread(200 * MiB, 4) == b"cut!"  # nothing changed
    assert vhdkit.resize(path, 201 * MiB) == 201 * MiB  # everything past 201 MiB is empty
    readers_agree(path, "vhdx", 201 * MiB)
    assert vhdkit.resize(path, 100 * MiB + 512, force=True) == 100 * MiB + 512
    vhdkit.resize(path, 256 * MiB)  # grown back: what was cut is gone, it reads zeros
    with vhdkit.open(path) as disk:
        assert disk.pread(0, 4) == b"keep" and not any(disk.pread(100 * MiB, 101 * MiB))
    readers_agree(path, "vhdx", 256 * MiB)


def test_a_vhd_is_not_shrunk_and_bad_sizes_are_refused(tmp_path):
    path = tmp_path / "v.vhd"
    vhdkit.create(path, 64 * MiB, format="vhd").close()
    with pytest.raises(VhdkitError, match="cannot be shrunk"):
        vhdkit.resize(path, 32 * MiB)
    with pytest.raises(VhdkitError, match="2040 GiB"):
        vhdkit.resize(path, 3 * TiB)
    with pytest.raises(VhdkitError, match="multiple of 512"):
        vhdkit.resize(path, 64 * MiB + 100)
    with vhdkit.open(path) as disk:
        assert disk.size == 64 * MiB


def test_the_command(tmp_path):
    path = tmp_path / "c.vhdx"
    vhdkit.create(path, GiB).close()
    grown = vhdkit_cmd("resize", str(path), "--size", "+1G", "--json")
    assert grown.returncode == 0, grown.stderr
    assert json.loads(grown.stdout) == {"image": str(path), "old_size": GiB, "new_size": 2 * GiB}
    with vhdkit.open(path, "r+") as disk:
        disk.pwrite(GiB + 5, b"data")
    refused = vhdkit_cmd("resize", str(path), "--size", "1G")
    assert refused.returncode == 1 and "would cut" in refused.stderr
    forced = vhdkit_cmd("resize", str(path), "--size", "1G", "--force")
    assert forced.returncode == 0 and "2 GiB -> 1 GiB" in forced.stdout
    assert qemu_img_info(path, "vhdx")["virtual-size"] == GiB
