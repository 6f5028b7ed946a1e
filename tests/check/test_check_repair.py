"""``check --repair``: each safe repair, what it leaves (qemu-img check, content hashes), and what
it refuses to touch."""

from __future__ import annotations

import hashlib
import struct

import vhdkit
from vhdkit.ops.check import check
from vhdkit.units import MiB

from ..conftest import require_tool, run, sha256_of_disk
from ..test_cli import vhdkit_cmd
from ..vhdx.patching import BAT_GUID, HEADER_OFFSETS, REGION_OFFSETS, regions
from ..vhdx.test_samples import LOG_SAMPLE, LOG_SAMPLE_CONTENT


def content_hash(path) -> str:
    with vhdkit.open(path) as disk:
        return sha256_of_disk(disk)


def made(tmp_path, fmt="vhdx"):
    path = tmp_path / f"disk.{fmt}"
    with vhdkit.create(path, 64 * MiB, format=fmt, **({"block_size": MiB} if fmt == "vhdx" else {})) as disk:
        disk.pwrite(0, b"a" * MiB)
        disk.pwrite(5 * MiB, b"c" * MiB)
        disk.pwrite(9 * MiB, b"b" * MiB)
    return path


def test_dirty_log_sample_is_replayed_to_the_documented_content(sample):
    require_tool("qemu-img")
    path = sample(LOG_SAMPLE)
    r = vhdkit_cmd("check", "--repair", str(path))
    assert r.returncode == 0, r.stdout
    assert "repaired: replayed the log" in r.stdout
    assert content_hash(path) == LOG_SAMPLE_CONTENT
    assert run("qemu-img", "check", path, check=False).returncode == 0
    assert check(path).findings == []


def test_damaged_header_and_region_table_copies_are_rewritten(tmp_path):
    require_tool("qemu-img")
    path = made(tmp_path)
    before = content_hash(path)
    with open(path, "r+b") as f:
        f.seek(HEADER_OFFSETS[1] + 300)
        f.write(b"\x55")
        f.seek(REGION_OFFSETS[0] + 300)
        f.write(b"\x55")
    assert {x.structure for x in check(path).findings} == {"VHDX header 2", "region table 1"}
    report = check(path, repair=True)
    assert report.findings == [] and len(report.repairs) == 2
    assert content_hash(path) == before
    data = path.read_bytes()
    assert data[REGION_OFFSETS[0] : REGION_OFFSETS[0] + 65536] == data[REGION_OFFSETS[1] : REGION_OFFSETS[1] + 65536]
    assert run("qemu-img", "check", path, check=False).returncode == 0


def test_leaked_space_at_the_end_is_cut_and_leaks_between_blocks_are_left(tmp_path):
    require_tool("qemu-img")
    path = made(tmp_path)
    size, before = path.stat().st_size, content_hash(path)
    with open(path, "ab") as f:
        f.write(b"\xee" * (3 * MiB))
    report = check(path, repair=True)
    assert report.findings == [] and report.repairs == [f"cut {3 * MiB} leaked bytes from the end of the file (at {size:#x})"]
    assert path.stat().st_size == size and content_hash(path) == before
    # a block in the middle that nothing references stays: reclaiming it would move data
    bat = regions(path.read_bytes())[BAT_GUID][0]
    with open(path, "r+b") as f:  # block 5, the second of three in the file
        f.seek(bat + 8 * 5)
        f.write(struct.pack("<Q", 0))
    data_before = path.read_bytes()
    report = check(path, repair=True)
    assert report.verdict == "leaks" and report.repairs == [] and path.read_bytes() == data_before


def test_vhd_footer_copy_and_trailing_leak(tmp_path):
    path = made(tmp_path, "vhd")
    before_hash = content_hash(path)
    data = bytearray(path.read_bytes())
    data[200] ^= 0xFF  # the footer copy at offset 0
    footer = bytes(data[-512:])
    data[-512:] = b"\xcc" * 512  # garbage where the footer was ...
    data += b"\xcc" * (4 * MiB - 512) + footer  # ... and a leaked tail before a good footer
    path.write_bytes(bytes(data))
    found = {f.structure for f in check(path).findings}
    assert found == {"VHD footer copy", "file space"}
    report = check(path, repair=True)
    assert report.findings == [] and len(report.repairs) == 2
    assert path.read_bytes()[:512] == path.read_bytes()[-512:]
    assert content_hash(path) == before_hash
    require_tool("qemu-img")
    out = run("qemu-img", "convert", "-f", "vpc", "-O", "raw", path, tmp_path / "out.raw")
    assert out.returncode == 0
    with vhdkit.open(path) as disk:
        assert hashlib.sha256((tmp_path / "out.raw").read_bytes()[: disk.size]).hexdigest() == before_hash


def test_nothing_is_repaired_that_cannot_be_proved_safe(tmp_path):
    path = made(tmp_path)
    bat = regions(path.read_bytes())[BAT_GUID][0]
    with open(path, "r+b") as f:  # block 0 now points far past the end of the file
        f.seek(bat)
        f.write(struct.pack("<Q", (4096 << 20) | 6))
    data_before = path.read_bytes()
    report = check(path, repair=True)
    assert report.exit_code == 2 and report.repairs == [] and path.read_bytes() == data_before


def test_repair_refuses_an_image_another_writer_holds(tmp_path):
    path = made(tmp_path)
    with open(path, "ab") as f:
        f.write(bytes(2 * MiB))
    with vhdkit.open(path, "r+"):
        report = check(path, repair=True)
    assert report.exit_code == 1 and "open for writing elsewhere" in report.failure
