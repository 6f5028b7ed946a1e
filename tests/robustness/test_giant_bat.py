"""Sparse giants: a few hundred KiB of file claiming 64 TiB in 1 MiB blocks (a 512 MiB BAT per
chain level) must be inspected and checked in bounded memory, every entry still looked at; and
the paged BAT that makes that possible must never lose an entry it drops and reads again."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import vhdkit
from vhdkit.vhdx import bat as bat_module

from ..conftest import run
from .peak import peak_growth_kib

MiB = 1024 * 1024
TiB = 1024**4


@pytest.fixture(scope="module")
def giant_chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("giant")
    base, child = folder / "base.vhdx", folder / "child.vhdx"
    with vhdkit.create(base, size=64 * TiB, block_size=MiB) as disk:
        disk.pwrite(64 * TiB - MiB, b"\xa5" * MiB)  # the last block: the BAT's last page
    vhdkit.create(child, parent=base, block_size=MiB).close()
    return base, child


def test_info_and_check_of_a_64_tib_chain_stay_small(giant_chain):
    """Before the BAT was paged: 1.72 GB peak for info of this chain, 1.59 GB for check."""
    _, child = giant_chain
    info = peak_growth_kib("vhdkit.open(sys.argv[1]).info()", str(child))
    checked = peak_growth_kib("r = vhdkit.check(sys.argv[1])\nassert r.verdict == 'clean', r.as_dict()", str(child))
    assert info < 100 * 1024, f"info grew the peak RSS by {info} KiB"
    assert checked < 100 * 1024, f"check grew the peak RSS by {checked} KiB"


def test_every_page_is_still_summarised_and_checked(giant_chain, tmp_path):
    base, _ = giant_chain
    with vhdkit.open(base) as disk:
        info = disk.info()
        assert info.blocks["fully_present"] == 1
        assert info.blocks["not_present"] == 64 * TiB // MiB - 1
        assert disk.pread(64 * TiB - MiB, 16) == b"\xa5" * 16
    # A damaged entry in the BAT's last page: a check that skipped pages would call it clean.
    bad = tmp_path / "bad.vhdx"
    bad.write_bytes(b"")
    with open(base, "rb") as src, open(bad, "r+b") as dst:
        while chunk := src.read(64 * MiB):
            if chunk.count(0) == len(chunk):
                dst.seek(len(chunk), 1)
            else:
                dst.write(chunk)
        dst.truncate(src.tell())
    with vhdkit.open(base) as disk:
        last = disk.bat.geometry.payload_index(64 * TiB // MiB - 1)
        where = disk.bat.region_offset + last * 8
    with open(bad, "r+b") as f:
        f.seek(where)
        (value,) = struct.unpack("<Q", f.read(8))
        f.seek(where)
        f.write(struct.pack("<Q", value | 1 << 10))  # a reserved bit
    report = vhdkit.check(bad)
    assert report.verdict == "corrupt"
    assert any("reserved bits" in f.message and f.offset == where for f in report.findings), report.findings


def test_pages_dropped_and_read_again_keep_every_write(tmp_path, monkeypatch):
    """With room for two clean pages, writes spread over six pages, read back (dropping and
    re-reading clean pages all along), must all be there: in vhdkit and in qemu-img."""
    monkeypatch.setattr(bat_module, "_MAX_CLEAN_PAGES", 2)
    path = tmp_path / "wide.vhdx"
    page_span = bat_module.PAGE_ENTRIES * MiB  # virtual bytes one BAT page maps (~128 GiB)
    offsets = [p * page_span + (p + 1) * 7 * MiB for p in range(6)]
    vhdkit.create(path, size=6 * page_span, block_size=MiB).close()
    with vhdkit.open(path, "r+") as disk:
        for i, offset in enumerate(offsets):
            disk.pwrite(offset, bytes([0x10 + i]) * 4096)
            for other in offsets[:i]:  # reading pages again pushes clean ones out
                disk.pread(other + MiB, 512)
        for i, offset in enumerate(offsets):
            assert disk.pread(offset, 4096) == bytes([0x10 + i]) * 4096
    with vhdkit.open(path) as disk:
        for i, offset in enumerate(offsets):
            assert disk.pread(offset, 4096) == bytes([0x10 + i]) * 4096, i
    assert run("qemu-img", "check", "-f", "vhdx", path).returncode == 0
    for i, offset in enumerate(offsets):
        out = run("qemu-io", "-r", "-f", "vhdx", "-c", f"read -P {0x10 + i} {offset} 4096", path)
        assert "Pattern verification failed" not in out.stdout, out.stdout


@pytest.mark.parametrize("where", ["payload", "bitmap slot"])
@pytest.mark.parametrize("page", ["first", "middle", "last"])
def test_a_qemu_made_giant_whose_blocks_are_all_zero_state_is_still_read_entry_by_entry(tmp_path, where, page):
    """qemu-img marks every block of a new VHDX ZERO (state 2): check compares such pages with one
    uniform page at once; a single wrong entry anywhere (a payload entry with an offset, a bitmap
    slot with a state) must still be found, at its offset."""
    image = tmp_path / "q.vhdx"
    run("qemu-img", "create", "-q", "-f", "vhdx", image, "64T")
    assert vhdkit.check(image).verdict == "clean"
    with vhdkit.open(image) as disk:
        g = disk.bat.geometry
        blocks = g.virtual_size // g.block_size
        block = {"first": 0, "middle": blocks // 2 + 7, "last": blocks - 1}[page]
        # (a disk without a parent has no bitmap slot after its last chunk: 2.5, TotalBATEntries)
        chunk = min(block // g.chunk_ratio, (blocks - 1) // g.chunk_ratio - 1)
        index = g.payload_index(block) if where == "payload" else g.bitmap_index(chunk)
        at = disk.bat.region_offset + index * 8
    with open(image, "r+b") as f:
        f.seek(at)
        (value,) = struct.unpack("<Q", f.read(8))
        assert value == (2 if where == "payload" else 0)
        f.seek(at)
        f.write(struct.pack("<Q", 6))  # FULLY_PRESENT (a bitmap slot: PRESENT) at offset 0, in the header section
    report = vhdkit.check(image)
    assert report.verdict == "corrupt", report.findings
    assert any(f.offset == at for f in report.findings), [(f.offset, f.message) for f in report.findings]
