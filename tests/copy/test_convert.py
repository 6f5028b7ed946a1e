"""The copy engine and ``vhdkit convert``, judged by qemu-img compare."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading

import pytest

import vhdkit
from vhdkit.copy import copy_disk, verify_copy
from vhdkit.errors import CopyVerificationError
from vhdkit.copy.engine import DEFAULT_CHUNK
from vhdkit.errors import StorageError

from ..conftest import require_tool, run, run_on_terminal

MiB, GiB = 1 << 20, 1 << 30


def fill(disk, rng: random.Random, spots: list[int], n: int = 3 * MiB) -> None:
    for spot in spots:
        disk.pwrite(spot, rng.randbytes(min(n, disk.size - spot)))


@pytest.fixture
def source_vhdx(tmp_path):
    """6 GiB, 1 MiB blocks, data in chunk 0 and chunk 1 (4 GiB apart) and at the end."""
    path = tmp_path / "src.vhdx"
    rng = random.Random(9)
    with vhdkit.create(path, 6 * GiB, block_size=1 * MiB) as disk:
        fill(disk, rng, [0, 5 * MiB + 17 * 512, 4 * GiB - 2 * MiB, 4 * GiB + 123 * 4096, 6 * GiB - 2 * MiB])
        disk.pwrite(100 * MiB, bytes(2 * MiB))  # written zeros: allocated, but a zero chunk
    return path


@pytest.mark.parametrize("kind", ["dynamic", "fixed"])
def test_round_trip_vhdx_vhd_raw_vhdx_is_byte_identical(tmp_path, source_vhdx, kind):
    require_tool("qemu-img")
    steps = [(source_vhdx, tmp_path / "a.vhd"), (tmp_path / "a.vhd", tmp_path / "b.raw"),
             (tmp_path / "b.raw", tmp_path / "c.vhdx")]
    try:
        for src, dst in steps:
            vhdkit.convert(src, dst, type=kind)
        for fmt, path in (("vpc", steps[0][1]), ("raw", steps[1][1]), ("vhdx", steps[2][1])):
            cmp = run("qemu-img", "compare", "-f", "vhdx", "-F", fmt, source_vhdx, path, check=False)
            assert cmp.returncode == 0, f"{path.name}: {cmp.stdout}{cmp.stderr}"
        assert run("qemu-img", "check", steps[2][1], check=False).returncode == 0
        with vhdkit.open(steps[2][1]) as disk:
            assert disk.info().type == kind and disk.size == 6 * GiB
    finally:  # fixed images reserve their whole size: give the space back now
        for _, dst in steps:
            dst.unlink(missing_ok=True)


def test_targets_stay_sparse_and_zero_chunks_are_not_written(tmp_path, source_vhdx):
    stats = vhdkit.convert(source_vhdx, tmp_path / "t.vhdx")
    assert stats.bytes_written == 5 * 3 * MiB  # the five data runs; the written zeros skipped
    assert stats.bytes_read >= stats.bytes_written + 2 * MiB
    assert stats.bytes_skipped == 6 * GiB - stats.bytes_written
    raw = tmp_path / "t.raw"
    vhdkit.convert(source_vhdx, raw)
    assert raw.stat().st_size == 6 * GiB and raw.stat().st_blocks * 512 < 64 * MiB


def test_verify_catches_a_target_that_differs(tmp_path, source_vhdx):
    target = tmp_path / "t.vhdx"
    stats = vhdkit.convert(source_vhdx, target, verify=True)
    assert stats.verified is True
    with vhdkit.open(target, "r+") as disk:
        disk.pwrite(4 * GiB + 123 * 4096, b"tampered")
    with vhdkit.open(source_vhdx) as a, vhdkit.open(target) as b:
        with pytest.raises(CopyVerificationError, match=f"{4 * GiB + 123 * 4096:#x}"):
            verify_copy(a, b)


def test_progress_reaches_the_whole_size(tmp_path, source_vhdx):
    seen = []
    vhdkit.convert(source_vhdx, tmp_path / "p.vhd", progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (6 * GiB, 6 * GiB)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))


def test_a_failing_target_is_removed_and_the_source_untouched(tmp_path, source_vhdx, monkeypatch):
    before = source_vhdx.read_bytes()
    target = tmp_path / "broken.vhdx"
    real = vhdkit.VhdxDisk.pwrite
    calls = {"n": 0}

    def failing(self, offset, data):
        calls["n"] += 1
        if calls["n"] == 3:
            raise StorageError("disk full (simulated)")
        return real(self, offset, data)

    monkeypatch.setattr(vhdkit.VhdxDisk, "pwrite", failing)
    with pytest.raises(StorageError, match="simulated"):
        vhdkit.convert(source_vhdx, target)
    assert not target.exists()
    assert source_vhdx.read_bytes() == before


def test_reader_errors_reach_the_caller(tmp_path, source_vhdx):
    class Exploding(Exception):
        pass

    with vhdkit.open(source_vhdx) as src, vhdkit.create(tmp_path / "t.vhdx", src.size) as dst:
        calls = {"n": 0}
        real = src.preadinto

        def boom(offset, buf):
            calls["n"] += 1
            if calls["n"] == 2:
                raise Exploding()
            return real(offset, buf)

        src.preadinto = boom  # type: ignore[method-assign]
        with pytest.raises(Exploding):
            copy_disk(src, dst, queue_depth=1)
    readers = [t for t in threading.enumerate() if t.name == "vhdkit-copy-reader"]
    for reader in readers:
        reader.join(5)
    assert not any(t.is_alive() for t in readers)  # the reader thread did not hang around
    # (counted by name: the process's other threads, from earlier tests, are none of its business)


def test_azure_refuses_a_size_that_is_not_whole_mib_unless_asked(tmp_path, sample):
    src = sample("dfvfs/ext2.vhd")  # 4212736 bytes: 4.0176 MiB
    with pytest.raises(ValueError, match="whole number of MiB"):
        vhdkit.convert(src, tmp_path / "az.vhd", azure=True)
    assert not (tmp_path / "az.vhd").exists()
    vhdkit.convert(src, tmp_path / "az.vhd", azure=True, round_up=True)
    with vhdkit.open(tmp_path / "az.vhd") as disk, vhdkit.open(src) as orig:
        assert disk.info().type == "fixed" and disk.size == 5 * MiB
        assert disk.pread(0, orig.size) == orig.pread(0, orig.size)
        assert disk.pread(orig.size, 5 * MiB - orig.size) == bytes(5 * MiB - orig.size)
    assert (tmp_path / "az.vhd").stat().st_size == 5 * MiB + 512


def test_convert_command_json_summary(tmp_path, source_vhdx):
    out = subprocess.run([sys.executable, "-m", "vhdkit", "convert", str(source_vhdx), str(tmp_path / "o.img"),
                          "--json", "--verify"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["verified"] is True and summary["size"] == 6 * GiB
    assert summary["bytes_written"] + summary["bytes_skipped"] == 6 * GiB
    r = subprocess.run([sys.executable, "-m", "vhdkit", "convert", str(source_vhdx), str(tmp_path / "noext")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "-O" in r.stderr


def test_progress_bar_on_a_terminal_and_not_in_a_pipe(tmp_path, source_vhdx):
    """Run the command on a pseudo-terminal, as a person would, and in a pipe, as a script would."""
    target = tmp_path / "tty.vhd"
    status, text = run_on_terminal([sys.executable, "-m", "vhdkit", "convert", str(source_vhdx), str(target)])
    assert status == 0, text
    assert "converting" in text and "100.0%" in text and "[" + "#" * 30 + "]" in text
    piped = subprocess.run([sys.executable, "-m", "vhdkit", "convert", str(source_vhdx), str(tmp_path / "p.vhd")],
                           capture_output=True, text=True)
    assert piped.returncode == 0 and "%" not in piped.stderr and "converted" in piped.stdout


def test_a_child_without_its_parent_is_not_copied_as_if_the_parent_were_zeros(tmp_path):
    parent, child = tmp_path / "base.vhdx", tmp_path / "child.vhdx"
    with vhdkit.create(parent, 64 * MiB) as disk:
        disk.pwrite(0, b"\x42" * MiB)
    vhdkit.create(child, parent=parent).close()
    with vhdkit.open(child, resolve_parents=False) as src, vhdkit.create(tmp_path / "t.raw", src.size, format="raw") as dst:
        with pytest.raises(vhdkit.ParentNotFoundError, match="parent is not open"):
            copy_disk(src, dst)
    stats = vhdkit.convert(child, tmp_path / "flat.raw")  # with the parent: the chain flattened
    assert stats.bytes_written == MiB  # the parent's 1 MiB of data, and no zeros
    assert stats.bytes_read >= MiB
    assert (tmp_path / "flat.raw").read_bytes()[:MiB] == b"\x42" * MiB


@pytest.mark.parametrize("sync", [True, False])
def test_writeback_hints_only_when_the_copy_must_end_durable(tmp_path, monkeypatch, sync):
    source_vhdx = tmp_path / "big.vhdx"
    with vhdkit.create(source_vhdx, 256 * MiB) as disk:
        disk.pwrite(0, random.Random(3).randbytes(130 * MiB))  # two 64 MiB hint steps' worth
    calls = []
    real = vhdkit.VhdxDisk.writeback_hint

    def counting(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(vhdkit.VhdxDisk, "writeback_hint", counting)
    with vhdkit.open(source_vhdx) as src, vhdkit.create(tmp_path / "t.vhdx", src.size) as dst:
        stats = copy_disk(src, dst, flush=sync)
    assert stats.bytes_written == -(-130 * MiB // DEFAULT_CHUNK) * DEFAULT_CHUNK  # whole chunks
    assert len(calls) == (2 if sync else 0)
    with vhdkit.open(source_vhdx) as a, vhdkit.open(tmp_path / "t.vhdx") as b:
        assert verify_copy(a, b)
