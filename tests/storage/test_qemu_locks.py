"""Locks QEMU sees: vhdkit and qemu-io / qemu-img / qemu-nbd each refuse an image the other writes
(both directions), readers keep writers out, ``-U``/``--force-share`` reads anyway, and opens of
one file within one process share their locks instead of refusing each other."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vhdkit
from vhdkit.errors import ImageInUseError

from ..conftest import require_tool, run
from ..copy.test_serve import Served
from ..test_cli import vhdkit_cmd

MiB = 1024 * 1024


def make_image(path: Path, size: int = 64 * MiB) -> Path:
    vhdkit.create(path, size=size).close()
    return path


def ofd_locks_on(path: Path) -> list[tuple[str, int]]:
    """(READ/WRITE, byte) of every OFD lock held on ``path``'s inode, from /proc/locks."""
    inode = os.stat(path).st_ino
    out = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1] == "OFDLCK" and fields[5].endswith(f":{inode}"):
            out.extend((fields[3], b) for b in range(int(fields[6]), int(fields[7]) + 1))
    return sorted(out)


class QemuNbd:
    """qemu-nbd serving an image (``read_only``: -r), until stopped."""

    def __init__(self, image: Path, where: Path, *, read_only: bool = False) -> None:
        self.sock = where / "qemu-nbd.sock"
        argv = [require_tool("qemu-nbd"), "-f", "vhdx", "-k", str(self.sock), str(image)]
        self.proc = subprocess.Popen(argv + (["-r"] if read_only else []), stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while True:
            with socket.socket(socket.AF_UNIX) as s:
                try:
                    s.connect(str(self.sock))
                    break
                except OSError:
                    pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"qemu-nbd did not start: {self.proc.communicate(timeout=5)}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=30)


def test_vhdkit_writer_takes_qemus_bytes_and_qemu_refuses_it(tmp_path):
    require_tool("qemu-io")
    image = make_image(tmp_path / "d.vhdx")
    served = Served(image, tmp_path)
    try:
        # The bytes a qemu VHDX writer takes (measured: qemu-io, qemu-nbd), shared locks all.
        assert ofd_locks_on(image) == [("READ", b) for b in (100, 101, 103, 201, 203)]
        wrote = run("qemu-io", "-f", "vhdx", "-c", "write -P 0x5a 0 4k", image, check=False)
        assert wrote.returncode != 0 and 'Failed to get "write" lock' in wrote.stderr
        looked = run("qemu-img", "info", image, check=False)
        assert looked.returncode != 0 and 'Failed to get shared "write" lock' in looked.stderr
        assert run("qemu-img", "info", "-U", image, check=False).returncode == 0
    finally:
        served.stop()
    assert ofd_locks_on(image) == []
    assert run("qemu-io", "-f", "vhdx", "-c", "write -P 0x5a 0 4k", image).returncode == 0


def test_qemu_writer_keeps_vhdx_writers_and_readers_out(tmp_path):
    image = make_image(tmp_path / "d.vhdx")
    before = image.read_bytes()
    qemu = QemuNbd(image, tmp_path)
    try:
        resized = vhdkit_cmd("resize", str(image), "--size", "128M")
        assert resized.returncode != 0 and "in use by another process" in resized.stderr
        with pytest.raises(ImageInUseError, match="does not share the write permission"):
            vhdkit.open(image, "r+")
        checked = vhdkit_cmd("check", str(image), "--json")
        report = json.loads(checked.stdout)["images"][0]
        assert checked.returncode == 1 and report["verdict"] == "in use", checked.stdout
        shared = vhdkit_cmd("info", "-U", "--json", str(image))
        assert shared.returncode == 0 and json.loads(shared.stdout)["virtual_size"] == 64 * MiB
    finally:
        qemu.stop()
    assert image.read_bytes() == before  # nothing was changed while refused


def test_qemu_reader_keeps_vhdkit_writers_out_not_readers(tmp_path):
    image = make_image(tmp_path / "d.vhdx")
    qemu = QemuNbd(image, tmp_path, read_only=True)
    try:
        compacted = vhdkit_cmd("compact", str(image))
        assert compacted.returncode != 0 and "does not share the write permission" in compacted.stderr
        assert vhdkit_cmd("info", str(image)).returncode == 0
        assert vhdkit_cmd("check", str(image)).returncode == 0
    finally:
        qemu.stop()


def test_check_while_another_process_writes_says_in_use(tmp_path):
    """A check during a compact (or any writer) must not read half-written metadata as damage."""
    image = make_image(tmp_path / "d.vhdx")
    writer = subprocess.Popen([sys.executable, "-c", "import sys, vhdkit\n"
                               f"d = vhdkit.open({str(image)!r}, 'r+')\nprint('open', flush=True)\nsys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "open\n"
        checked = vhdkit_cmd("check", str(image))
        assert checked.returncode == 1 and "in use" in checked.stdout, checked.stdout
        assert vhdkit.check(image).verdict == "in use"
        assert "holds the write permission" in (vhdkit.check(image).failure or "")
    finally:
        writer.communicate("", timeout=30)
    assert vhdkit.check(image).verdict == "clean"


def test_opens_in_one_process_share_their_locks(tmp_path):
    """OFD locks belong to open file descriptions; a process's own opens must not refuse each
    other (merge reads the chain while it writes the parent), yet other processes see them all."""
    image = make_image(tmp_path / "d.vhdx")
    writer = vhdkit.open(image, "r+")
    reader = vhdkit.open(image)
    assert run("qemu-img", "info", image, check=False).returncode != 0
    writer.close()
    assert ofd_locks_on(image) == [("READ", b) for b in (100, 201, 203)]  # the reader's alone
    assert run("qemu-img", "info", image).returncode == 0  # readers share
    assert run("qemu-io", "-f", "vhdx", "-c", "write 0 4k", image, check=False).returncode != 0
    reader.close()
    assert ofd_locks_on(image) == []
    assert run("qemu-io", "-f", "vhdx", "-c", "write 0 4k", image).returncode == 0
