"""``vhdkit.check`` on VHDX images, beside ``qemu-img check`` on the same files.

Damage is made by the tests with struct (tests/vhdx/patching.py), on images made by vhdkit and
by qemu-img. Where qemu-img check sees the damage, the verdicts must agree; where it does not
(qemu 7.2 checks only "BAT entry past end of file"), its blindness is pinned and vhdkit must
find the damage.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

import vhdkit
from vhdkit.ops.check import check
from vhdkit.units import MiB

from ..conftest import require_tool, run
from ..vhdx.patching import BAT_GUID, HEADER_OFFSETS, regions
from ..vhdx.test_samples import LOG_SAMPLE, PAULSHIR

BLOCKS_WITH_DATA = (0, 3, 7)


def bat_entry(state: int, offset: int) -> bytes:
    return struct.pack("<Q", (offset // MiB) << 20 | state)


@pytest.fixture(params=["vhdkit", "qemu"])
def image(request, tmp_path) -> Path:
    """A 256 MiB dynamic VHDX with 1 MiB blocks holding data in blocks 0, 3 and 7."""
    path = tmp_path / f"{request.param}.vhdx"
    if request.param == "vhdkit":
        with vhdkit.create(path, 256 * MiB, block_size=MiB) as disk:
            for block in BLOCKS_WITH_DATA:
                disk.pwrite(block * MiB, bytes([block + 1]) * MiB)
    else:
        require_tool("qemu-img")
        require_tool("qemu-io")
        run("qemu-img", "create", "-q", "-f", "vhdx", "-o", "block_size=1M", path, "256M")
        for block in BLOCKS_WITH_DATA:
            run("qemu-io", "-f", "vhdx", "-c", f"write -P {block + 1} {block}M 1M", path)
    return path


def payload_entry(path: Path, block: int) -> tuple[int, int]:
    """(file offset of the BAT entry, its value); 1 MiB blocks: chunk ratio 4096, so block = index."""
    data = path.read_bytes()
    bat_offset = regions(data)[BAT_GUID][0]
    at = bat_offset + 8 * block
    return at, struct.unpack_from("<Q", data, at)[0]


def damaged(image: Path, name: str, at: int, data: bytes) -> Path:
    out = image.with_name(f"{image.stem}-{name}.vhdx")
    shutil.copy(image, out)
    with open(out, "r+b") as f:
        f.seek(at)
        f.write(data)
    return out


def qemu_check(path: Path) -> int:
    require_tool("qemu-img")
    return run("qemu-img", "check", path, check=False).returncode


def test_clean_images_are_clean_for_both(image):
    report = check(image)
    assert (report.verdict, report.exit_code, report.findings) == ("clean", 0, [])
    assert qemu_check(image) == 0


def test_a_block_past_the_end_of_the_file_is_corruption_for_both(image):
    at, _ = payload_entry(image, 3)
    bad = damaged(image, "past-eof", at, bat_entry(6, image.stat().st_size + 64 * MiB))
    report = check(bad)
    assert report.exit_code == qemu_check(bad) == 2
    [error] = [f for f in report.findings if f.severity == "error"]
    assert error.structure == "BAT entry 3 (payload block 3)" and error.offset == at
    assert "past the end of the file" in error.message


def test_two_blocks_sharing_space_is_corruption_qemu_does_not_see(image):
    at0, value0 = payload_entry(image, 0)
    at7, _ = payload_entry(image, 7)
    bad = damaged(image, "shared", at7, struct.pack("<Q", value0))
    assert qemu_check(bad) == 0  # qemu-img 7.2 does not compare blocks with each other
    report = check(bad)
    assert report.exit_code == 2
    overlaps = [f for f in report.findings if "overlaps" in f.message]
    assert len(overlaps) == 1 and "BAT entry 0" in overlaps[0].message + overlaps[0].structure
    # block 7's own space is now referenced by nothing: a leak beside the corruption
    assert report.count("leak") == 1


def test_a_block_nothing_references_is_a_leak_qemu_does_not_see(image):
    at, value = payload_entry(image, 3)
    bad = damaged(image, "leak", at, bat_entry(0, 0))
    assert qemu_check(bad) == 0  # qemu-img 7.2 counts no leaks in VHDX
    report = check(bad)
    assert (report.verdict, report.exit_code) == ("leaks", 3)
    [leak] = report.findings
    assert leak.offset == (value >> 20) * MiB and report.leaked_bytes == MiB


def test_one_damaged_header_is_a_warning_and_the_image_stays_clean(image):
    bad = damaged(image, "header", HEADER_OFFSETS[0] + 100, b"\xff")
    assert qemu_check(bad) == 0
    report = check(bad)
    assert (report.verdict, report.exit_code) == ("clean", 0)
    [warning] = report.findings
    assert (warning.severity, warning.structure, warning.offset) == ("warning", "VHDX header 1", HEADER_OFFSETS[0])


def test_both_headers_damaged_is_corruption(image):
    bad = damaged(image, "headers", HEADER_OFFSETS[0] + 100, b"\xff")
    with open(bad, "r+b") as f:
        f.seek(HEADER_OFFSETS[1] + 100)
        f.write(b"\xff")
    report = check(bad)
    assert report.exit_code == 2 and "no valid header" in report.findings[0].message


def test_damaged_region_table_copy_is_a_warning(image):
    bad = damaged(image, "region", 0x30000 + 200, b"\x01")
    report = check(bad)
    assert report.exit_code == 0 and [f.structure for f in report.findings] == ["region table 1"]


def test_samples_clean_and_dirty(sample):
    clean = check(sample(PAULSHIR))
    assert (clean.verdict, clean.findings) == ("clean", [])
    dirty_path = sample(LOG_SAMPLE)
    before = dirty_path.read_bytes()
    dirty = check(dirty_path)
    assert dirty.exit_code == 2
    [finding] = dirty.findings
    assert finding.structure == "log" and "log needs replay" in finding.message
    assert dirty_path.read_bytes() == before  # check never writes
    assert qemu_check(dirty_path) == 1  # qemu-img cannot even open it read-only


def test_differencing_chain_parent_present_moved_and_outside_the_allowed_folder(tmp_path):
    base, child = tmp_path / "base.vhdx", tmp_path / "child.vhdx"
    vhdkit.create(base, 64 * MiB).close()
    with vhdkit.create(child, parent=base) as disk:
        disk.pwrite(0, b"x" * 4096)
    assert check(child).verdict == "clean"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outside = check(child, allowed_parent_dirs=[elsewhere])
    assert (outside.verdict, outside.exit_code) == ("incomplete", 1)  # the chain cannot be checked: no damage
    assert "outside the allowed folders" in outside.findings[0].message
    base.rename(elsewhere / "base.vhdx")
    moved = check(child)
    assert (moved.verdict, moved.exit_code) == ("incomplete", 1)
    assert moved.findings[0].structure == "parent locator" and "not found" in moved.findings[0].message
    assert check(child, check_parent=False).verdict == "clean"


def test_a_truncated_file_and_a_non_image(tmp_path, image):
    data = image.read_bytes()
    cut = tmp_path / "cut.vhdx"
    cut.write_bytes(data[: 5 * MiB + 123])
    report = check(cut)
    assert report.exit_code == 2 and any("past the end" in f.message for f in report.findings)
    missing = check(tmp_path / "nothing.vhdx")
    assert (missing.verdict, missing.exit_code) == ("not checked", 1) and "no such file" in missing.failure


def test_a_bad_entry_among_a_million_zero_state_entries_is_found(tmp_path):
    """qemu-img fills a new BAT with ZERO states; the check skips such pages wholesale, and must
    still see the one entry in them that is wrong."""
    require_tool("qemu-img")
    path = tmp_path / "big.vhdx"
    run("qemu-img", "create", "-q", "-f", "vhdx", path, "64T")
    assert check(path).findings == []
    bat = regions(path.read_bytes())[BAT_GUID][0]
    for index, value, words in ((70001, 4, "not a payload block state"), (123457, 2 | 1 << 10, "reserved bits")):
        bad = damaged(path, f"entry{index}", bat + 8 * index, struct.pack("<Q", value))
        report = check(bad)
        [error] = report.findings
        assert error.offset == bat + 8 * index and words in error.message
