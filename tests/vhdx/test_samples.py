"""Real Windows-made VHDX files (the samples folder, see conftest.samples_dir) read exactly as its
README.md says."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import vhdkit
from vhdkit.vhdx import layout as L

from ..conftest import run, sha256_of_disk

LOG_SAMPLE = "discutils/vhdx-log-replay.vhdx"
LOG_SAMPLE_CONTENT = "3ba3b309425b7ff5e8e0199edceed95226250f880c53b24e8eae93865f3fad5e"
LOG_SAMPLE_UNREPLAYED = "49bc20df15e412a64472421e13fe86ff1c5165e18b2afccf160d4dc19fe68a14"
PAULSHIR = "other/paulshir-config2_base.vhdx"
PAULSHIR_CONTENT = "afce9cca367ebfa91a673d612bcb6fc32b12a80211207f7a7b1cd3aed3cac19d"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_dirty_log_read_only_replays_in_memory_and_leaves_file_unchanged(sample):
    path = sample(LOG_SAMPLE)
    before = file_sha256(path)
    with vhdkit.open(path) as disk:
        assert disk.log_replay.state == "replayed_in_memory"
        assert disk.log_replay.entries == 2  # the active sequence: tail 0x5000, head 0x7000
        assert (disk.log_replay.tail_position, disk.log_replay.head_position) == (0x5000, 0x7000)
        assert sha256_of_disk(disk) == LOG_SAMPLE_CONTENT
        counts = disk.info().blocks
        assert counts == {"total": 32, "fully_present": 1, "zero": 3, "not_present": 28}
        assert disk.bat.payload(0) == (L.PayloadBlockState.FULLY_PRESENT, 4 << 20)
        mbr = disk.pread(0, 512)
    assert mbr[510:] == b"\x55\xaa"
    # two type-0x83 partitions: LBA 2048 len 204800, LBA 206848 len 409600
    assert mbr[0x1BE + 4] == 0x83 and mbr[0x1CE + 4] == 0x83
    assert int.from_bytes(mbr[0x1BE + 8 : 0x1BE + 12], "little") == 2048
    assert int.from_bytes(mbr[0x1CE + 12 : 0x1CE + 16], "little") == 409600
    assert file_sha256(path) == before


def test_the_log_is_what_holds_the_data(sample):
    """Guards the hash above: with the header's LogGuid cleared (as a reader that ignores the
    log sees the file), the content is the wrong, all-zero answer libvhdi and dissect give."""
    from .patching import HEADER_OFFSETS, Image, fix_crc

    img = Image(sample(LOG_SAMPLE))
    for at in HEADER_OFFSETS:
        img.data[at + 48 : at + 64] = bytes(16)
        fix_crc(img.data, at, 4096)
    img.save()
    with vhdkit.open(img.path) as disk:
        assert disk.log_replay.state == "empty"
        assert sha256_of_disk(disk) == LOG_SAMPLE_UNREPLAYED


def test_dirty_log_read_write_replays_to_disk_and_qemu_agrees(sample):
    path = sample(LOG_SAMPLE)
    before = file_sha256(path)
    with vhdkit.open(path, "r+") as disk:
        assert disk.log_replay.state == "replayed"
        assert disk.header.log_is_empty
        assert sha256_of_disk(disk) == LOG_SAMPLE_CONTENT
    assert file_sha256(path) != before
    check = run("qemu-img", "check", path, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No errors" in check.stdout
    with vhdkit.open(path) as disk:
        assert disk.log_replay.state == "empty"
        assert sha256_of_disk(disk) == LOG_SAMPLE_CONTENT
    raw = path.with_suffix(".raw")
    run("qemu-img", "convert", "-f", "vhdx", "-O", "raw", path, raw)
    assert file_sha256(raw) == LOG_SAMPLE_CONTENT


def test_read_write_replay_matches_qemu_replay_byte_for_byte(sample, tmp_path):
    ours = sample(LOG_SAMPLE)
    theirs = tmp_path / "qemu.vhdx"
    theirs.write_bytes(ours.read_bytes())
    vhdkit.open(ours, "r+").close()
    run("qemu-img", "check", "-r", "all", theirs, check=False)
    # Headers differ (GUIDs, sequence numbers); everything from the region tables on must match.
    a, b = ours.read_bytes(), theirs.read_bytes()
    assert len(a) == len(b)
    assert a[L.REGION_TABLE_OFFSETS[0] :] == b[L.REGION_TABLE_OFFSETS[0] :]


def test_paulshir_sample_reads_and_reports_as_documented(sample):
    path = sample(PAULSHIR)
    with vhdkit.open(path) as disk:
        assert sha256_of_disk(disk) == PAULSHIR_CONTENT
        assert disk.pread(510, 2) == b"\x55\xaa"
        assert [e.sequence_number for e in disk.header_selection.headers] == [12, 13]
    out = subprocess.run([sys.executable, "-m", "vhdkit", "info", "--json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    info = json.loads(out)
    assert info["format"] == "vhdx" and info["type"] == "dynamic"
    assert info["virtual_size"] == 104857600
    assert info["block_size"] == 32 << 20
    assert (info["logical_sector_size"], info["physical_sector_size"]) == (512, 4096)
    assert info["creator"] == "Microsoft Windows 6.3.9600.16521"
    assert info["log"]["state"] == "empty"
    assert info["blocks"] == {"total": 4, "fully_present": 1, "not_present": 1, "zero": 2}
    regions = {r["name"]: r for r in info["details"]["regions"]}
    assert regions["metadata"]["file_offset"] == 2 << 20 and regions["metadata"]["required"]
    assert regions["BAT"]["file_offset"] == 3 << 20 and regions["BAT"]["required"]


def test_paulshir_bat_entries_as_documented(sample):
    with vhdkit.open(sample(PAULSHIR)) as disk:
        states = [disk.bat.payload(i) for i in range(4)]
    assert states == [
        (L.PayloadBlockState.FULLY_PRESENT, 4 << 20),
        (L.PayloadBlockState.NOT_PRESENT, 0),
        (L.PayloadBlockState.ZERO, 0),
        (L.PayloadBlockState.ZERO, 0),
    ]
