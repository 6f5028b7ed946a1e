"""vhdkit reads what qemu writes: qemu-img creates, qemu-io fills with patterns, and vhdkit must
read exactly what ``qemu-img convert -O raw`` reads, report the same allocation as
``qemu-img map``, and the same geometry as qemu-img info, vhdiinfo and dissect."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import vhdkit
from vhdkit import ExtentState

from ..conftest import qemu_img_info, require_tool, vhdiinfo
from .qemu_images import GiB, MiB, compare_ranges, dissect_present_blocks, make_qemu_vhdx, qemu_raw, written_blocks

CASES = [
    # (virtual size, block size or None for qemu's default, fixed)
    (16 * GiB, None, False),
    (16 * GiB, 1 * MiB, False),
    (16 * GiB, 32 * MiB, False),
    (16 * GiB, 256 * MiB, False),
    (60 * GiB, None, False),
    (60 * GiB, 1 * MiB, False),  # 61454 BAT entries, 14 sector-bitmap slots
    (60 * GiB, 32 * MiB, False),
    (60 * GiB, 256 * MiB, False),
    (16 * GiB, None, True),
    (60 * GiB, 1 * MiB, True),
]


def _id(case) -> str:
    size, bs, fixed = case
    return f"{size // GiB}G-{'default' if bs is None else f'{bs // MiB}M'}-{'fixed' if fixed else 'dynamic'}"


@pytest.fixture(autouse=True)
def _tools():
    for tool in ("qemu-img", "qemu-io"):
        require_tool(tool)


def data_ranges(disk) -> list[tuple[int, int]]:
    return [(e.offset, e.length) for e in disk.extents() if e.state is ExtentState.DATA]


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_reads_what_qemu_reads(case, tmp_path: Path):
    size, block_size, fixed = case
    image = tmp_path / "disk.vhdx"
    writes = make_qemu_vhdx(image, size, block_size=block_size, fixed=fixed)
    raw = qemu_raw(image, tmp_path / "disk.raw")
    with vhdkit.open(image) as disk:
        assert disk.size == size
        ours = data_ranges(disk)
        bs = disk.block_size
        our_blocks = sorted({b for off, n in ours for b in range(off // bs, (off + n) // bs)})
        assert our_blocks == written_blocks(writes, bs), "allocation differs from what qemu-io wrote"
        assert our_blocks == dissect_present_blocks(image), "allocation differs from dissect's BAT reading"
        compare_ranges(disk, raw, ours)
        # Each write reads back as its pattern (catches a reader and qemu agreeing on nothing).
        for w in writes:
            assert disk.pread(w.offset, w.length) == bytes([w.pattern]) * w.length
        # Outside the data ranges both read zeros; sample unallocated places at random.
        rng = random.Random(size ^ (block_size or 0))
        holes = [e for e in disk.extents() if e.state is not ExtentState.DATA]
        for e in rng.sample(holes, min(8, len(holes))):
            off = e.offset + rng.randrange(0, max(1, e.length - 65536))
            compare_ranges(disk, raw, [(off, min(65536, e.offset + e.length - off))])
        assert disk.pread(off, 512) == bytes(512)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_geometry_agrees_with_qemu_libvhdi_and_dissect(case, tmp_path: Path):
    size, block_size, fixed = case
    image = tmp_path / "disk.vhdx"
    make_qemu_vhdx(image, size, block_size=block_size, fixed=fixed, writes=[])
    with vhdkit.open(image) as disk:
        info = disk.info()
    q = qemu_img_info(image)
    assert info.virtual_size == q["virtual-size"]
    assert info.block_size == q["cluster-size"]
    assert info.creator.startswith("QEMU")
    v = vhdiinfo(image)
    assert v["Media size"].endswith(f"({size} bytes)")
    assert v["Bytes per sector"] == f"{info.logical_sector_size} bytes"
    assert v["Disk type"] == ("Fixed" if fixed else "Dynamic")
    assert info.type == ("fixed" if fixed else "dynamic")
    from dissect.hypervisor.disk.vhdx import VHDX

    with open(image, "rb") as fh:
        d = VHDX(fh)
        assert (d.size, d.block_size, d.sector_size) == (info.virtual_size, info.block_size, info.logical_sector_size)
        assert str(d.id) == info.disk_id
        assert d.bat.chunk_ratio == info.details["chunk_ratio"]


def test_fully_allocated_fixed_image_reads_like_qemu(tmp_path: Path):
    """qemu's fixed image with block_state_zero=off: every BAT entry FULLY_PRESENT."""
    image = tmp_path / "fixed.vhdx"
    writes = make_qemu_vhdx(image, 1 * GiB, fixed=True, block_state_zero=False)
    raw = qemu_raw(image, tmp_path / "fixed.raw")
    with vhdkit.open(image) as disk:
        assert data_ranges(disk) == [(0, 1 * GiB)]
        assert disk.info().blocks["fully_present"] == disk.info().blocks["total"]
        compare_ranges(disk, raw, [(0, 1 * GiB)])
        for w in writes:
            assert disk.pread(w.offset, w.length) == bytes([w.pattern]) * w.length


def test_unaligned_and_sequential_reads_match(tmp_path: Path):
    image = tmp_path / "disk.vhdx"
    make_qemu_vhdx(image, 64 * MiB, block_size=1 * MiB)
    raw = (qemu_raw(image, tmp_path / "disk.raw")).read_bytes()
    rng = random.Random(7)
    with vhdkit.open(image) as disk:
        for _ in range(200):
            off = rng.randrange(0, len(raw))
            n = rng.randrange(0, 3 * MiB)
            assert disk.pread(off, n) == raw[off : off + n]
        disk.seek(0)
        pieces = []
        while chunk := disk.read(rng.choice([1, 511, 4096, 1 << 20, 3 << 20])):
            pieces.append(chunk)
        assert b"".join(pieces) == raw
