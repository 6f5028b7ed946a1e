"""4096-byte logical sectors: vhdkit, pyvhdi and dissect must read the same bytes.

qemu-img cannot make such an image, so the test patches the LogicalSectorSize item of a qemu-made
one (the metadata region has no checksum). The chunk ratio grows eightfold with it
(2**23 × 4096 / block size), so where the image crosses a 512-byte chunk the BAT is re-laid with
the new interleave.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import vhdkit

from ..conftest import require_tool, vhdiinfo
from ..interop.qemu_images import GiB, MiB, Write, make_qemu_vhdx
from .patching import LOGICAL_SECTOR_SIZE_GUID, Image


def patch_to_4k(path: Path, size: int, block_size: int) -> None:
    img = Image(path)
    img.u32(img.item(LOGICAL_SECTOR_SIZE_GUID), 4096)
    blocks = -(-size // block_size)
    old_ratio = (1 << 23) * 512 // block_size
    new_ratio = (1 << 23) * 4096 // block_size
    old_count = blocks + (blocks - 1) // old_ratio
    old = img.bat_entries(old_count)
    payload = [old[b + b // old_ratio] for b in range(blocks)]
    new = []
    for b, entry in enumerate(payload):
        new.append(entry)
        if (b + 1) % new_ratio == 0 and b + 1 < blocks:
            new.append(0)  # the sector-bitmap slot of a finished chunk
    img.set_bat_entries(new, 1 * MiB)
    img.save()


def read_pyvhdi(path: Path, offset: int, n: int) -> bytes:
    import pyvhdi

    f = pyvhdi.file()
    f.open(str(path))
    try:
        assert f.get_bytes_per_sector() == 4096
        return f.read_buffer_at_offset(n, offset)
    finally:
        f.close()


def read_dissect(path: Path, offset: int, n: int) -> bytes:
    from dissect.hypervisor.disk.vhdx import VHDX

    with open(path, "rb") as fh:
        d = VHDX(fh)
        assert d.sector_size == 4096
        d.seek(offset)
        return d.read(n)


@pytest.mark.parametrize("size", [64 * MiB, 40 * GiB], ids=["64M-one-chunk", "40G-crosses-512-chunks"])
def test_4k_logical_sector_image_reads_the_same_in_vhdkit_pyvhdi_and_dissect(size, tmp_path: Path):
    require_tool("qemu-img")
    require_tool("qemu-io")
    image = tmp_path / "4k.vhdx"
    bs = 1 * MiB
    writes = [Write(0, 8192, 0xA1), Write(bs - 4096, 8192, 0xB2), Write(size - bs, bs, 0xC3)]
    if size > 4 * GiB:
        writes += [Write(4 * GiB - 4096, 8192, 0xD4), Write(32 * GiB - 4096, 8192, 0xE5)]
    make_qemu_vhdx(image, size, block_size=bs, writes=writes)
    patch_to_4k(image, size, bs)
    with vhdkit.open(image) as disk:
        assert disk.logical_sector_size == 4096
        assert disk.info().details["chunk_ratio"] == 32768
        for w in writes:
            start = max(0, w.offset - 4096)  # with zeros either side
            n = min(size, w.offset + w.length + 4096) - start
            ours = disk.pread(start, n)
            assert ours[w.offset - start : w.offset - start + w.length] == bytes([w.pattern]) * w.length
            assert ours.count(0) == n - w.length
            assert ours == read_pyvhdi(image, start, n)
            assert ours == read_dissect(image, start, n)
        unaligned = disk.pread(bs - 4096 - 100, 300)
        assert unaligned == bytes(100) + bytes([0xB2]) * 200
    assert vhdiinfo(image)["Bytes per sector"] == "4096 bytes"
