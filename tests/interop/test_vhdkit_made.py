"""Images vhdkit makes and writes, judged by qemu-img, qemu-io, vhdiinfo, pyvhdi and dissect."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

import vhdkit
from vhdkit import ExtentState

from ..conftest import pyvhdi_read, qemu_img_info, require_tool, run, vhdiinfo
from .qemu_images import GiB, MiB, Write, compare_ranges, pattern_writes, qemu_raw

SIZES = [16 * GiB, 60 * GiB]
BLOCKS = [1 * MiB, 2 * MiB, 32 * MiB, 256 * MiB]


@pytest.fixture(autouse=True)
def _tools():
    for tool in ("qemu-img", "qemu-io", "vhdiinfo"):
        require_tool(tool)


def need_free_space(path: Path, nbytes: int) -> None:
    free = shutil.disk_usage(path).free
    if free < nbytes + 4 * GiB:
        # Not a missing tool: the machine's disk is smaller than this fixed image. Say so.
        pytest.skip(f"a fixed image of {nbytes >> 30} GiB needs that much free disk; {free >> 30} GiB free")


@pytest.mark.parametrize("disk_type", ["dynamic", "fixed"])
@pytest.mark.parametrize("block_size", BLOCKS, ids=lambda b: f"{b >> 20}M")
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s >> 30}G")
def test_created_images_pass_qemu_check_and_every_reader_agrees(tmp_path, size, block_size, disk_type):
    path = tmp_path / "new.vhdx"
    if disk_type == "fixed":
        need_free_space(tmp_path, size)
    try:
        vhdkit.create(path, size, type=disk_type, block_size=block_size).close()
        check = run("qemu-img", "check", path, check=False)
        assert check.returncode == 0 and "No errors" in check.stdout, check.stdout + check.stderr
        q = qemu_img_info(path)
        assert (q["virtual-size"], q["cluster-size"]) == (size, block_size)
        v = vhdiinfo(path)
        assert v["Media size"].endswith(f"({size} bytes)") and v["Bytes per sector"] == "512 bytes"
        assert v["Disk type"] == disk_type.capitalize()
        from dissect.hypervisor.disk.vhdx import VHDX

        with open(path, "rb") as fh:
            d = VHDX(fh)
            assert (d.size, d.block_size, d.sector_size) == (size, block_size, 512)
        with vhdkit.open(path) as disk:
            info = disk.info()
            assert info.creator == f"vhdkit {vhdkit.__version__}"
            assert (info.logical_sector_size, info.physical_sector_size) == (512, 4096)
            assert str(d.id) == info.disk_id
            if disk_type == "fixed":
                assert info.blocks == {"total": info.blocks["total"], "fully_present": info.blocks["total"]}
                assert info.size_on_disk >= size  # reserved, not sparse
                assert disk.pread(size - 4096, 4096) == bytes(4096)
            else:
                assert info.blocks == {"total": info.blocks["total"], "not_present": info.blocks["total"]}
                assert info.size_on_disk < 2 * MiB and info.file_size <= 4 * MiB + (1 << 20) * 2
    finally:
        path.unlink(missing_ok=True)


@pytest.mark.parametrize("size,block_size,disk_type", [
    (60 * GiB, 1 * MiB, "dynamic"),  # 14 chunk boundaries, 61454 BAT entries
    (16 * GiB, 32 * MiB, "dynamic"),
    (4 * GiB + 64 * MiB, 2 * MiB, "fixed"),  # crosses one chunk; writes land in reserved blocks
], ids=["60G-1M-dynamic", "16G-32M-dynamic", "4G-2M-fixed"])
def test_random_writes_compare_identical_to_a_raw_file(tmp_path, size, block_size, disk_type):
    """Unaligned writes, writes straddling blocks and chunks: qemu-img compare says identical."""
    image, raw = tmp_path / "w.vhdx", tmp_path / "w.raw"
    rng = random.Random(size + block_size)
    fd = os.open(raw, os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, size)
        with vhdkit.create(image, size, type=disk_type, block_size=block_size) as disk:
            spots = [rng.randrange(0, size - 4 * MiB) for _ in range(60)]
            spots += [k * block_size - rng.randrange(1, 4096) for k in range(1, 6)]  # across blocks
            spots += [b - 1000 for b in range(4 * GiB, size, 4 * GiB)]  # across BAT chunks
            spots += [size - 3000]
            for spot in spots:
                n = min(rng.choice([1, 511, 512, 4096, 65537, 3 * MiB]), size - spot)
                data = rng.randbytes(n)
                assert disk.pwrite(spot, data) == n
                os.pwrite(fd, data, spot)
    finally:
        os.close(fd)
    check = run("qemu-img", "check", image, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    cmp = run("qemu-img", "compare", "-f", "vhdx", "-F", "raw", image, raw, check=False)
    assert cmp.returncode == 0 and "identical" in cmp.stdout, cmp.stdout + cmp.stderr


def test_qemu_io_writes_into_a_vhdkit_image_read_back_by_vhdkit(tmp_path):
    image = tmp_path / "q.vhdx"
    size = 16 * GiB
    vhdkit.create(image, size, block_size=1 * MiB).close()
    writes = pattern_writes(size, 1 * MiB)
    cmds = []
    for w in writes:
        cmds += ["-c", f"write -q -P {w.pattern:#x} {w.offset} {w.length}"]
    run("qemu-io", "-f", "vhdx", *cmds, image)
    raw = qemu_raw(image, tmp_path / "q.raw")
    with vhdkit.open(image) as disk:
        assert disk.log_replay.state == "empty"  # qemu empties its log after each update
        data = [(e.offset, e.length) for e in disk.extents() if e.state is ExtentState.DATA]
        compare_ranges(disk, raw, data)
        for w in writes:
            assert disk.pread(w.offset, w.length) == bytes([w.pattern]) * w.length


def test_4096_byte_sector_image_reads_the_same_in_pyvhdi_and_dissect(tmp_path):
    import pyvhdi
    from dissect.hypervisor.disk.vhdx import VHDX

    image = tmp_path / "4k.vhdx"
    size = 40 * GiB  # with 1 MiB blocks a 4K-sector chunk is 32 GiB: the BAT interleaves once
    writes = [Write(0, 8192, 0x11), Write(MiB - 4096, 8192, 0x22), Write(32 * GiB - 4096, 8192, 0x33),
              Write(size - MiB, MiB, 0x44)]
    with vhdkit.create(image, size, block_size=1 * MiB, logical_sector_size=4096) as disk:
        for w in writes:
            disk.pwrite(w.offset, bytes([w.pattern]) * w.length)
        assert disk.info().details["chunk_ratio"] == 32768
    f = pyvhdi.file()
    f.open(str(image))
    with open(image, "rb") as fh, vhdkit.open(image) as disk:
        d = VHDX(fh)
        assert f.get_bytes_per_sector() == 4096 and d.sector_size == 4096
        for w in writes:
            start = max(0, w.offset - 4096)
            n = min(size, w.offset + w.length + 4096) - start
            ours = disk.pread(start, n)
            assert ours.count(bytes([w.pattern])) == w.length
            assert f.read_buffer_at_offset(n, start) == ours
            d.seek(start)
            assert d.read(n) == ours
    f.close()


def test_differencing_child_of_a_vhdkit_parent(tmp_path):
    import hashlib

    from dissect.hypervisor.disk.vhdx import VHDX

    parent, child = tmp_path / "base.vhdx", tmp_path / "child.vhdx"
    size = 256 * MiB
    rng = random.Random(5)
    base_bytes = bytearray(size)
    with vhdkit.create(parent, size, block_size=2 * MiB) as disk:
        for off in range(0, size, 8 * MiB):  # every fourth block written in the parent
            data = rng.randbytes(2 * MiB)
            disk.pwrite(off, data)
            base_bytes[off : off + len(data)] = data
    parent_sha = hashlib.sha256(parent.read_bytes()).hexdigest()
    expected = bytearray(base_bytes)
    with vhdkit.create(child, parent=parent) as disk:
        assert disk.disk_type == "differencing" and disk.size == size
        for off, n in [(4096, 512), (8 * MiB + 1000, 3000), (3 * MiB, 2 * MiB), (100 * MiB - 512, 1024),
                       (200 * MiB, 512), (200 * MiB + 4096, 512)]:
            data = rng.randbytes(n)
            disk.pwrite(off, data)
            expected[off : off + n] = data
        assert disk.pread(0, size) == expected
    assert hashlib.sha256(parent.read_bytes()).hexdigest() == parent_sha, "a write reached the parent"
    with vhdkit.open(child) as disk:
        assert disk.pread(0, size) == expected
        own = list(disk.extents(through_parents=False))
        assert (200 * MiB + 512, 3584, ExtentState.PARENT) in own  # sector granularity kept
    assert pyvhdi_read(child, parent, size, 0) == expected
    assert VHDX(child).read(size) == expected
