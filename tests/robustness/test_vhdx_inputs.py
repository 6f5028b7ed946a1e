"""The robustness contract (specs/architecture.md): any bytes either parse or raise VhdkitError.

Never struct.error, IndexError, MemoryError, a hang, or an allocation the file
does not justify. Mutations re-fix the CRCs they break, so the deeper checks get exercised too,
not only the checksums.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vhdkit
from vhdkit.errors import VhdkitError

from ..conftest import require_tool, run
from .peak import peak_growth_kib
from ..vhdx.patching import HEADER_OFFSETS, REGION_OFFSETS, fix_crc, regions, BAT_GUID, METADATA_GUID

MiB = 1 << 20


def open_and_read_all(path: Path) -> None:
    """Open as VHDX and read every byte; success or VhdkitError are the only outcomes allowed."""
    try:
        with vhdkit.open(path, format="vhdx") as disk:
            disk.info()
            list(disk.extents())
            pos = 0
            while pos < disk.size:
                got = disk.pread(pos, 4 * MiB)
                assert got, "short read inside the disk"
                pos += len(got)
    except VhdkitError:
        pass


class ImageBytes(bytes):
    def __repr__(self) -> str:  # hypothesis prints arguments of failing examples
        return f"<{len(self)} image bytes>"


@pytest.fixture(scope="module")
def small_vhdx(tmp_path_factory) -> bytes:
    """8 MiB virtual, 1 MiB blocks, three blocks written: small enough to read whole per example."""
    require_tool("qemu-img")
    require_tool("qemu-io")
    path = tmp_path_factory.mktemp("small") / "small.vhdx"
    run("qemu-img", "create", "-q", "-f", "vhdx", "-o", "block_size=1M", path, "8M")
    run("qemu-io", "-f", "vhdx", "-c", "write -q -P 0x61 0 1M", "-c", "write -q -P 0x62 3M 512",
        "-c", "write -q -P 0x63 7M 1M", path)
    return ImageBytes(path.read_bytes())


def test_zero_length_file(tmp_path):
    path = tmp_path / "empty.vhdx"
    path.write_bytes(b"")
    with pytest.raises(VhdkitError):
        vhdkit.open(path, format="vhdx")


def test_truncated_at_every_structure_boundary(small_vhdx, tmp_path):
    path = tmp_path / "cut.vhdx"
    cuts = {0, 1, 7, 8, 520, 64 << 10, (64 << 10) + 100, (128 << 10) + 4095, 192 << 10, (256 << 10) + 10,
            1 * MiB, 2 * MiB, 2 * MiB + 8, 3 * MiB, 3 * MiB + 4096, len(small_vhdx) - 1 * MiB,
            len(small_vhdx) - 1}
    for cut in sorted(cuts):
        path.write_bytes(small_vhdx[:cut])
        open_and_read_all(path)


def test_truncated_payload_is_a_corrupt_image(small_vhdx, tmp_path):
    path = tmp_path / "cut.vhdx"
    path.write_bytes(small_vhdx[: len(small_vhdx) - 512 * 1024])  # into the last written block
    with vhdkit.open(path) as disk:
        with pytest.raises(vhdkit.CorruptImageError, match="past the end of the file"):
            disk.pread(7 * MiB, MiB)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=0, max_size=4096), vhdx_signature=st.booleans(), pad=st.integers(0, 3))
def test_random_bytes(tmp_path, data, vhdx_signature, pad):
    path = tmp_path / "random.vhdx"
    head = b"vhdxfile" if vhdx_signature else b""
    path.write_bytes(head + data + bytes(pad * 300000))
    open_and_read_all(path)


def _fix_all_crcs(buf: bytearray) -> None:
    for at in HEADER_OFFSETS:
        if buf[at : at + 4] == b"head":
            fix_crc(buf, at, 4096)
    for at in REGION_OFFSETS:
        if buf[at : at + 4] == b"regi":
            fix_crc(buf, at, 65536)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.sampled_from(["header", "region", "metadata", "bat"]),
                                st.integers(0, 65535), st.binary(min_size=1, max_size=8)),
                      min_size=1, max_size=4),
       fix=st.booleans())
def test_mutated_structures(small_vhdx, tmp_path, edits, fix):
    buf = bytearray(small_vhdx)
    where = regions(bytes(buf))
    bases = {
        "header": HEADER_OFFSETS[0], "region": REGION_OFFSETS[0],
        "metadata": where[METADATA_GUID][0], "bat": where[BAT_GUID][0],
    }
    spans = {"header": 128, "region": 128, "metadata": 1024, "bat": 256}
    for kind, offset, patch in edits:
        at = bases[kind] + offset % spans[kind]
        buf[at : at + len(patch)] = patch
    if fix:
        _fix_all_crcs(buf)
    path = tmp_path / "mutated.vhdx"
    path.write_bytes(bytes(buf))
    open_and_read_all(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(0, 0x8000 - 1), patch=st.binary(min_size=1, max_size=8))
def test_mutated_log_entries(sample, tmp_path, offset, patch):
    """Windows's dirty log with a field changed and the entry CRC fixed: replay or refuse."""
    src = sample("discutils/vhdx-log-replay.vhdx")
    buf = bytearray(src.read_bytes())
    log = 1 * MiB
    buf[log + offset : log + offset + len(patch)] = patch
    entry = offset // 0x1000 * 0x1000
    while entry >= 0 and buf[log + entry : log + entry + 4] != b"loge":
        entry -= 0x1000
    if entry >= 0:
        length = struct.unpack_from("<I", buf, log + entry + 8)[0]
        if 0 < length <= 0x8000 and length % 4096 == 0:
            fix_crc(buf, log + entry, length)
    path = tmp_path / "log.vhdx"
    path.write_bytes(bytes(buf))
    try:
        with vhdkit.open(path) as disk:
            disk.pread(0, 1 * MiB)
            disk.info()
    except VhdkitError:
        pass
    src.unlink()


def test_thousands_of_overlapping_metadata_items_cost_no_memory(small_vhdx, tmp_path):
    """2047 unknown items of ~1 MiB each over the same bytes must not be read into memory."""
    import uuid

    buf = bytearray(small_vhdx)
    base = regions(bytes(buf))[METADATA_GUID][0]
    count = struct.unpack_from("<H", buf, base + 10)[0]
    for i in range(count, 2047):
        at = base + 32 + 32 * i
        buf[at : at + 16] = uuid.uuid4().bytes_le
        struct.pack_into("<IIII", buf, at + 16, 64 << 10, (1 << 20) - (64 << 10), 0, 0)
    struct.pack_into("<H", buf, base + 10, 2047)
    path = tmp_path / "items.vhdx"
    path.write_bytes(bytes(buf))
    with vhdkit.open(path) as disk:
        assert len(disk.metadata.unknown_items) == 2047 - count
    grown_kib = peak_growth_kib("""
with vhdkit.open(sys.argv[1]) as disk:
    assert len(disk.metadata.unknown_items) == int(sys.argv[2])
""", str(path), str(2047 - count))
    assert grown_kib < 200 * 1024, f"opening grew the process by {grown_kib} KiB"


def test_non_vhdx_file_detected_as_raw_is_not_an_error(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(5000))
    with vhdkit.open(path) as disk:
        assert disk.format_name == "raw" and disk.size == 5000


def test_writing_through_a_bat_entry_that_points_past_the_file_is_refused(small_vhdx, tmp_path):
    buf = bytearray(small_vhdx)
    bat = regions(bytes(buf))[BAT_GUID][0]
    struct.pack_into("<Q", buf, bat, (1 << 40) << 20 | 6)  # block 0 FULLY_PRESENT at 2**60 bytes
    path = tmp_path / "far.vhdx"
    path.write_bytes(bytes(buf))
    size_before = path.stat().st_size
    with vhdkit.open(path, "r+") as disk:
        with pytest.raises(vhdkit.CorruptImageError, match="outside the file"):
            disk.pwrite(0, b"x" * 512)
        with pytest.raises(vhdkit.ReadOnlyError, match="earlier write failed"):
            disk.pwrite(4 * MiB, b"y" * 512)
    assert path.stat().st_size == size_before
