"""VirtualDisk's file-object behaviour, through RawDisk over real files."""

from __future__ import annotations

import io
import os

import pytest

import vhdkit
from vhdkit import ExtentState, RawDisk
from vhdkit.errors import ReadOnlyError
from vhdkit.storage import LocalStore


def test_raw_disk_reads_seeks_and_writes(tmp_path):
    path = tmp_path / "raw.img"
    data = os.urandom(10000)
    path.write_bytes(data)
    with vhdkit.open(path, "r+", format="raw") as disk:
        assert isinstance(disk, RawDisk) and disk.size == 10000
        assert disk.read(10) == data[:10] and disk.tell() == 10
        disk.seek(-5, io.SEEK_END)
        assert disk.read() == data[-5:]
        assert disk.read(5) == b""
        assert disk.pread(9990, 100) == data[9990:]
        disk.pwrite(100, b"abc")
        with pytest.raises(ValueError):
            disk.pwrite(9999, b"xy")
    assert path.read_bytes()[100:103] == b"abc"


def test_read_only_disk_refuses_writes(tmp_path):
    path = tmp_path / "raw.img"
    path.write_bytes(bytes(100))
    with vhdkit.open(path) as disk:
        with pytest.raises(ReadOnlyError):
            disk.write(b"x")
        assert not disk.writable()


def test_closed_disk_refuses_io(tmp_path):
    path = tmp_path / "raw.img"
    path.write_bytes(bytes(100))
    disk = vhdkit.open(path)
    disk.close()
    with pytest.raises(ValueError):
        disk.pread(0, 1)


def test_raw_extents_follow_holes(tmp_path):
    path = tmp_path / "sparse.img"
    with open(path, "wb") as f:
        f.truncate(8 << 20)
        f.seek(4 << 20)
        f.write(b"x" * 4096)
    with RawDisk(LocalStore(path)) as disk:
        extents = list(disk.extents())
    data = [e for e in extents if e.state is ExtentState.DATA]
    assert len(data) == 1 and data[0].offset <= 4 << 20 < data[0].offset + data[0].length
    assert sum(e.length for e in extents) == 8 << 20
    assert extents[0].state is ExtentState.UNALLOCATED
