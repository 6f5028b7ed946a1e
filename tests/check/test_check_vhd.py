"""``vhdkit.check`` on VHD images: damage made with struct from the spec's offsets, and the real
samples. (qemu-img has no check for VHD: "does not support checks", pinned below.)"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import vhdkit
from vhdkit.ops.check import check
from vhdkit.units import MiB

from ..conftest import require_tool, run

FOOTER = 512
BAT_UNUSED = 0xFFFFFFFF


def vhd_checksum(buf: bytes | bytearray, field: int) -> int:
    return ~(sum(buf) - sum(buf[field : field + 4])) & 0xFFFFFFFF


def fix_footer(buf: bytearray, at: int) -> None:
    struct.pack_into(">I", buf, at + 64, vhd_checksum(buf[at : at + FOOTER], 64))


def layout(data: bytes) -> tuple[int, int]:
    """(BAT offset, block size) from the dynamic header the footer copy points to."""
    header = struct.unpack_from(">Q", data, 16)[0]
    table, _, _, block_size = struct.unpack_from(">QIII", data, header + 16)
    return table, block_size


@pytest.fixture(params=["vhdkit", "qemu"])
def dynamic_vhd(request, tmp_path) -> Path:
    """A 64 MiB dynamic VHD, 2 MiB blocks, data in blocks 0, 3 and 7."""
    path = tmp_path / f"{request.param}.vhd"
    if request.param == "vhdkit":
        with vhdkit.create(path, 64 * MiB, format="vhd") as disk:
            for block in (0, 3, 7):
                disk.pwrite(block * 2 * MiB, bytes([block + 1]) * (2 * MiB))
    else:
        require_tool("qemu-img")
        run("qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=dynamic,force_size=on", path, "64M")
        for block in (0, 3, 7):
            run("qemu-io", "-f", "vpc", "-c", f"write -P {block + 1} {block * 2}M 2M", path)
    return path


def patched(path: Path, name: str, edit) -> Path:
    out = path.with_name(f"{path.stem}-{name}.vhd")
    buf = bytearray(path.read_bytes())
    edit(buf)
    out.write_bytes(bytes(buf))
    return out


def test_clean_dynamic_and_fixed(dynamic_vhd, tmp_path):
    assert (check(dynamic_vhd).verdict, check(dynamic_vhd).findings) == ("clean", [])
    fixed = tmp_path / "fixed.vhd"
    vhdkit.create(fixed, 251 * MiB + 256 * 1024, format="vhd", type="fixed").close()
    report = check(fixed)
    assert (report.verdict, report.findings) == ("clean", [])
    require_tool("qemu-img")
    out = run("qemu-img", "check", "-f", "vpc", dynamic_vhd, check=False)
    assert out.returncode == 63 and "does not support checks" in out.stderr


def test_block_past_the_footer_overlap_and_leak(dynamic_vhd):
    table, block_size = layout(dynamic_vhd.read_bytes())
    entries = struct.unpack_from(">8I", dynamic_vhd.read_bytes(), table)

    def past(buf: bytearray) -> None:
        struct.pack_into(">I", buf, table + 4 * 3, len(buf) // 512 + 100)

    def shared(buf: bytearray) -> None:
        struct.pack_into(">I", buf, table + 4 * 7, entries[0])

    def leaked(buf: bytearray) -> None:
        struct.pack_into(">I", buf, table + 4 * 3, BAT_UNUSED)

    report = check(patched(dynamic_vhd, "past", past))
    assert report.exit_code == 2 and report.findings[0].structure == "BAT entry 3"
    assert "past the footer" in report.findings[0].message
    report = check(patched(dynamic_vhd, "shared", shared))
    assert report.exit_code == 2 and any("overlaps BAT entry 0" in f.message for f in report.findings)
    report = check(patched(dynamic_vhd, "leak", leaked))
    assert (report.verdict, report.exit_code) == ("leaks", 3)
    assert report.findings[0].offset == entries[3] * 512 and report.leaked_bytes >= block_size


def test_damaged_footer_copies_are_warnings(dynamic_vhd):
    def copy_damaged(buf: bytearray) -> None:
        buf[100] ^= 0xFF

    def end_damaged(buf: bytearray) -> None:
        buf[len(buf) - FOOTER + 100] ^= 0xFF

    report = check(patched(dynamic_vhd, "copy", copy_damaged))
    assert report.exit_code == 0 and [f.structure for f in report.findings] == ["VHD footer copy"]
    report = check(patched(dynamic_vhd, "end", end_damaged))
    assert report.exit_code == 0 and [f.structure for f in report.findings] == ["VHD footer"]


def test_sizes_readers_disagree_on_are_reported(tmp_path):
    path = tmp_path / "odd.vhd"
    vhdkit.create(path, 251 * MiB + 256 * 1024, format="vhd").close()
    assert check(path).findings == []  # vhdkit writes the maximum CHS: every reader sees CurrentSize

    def vpc_creator_small_chs(buf: bytearray) -> None:
        for at in (0, len(buf) - FOOTER):
            buf[at + 28 : at + 32] = b"vpc "
            struct.pack_into(">HBB", buf, at + 56, 1000, 16, 63)
            fix_footer(buf, at)

    report = check(patched(path, "vpc", vpc_creator_small_chs))
    [warning] = report.findings
    assert report.exit_code == 0 and warning.severity == "warning" and "readers disagree" in warning.message
    assert str(1000 * 16 * 63 * 512) in warning.message


def test_dfvfs_samples(sample):
    assert check(sample("dfvfs/ext2.vhd")).verdict == "clean"
    image = check(sample("dfvfs/image.vhd"))
    assert image.exit_code == 2 and [f.structure for f in image.findings] == ["VHD footer"]
    assert "checksum mismatch: stored 0xfffff683" in image.findings[0].message
    differential = check(sample("dfvfs/image-differential.vhd"))
    assert {f.structure for f in differential.findings if f.severity == "error"} == {"VHD footer", "VHD dynamic header"}
    fat = check(sample("dfvfs/fat-differential.vhd"))
    [missing] = fat.findings
    assert (fat.verdict, fat.exit_code) == ("incomplete", 1) and missing.structure == "parent locator"
    assert "not found" in missing.message and "fat-parent.vhd" in missing.message
