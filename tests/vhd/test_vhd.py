"""VHD: the dfvfs samples read as documented; vhdkit-made VHDs are read alike by qemu-img,
vhdiinfo, libvhdi and dissect, and what qemu-io writes vhdkit reads."""

from __future__ import annotations

import hashlib
import os
import random
import shutil

import pytest

import vhdkit
from vhdkit import ExtentState
from vhdkit.errors import CorruptImageError, ParentNotFoundError, ReadOnlyError

from ..conftest import pyvhdi_read, qemu_img_info, require_tool, run, sha256_of_disk, vhdiinfo

MiB, GiB = 1 << 20, 1 << 30


def test_ext2_sample_reads_its_documented_content(sample):
    with vhdkit.open(sample("dfvfs/ext2.vhd")) as disk:
        assert disk.format_name == "vhd" and disk.disk_type == "dynamic"
        assert disk.size == 4212736 and disk.info().details["chs_size"] == 4212736  # CHS 121/4/17 exactly
        assert sha256_of_disk(disk) == "870be7ae16c1fa8faab05c6eb9205dc9a7ae35c5f552c5cf8a267c0bc6a5cb99"
        assert disk.info().blocks == {"total": 3, "allocated": 1, "unallocated": 2}


@pytest.mark.parametrize("name", ["dfvfs/image.vhd", "dfvfs/image-differential.vhd"])
def test_bad_checksums_are_a_clear_error(sample, name):
    with pytest.raises(CorruptImageError, match="checksum mismatch") as err:
        vhdkit.open(sample(name))
    assert err.value.structure == "VHD footer" and err.value.field == "Checksum"
    assert "tolerate_checksum" in str(err.value)


def test_tolerated_checksum_reads_and_is_read_only(sample):
    path = sample("dfvfs/image.vhd")
    with vhdkit.open(path, tolerate_checksum=True) as disk:
        assert sha256_of_disk(disk) == "c6db12a7db548e193c29420c1b4533e4708b20c5033db5cc29ef075d48316d25"
        assert disk.problems and "checksum" in disk.problems[0]
    with vhdkit.open(path, "r+", tolerate_checksum=True) as disk:
        with pytest.raises(ReadOnlyError, match="damaged"):
            disk.pwrite(0, bytes(512))


def test_differencing_sample_reports_its_parent_and_refuses_reads(sample):
    path = sample("dfvfs/fat-differential.vhd")
    with pytest.raises(ParentNotFoundError) as err:
        vhdkit.open(path)
    assert err.value.tried == [str(path.parent / "fat-parent.vhd")]  # W2ru; the C:\ W2ku cannot be reached
    with vhdkit.open(path, resolve_parents=False) as disk:
        info = disk.info()
        assert info.type == "differencing" and info.virtual_size == 4 * MiB and info.block_size == 2 * MiB
        assert info.parent["locators"] == {"W2ku": "C:\\Projects\\dfvfs\\test_data\\fat-parent.vhd",
                                           "W2ru": ".\\fat-parent.vhd"}
        assert info.blocks == {"total": 2, "allocated": 1, "unallocated": 1}
        with pytest.raises(ParentNotFoundError):
            disk.pread(0, 4 * MiB)


def test_fixed_vhd_is_not_mistaken_for_raw(tmp_path):
    path = tmp_path / "fixed.vhd"
    vhdkit.create(path, 8 * MiB, format="vhd", type="fixed").close()
    assert path.stat().st_size == 8 * MiB + 512
    with vhdkit.open(path) as disk:
        assert disk.format_name == "vhd" and disk.size == 8 * MiB


@pytest.mark.parametrize("disk_type", ["fixed", "dynamic"])
@pytest.mark.parametrize("size", [16 * GiB, 60 * GiB, 263454720], ids=["16G", "60G", "251.25M"])
def test_created_vhds_have_the_exact_size_everywhere(tmp_path, size, disk_type):
    require_tool("qemu-img")
    require_tool("vhdiinfo")
    if disk_type == "fixed" and shutil.disk_usage(tmp_path).free < size + 4 * GiB:
        pytest.skip(f"a fixed {size >> 30} GiB VHD needs that much free disk")
    path = tmp_path / "new.vhd"
    try:
        vhdkit.create(path, size, format="vhd", type=disk_type).close()
        if disk_type == "fixed":
            assert path.stat().st_size == size + 512
        assert qemu_img_info(path, "vpc")["virtual-size"] == size
        assert vhdiinfo(path)["Media size"].endswith(f"({size} bytes)")
        from dissect.hypervisor.disk.vhd import VHD

        with open(path, "rb") as fh:
            assert VHD(fh).size == size
        with vhdkit.open(path) as disk:
            info = disk.info()
            assert info.virtual_size == size and info.creator.startswith("vhdk")
            footer = disk.footer  # the geometry written: the spec's when exact, else the maximum
            assert (footer.cylinders, footer.heads, footer.sectors_per_track) == expected_chs(size)
    finally:
        path.unlink(missing_ok=True)


@pytest.mark.parametrize("disk_type", ["dynamic", "fixed"])
def test_vhdkit_writes_compare_identical_to_raw_and_qemu_io_writes_read_back(tmp_path, disk_type):
    require_tool("qemu-img")
    require_tool("qemu-io")
    size = 3 * GiB + 5 * MiB
    image, raw = tmp_path / "w.vhd", tmp_path / "w.raw"
    rng = random.Random(11)
    fd = os.open(raw, os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, size)
        with vhdkit.create(image, size, format="vhd", type=disk_type) as disk:
            for _ in range(80):
                off = rng.randrange(0, size - 5 * MiB)
                data = rng.randbytes(rng.choice([1, 700, 4096, 2 * MiB + 3]))
                disk.pwrite(off, data)
                os.pwrite(fd, data, off)
    finally:
        os.close(fd)
    cmp = run("qemu-img", "compare", "-f", "vpc", "-F", "raw", image, raw, check=False)
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    run("qemu-io", "-f", "vpc", "-c", "write -q -P 0x6e 1000448 70000", "-c", "write -q -P 0x6f 3145216 1024", image)
    with vhdkit.open(image) as disk:
        assert disk.pread(1000448, 70000) == b"\x6e" * 70000
        assert disk.pread(3145216, 1024) == b"\x6f" * 1024


def test_differencing_vhd_child_reads_like_libvhdi(tmp_path):
    parent, child = tmp_path / "base.vhd", tmp_path / "child.vhd"
    size = 64 * MiB
    rng = random.Random(2)
    expected = bytearray(size)
    with vhdkit.create(parent, size, format="vhd") as disk:
        for off in range(0, size, 6 * MiB):
            data = rng.randbytes(MiB)
            disk.pwrite(off, data)
            expected[off : off + MiB] = data
    parent_sha = hashlib.sha256(parent.read_bytes()).hexdigest()
    with vhdkit.create(child, parent=parent, format="vhd") as disk:
        assert disk.disk_type == "differencing"
        # 4 KiB-aligned writes: whole bitmap bytes (see the next test for why that matters to libvhdi)
        for off, n in [(4096, 8192), (6 * MiB + 4096, 4096), (10 * MiB, 3 * MiB), (63 * MiB, 4096)]:
            data = rng.randbytes(n)
            disk.pwrite(off, data)
            expected[off : off + n] = data
    assert hashlib.sha256(parent.read_bytes()).hexdigest() == parent_sha
    with vhdkit.open(child) as disk:
        assert disk.pread(0, size) == expected
        assert disk.info().parent["locators"]["W2ru"] == ".\\base.vhd"
        own = list(disk.extents(through_parents=False))
        assert own[:2] == [(0, 4096, ExtentState.PARENT), (4096, 8192, ExtentState.DATA)]
        assert (own[2].offset, own[2].state) == (12288, ExtentState.PARENT)
    assert pyvhdi_read(child, parent, size, 0) == expected
    assert vhdiinfo(child)["Disk type"] == "Differential"


def test_sector_granular_runs_read_the_parent_where_libvhdi_reads_zeros(tmp_path):
    """A bitmap bit of 0 means "read the parent" (VHD spec, sector bitmap). libvhdi 20260901 gets
    that right for whole bitmap bytes but returns zeros for the absent sectors of a byte that also
    has present ones; vhdkit reads the parent there. Pinned so a change on either side shows."""
    parent, child = tmp_path / "base.vhd", tmp_path / "child.vhd"
    with vhdkit.create(parent, 8 * MiB, format="vhd") as disk:
        disk.pwrite(0, b"\x11" * (4 * MiB))
    with vhdkit.create(child, parent=parent, format="vhd") as disk:
        disk.pwrite(512, b"\x22" * 1024)  # sectors 1-2: bitmap byte 0 = 0x60
    with vhdkit.open(child) as disk:
        ours = disk.pread(0, 8192)
    assert ours == b"\x11" * 512 + b"\x22" * 1024 + b"\x11" * (8192 - 1536)
    theirs = pyvhdi_read(child, parent, 8192, 0)
    assert theirs[:1536] == ours[:1536] and theirs[4096:] == ours[4096:]
    assert theirs[1536:4096] == bytes(2560)  # libvhdi's zeros where the parent's 0x11 belongs


def test_vhd_parent_with_another_unique_id_is_refused(tmp_path):
    parent, child = tmp_path / "base.vhd", tmp_path / "child.vhd"
    vhdkit.create(parent, 8 * MiB, format="vhd").close()
    vhdkit.create(child, parent=parent, format="vhd").close()
    vhdkit.create(parent, 8 * MiB, format="vhd", overwrite=True).close()  # a new disk, same name
    with pytest.raises(vhdkit.ParentMismatchError, match="unique id"):
        vhdkit.open(child)


def spec_chs(size: int) -> tuple[int, int, int]:
    """CHS from the VHD specification's algorithm (appendix, "CHS calculation"), written here
    independently of vhdkit/vhd/layout.py."""
    sectors = min(size // 512, 65535 * 16 * 255)
    if sectors >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cyl_heads = sectors // spt
    else:
        spt = 17
        cyl_heads = sectors // spt
        heads = (cyl_heads + 1023) // 1024
        if heads < 4:
            heads = 4
        if cyl_heads >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cyl_heads = sectors // spt
        if cyl_heads >= heads * 1024:
            spt, heads = 63, 16
            cyl_heads = sectors // spt
    return cyl_heads // heads, heads, spt


def expected_chs(size: int) -> tuple[int, int, int]:
    """vhdkit's rule: the spec's geometry when it holds exactly ``size``, else 65535/16/255."""
    c, h, s = spec_chs(size)
    return (c, h, s) if c * h * s * 512 == size else (65535, 16, 255)


@pytest.mark.parametrize("size, chs", [
    (4212736, (121, 4, 17)),  # exactly 121*4*17 sectors: the spec's own geometry (as qemu-img made ext2.vhd)
    (66011136, (948, 8, 17)),  # 948*8*17 sectors
    (16 << 30, (65535, 16, 255)),  # not a CHS product: the maximum, so readers take CurrentSize
    (30 * MiB + 512, (65535, 16, 255)),
])
def test_created_vhds_carry_the_chs_every_reader_agrees_on(tmp_path, size, chs):
    """Pinned against the spec's algorithm, and against qemu-img, which takes the size from the
    CHS for a creator it does not know unless the CHS is the maximum (qemu 7.2 here)."""
    assert expected_chs(size) == chs
    path = tmp_path / "g.vhd"
    vhdkit.create(path, size, format="vhd").close()
    with vhdkit.open(path) as disk:
        assert (disk.footer.cylinders, disk.footer.heads, disk.footer.sectors_per_track) == chs
    require_tool("qemu-img")
    assert qemu_img_info(path, "vpc")["virtual-size"] == size
    assert vhdiinfo(path)["Media size"].endswith(f"({size} bytes)")
