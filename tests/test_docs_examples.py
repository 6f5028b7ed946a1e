"""The API guide's examples (docs/examples/) run as a user runs them, in a fresh folder; each
checks its own results (asserts) and the test checks what it printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import vhdkit

from .vm.xml_fixture import configuration, write

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def run_example(name: str, cwd: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_mirror_a_disk_whose_guest_io_the_engine_owns(tmp_path):
    out = run_example("mirror_a_disk.py", tmp_path)
    assert "switched over in" in out and "are all on the target" in out
    assert "events: copying, paused" in out and "completed" in out
    with vhdkit.open(tmp_path / "moved" / "vm1.vhdx") as moved:  # and the copy is a disk on its own
        assert moved.pread(0, 11) == b"boot sector" and moved.size == 64 << 20


def test_open_a_vm_and_plan_a_move(tmp_path):
    root = tmp_path / "web01"
    (root / "Virtual Hard Disks").mkdir(parents=True)
    vhdkit.create(root / "Virtual Hard Disks" / "os.vhdx", 16 << 20).close()
    vhdkit.create(root / "Virtual Hard Disks" / "os_1.avhdx", parent=root / "Virtual Hard Disks" / "os.vhdx").close()
    write(root / "Virtual Machines" / "A.xml", configuration("web01", ide=[r"C:\VMs\web01\Virtual Hard Disks\os_1.avhdx"]))
    (tmp_path / "new").mkdir()
    out = run_example("plan_a_vm_move.py", tmp_path, str(root), str(tmp_path / "new"))
    assert "web01 (hyperv-xml 5.0), generation 1, 2 CPU, 2048 MB" in out
    assert f"{root}/Virtual Hard Disks/os.vhdx" in out  # the checkpoint's parent, found
    assert "live-storage: can be done" in out and "live: refused: Live needs every file" in out


def test_move_a_running_vm(tmp_path):
    root = tmp_path / "web01"
    disks = root / "Virtual Hard Disks"
    disks.mkdir(parents=True)
    with vhdkit.create(disks / "os.vhdx", 32 << 20) as base:
        base.pwrite(20 << 20, b"the base's own data")
    vhdkit.create(disks / "os_1.avhdx", parent=disks / "os.vhdx").close()
    vhdkit.create(disks / "data.vhdx", 32 << 20).close()
    write(root / "Virtual Machines" / "A.xml", configuration("web01", ide=[r"C:\VMs\web01\Virtual Hard Disks\os_1.avhdx"],
                                                             scsi=[r"C:\VMs\web01\Virtual Hard Disks\data.vhdx"]))
    (tmp_path / "new").mkdir()
    out = run_example("move_a_running_vm.py", tmp_path, str(root), str(tmp_path / "new"))
    assert "web01: 4 files to" in out  # the XML, the base, two mirrored tops
    assert "source deleted: True" in out and "chains: [2, 1]" in out
    assert out.count("all there") == 2 and not root.exists()
    with vhdkit.open(tmp_path / "new" / "web01" / "Virtual Hard Disks" / "os_1.avhdx") as moved:  # on its moved base
        assert moved.pread(20 << 20, 19) == b"the base's own data"
