"""``vhdkit serve`` and ``vhdkit migrate`` with outside programs as the guest: qemu-io, qemu-img,
nbdinfo, nbdcopy, and a libnbd writer in another process that keeps writing through the pivot."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vhdkit

from ..conftest import require_tool, run, unavailable
from ..test_cli import vhdkit_cmd
from .test_mirror import SIZE, make_source

GUEST = Path(__file__).with_name("nbd_guest.py")


def vhdkit_argv() -> list[str]:
    exe = shutil.which("vhdkit", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "vhdkit"]


class Served:
    """``vhdkit serve IMAGE`` in its own process, with its NBD socket and control socket."""

    def __init__(self, image: Path, where: Path) -> None:
        self.nbd, self.control = where / "nbd.sock", where / "ctl.sock"
        self.uri = f"nbd+unix:///?socket={self.nbd}"
        self.proc = subprocess.Popen(vhdkit_argv() + ["serve", str(image), "--nbd", f"unix:{self.nbd}",
                                                      "--control", str(self.control)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not self._answers():  # (a socket file alone may be left by a process killed earlier)
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"vhdkit serve did not start: {self.proc.communicate(timeout=5)}")
            time.sleep(0.02)

    def _answers(self) -> bool:
        import socket

        for path in (self.nbd, self.control):
            with socket.socket(socket.AF_UNIX) as s:
                try:
                    s.connect(str(path))
                except OSError:
                    return False
        return True

    def stop(self) -> tuple[int, str, str]:
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out, err


def need_libnbd() -> None:
    require_tool("nbdinfo")
    if subprocess.run(["/usr/bin/python3", "-c", "import nbd"], capture_output=True).returncode != 0:
        unavailable("python3-libnbd is not installed (scripts/test.sh installs it)")


def test_outside_clients_read_write_and_map_the_export(tmp_path):
    require_tool("qemu-io")
    need_libnbd()
    image = tmp_path / "disk.vhdx"
    shadow = make_source(image, "vhdx")
    served = Served(image, tmp_path)
    try:
        info = json.loads(run("nbdinfo", "--json", served.uri).stdout)
        export = info["exports"][0]
        assert export["export-size"] == SIZE and export["can_flush"] and export["can_fua"]
        assert "base:allocation" in export["contexts"]
        mapped = json.loads(run("nbdinfo", "--map", "--json", served.uri).stdout)
        with vhdkit.open(image, force_share=True) as disk:  # the map is the image's own extents
            holes = {(e.offset, e.length) for e in disk.extents() if e.state != vhdkit.ExtentState.DATA}
        assert holes and holes == {(m["offset"], m["length"]) for m in mapped if m["type"] & 1}
        run("qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 64k", "-c", "write -z 5M 4k", "-c", "flush", served.uri)
        shadow[1 << 20 : (1 << 20) + 65536] = b"\x5a" * 65536
        shadow[5 << 20 : (5 << 20) + 4096] = bytes(4096)
        (tmp_path / "expected.raw").write_bytes(shadow)
        assert run("qemu-img", "compare", "-f", "raw", "-F", "raw", served.uri, tmp_path / "expected.raw",
                   check=False).returncode == 0
        run("nbdcopy", served.uri, tmp_path / "copied.raw")
        assert (tmp_path / "copied.raw").read_bytes() == bytes(shadow)
    finally:
        rc, _, err = served.stop()
    assert rc == 0, err
    assert run("qemu-img", "check", image, check=False).returncode == 0  # closed clean (log empty)
    assert run("qemu-img", "compare", "-f", "vhdx", "-F", "raw", image, tmp_path / "expected.raw",
               check=False).returncode == 0


def live_migration(tmp_path: Path, src_fmt: str, target: str, target_local: Path, rate: int = 200,
                   *more: str) -> dict:
    need_libnbd()
    require_tool("qemu-img")
    image = tmp_path / f"src.{src_fmt}"
    shadow_path = tmp_path / "shadow.raw"
    shadow_path.write_bytes(make_source(image, src_fmt))
    served = Served(image, tmp_path)
    ready = tmp_path / "guest.ready"
    guest = subprocess.Popen(["/usr/bin/python3", str(GUEST), "--uri", served.uri, "--shadow", str(shadow_path),
                              "--rate", str(rate), "--ready-file", str(ready)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not ready.exists():
            assert guest.poll() is None, guest.communicate()
            time.sleep(0.02)
        time.sleep(0.3)
        moved = vhdkit_cmd("migrate", "--control", str(served.control), "--to", target, "--complete", "--json", *more)
        assert moved.returncode == 0, moved.stderr
        time.sleep(0.3)  # the guest goes on writing, now to the target
    finally:
        guest.send_signal(signal.SIGTERM)
        out, err = guest.communicate(timeout=30)
        rc, _, serve_err = served.stop()
    assert guest.returncode == 0 and int(out) > 50, err
    assert rc == 0, serve_err
    job = json.loads(moved.stdout)
    assert job["state"] == "completed" and job["pause_ms"] is not None
    fmt = {"vhdx": "vhdx", "vhd": "vpc", "raw": "raw"}[target_local.suffix.lstrip(".")]
    same = run("qemu-img", "compare", "-f", fmt, "-F", "raw", target_local, shadow_path, check=False)
    assert same.returncode == 0, same.stdout + same.stderr  # first content + every acknowledged write
    if fmt != "raw":
        assert run("qemu-img", "check", "-f", fmt, target_local, check=False).returncode in (0, 63)
    return job


@pytest.mark.parametrize("src_fmt, dst", [("raw", "vhdx"), ("vhd", "vhdx"), ("vhdx", "vhd"), ("vhdx", "raw")])
def test_live_migration_local_to_local(tmp_path, src_fmt, dst):
    target = tmp_path / "moved" / f"dst.{dst}"
    target.parent.mkdir()
    job = live_migration(tmp_path, src_fmt, str(target), target)
    assert job["source"].endswith(f"src.{src_fmt}") and (tmp_path / f"src.{src_fmt}").exists()


@pytest.mark.parametrize("src_fmt", ["raw", "vhd", "vhdx"])
def test_live_migration_to_an_smb_share_deleting_the_source(tmp_path, smb_env, src_fmt):
    samba = smb_env
    name = f"moved-{os.urandom(4).hex()}.vhdx"
    job = live_migration(tmp_path, src_fmt, samba.url("share1", name), samba.share_path("share1") / name, 200,
                         "--delete-source")
    assert job["target"].startswith("smb://") and job["source_deleted"]
    assert not (tmp_path / f"src.{src_fmt}").exists()  # only after the verified switch-over


def test_migrate_refuses_clearly_and_the_guest_stays(tmp_path):
    image = tmp_path / "disk.raw"
    make_source(image, "raw")
    served = Served(image, tmp_path)
    try:
        nothing = vhdkit_cmd("migrate", "--control", str(served.control), "--complete")
        assert nothing.returncode == 1 and "no migration" in nothing.stderr
        exists = tmp_path / "exists.vhdx"
        exists.write_bytes(b"x")
        refused = vhdkit_cmd("migrate", "--control", str(served.control), "--to", str(exists))
        assert refused.returncode == 1 and "exists" in refused.stderr and exists.read_bytes() == b"x"
        status = vhdkit_cmd("migrate", "--control", str(served.control), "--status", "--json")
        assert json.loads(status.stdout)["job"] is None
    finally:
        rc, _, err = served.stop()
    assert rc == 0, err
