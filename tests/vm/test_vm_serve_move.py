"""A VM run by `vhdkit vm serve` (one NBD export per disk) while outside guests (libnbd, other
processes) write to both disks, moved by `vhdkit vm move --control` from a local folder onto the
tests' Samba share: one switch-over for the VM, every acknowledged write on the moved disks,
chains open there, the source removed only after the move was verified."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import vhdkit
from vhdkit.vm import load

from ..copy.test_serve import GUEST, need_libnbd, vhdkit_argv
from ..test_cli import vhdkit_cmd
from .conftest import share_folder
from .test_move import make_vm, qemu_reads_chains


def test_a_served_vm_moves_onto_a_share_while_nbd_guests_write(tmp_path, samba, monkeypatch):
    need_libnbd()
    monkeypatch.setenv("VHDKIT_SMB_PASSWORD", samba.password)
    vm = make_vm(tmp_path / "old" / "web01")
    shadows = []
    for i, disk in enumerate(vm.disks):  # the guests' view of each disk before anything runs
        with vhdkit.open(disk.chain[0], allowed_parent_dirs=[vm.folder]) as d:
            shadow = tmp_path / f"shadow{i}.raw"
            shadow.write_bytes(d.pread(0, d.size))
            shadows.append(shadow)
    nbd, control = tmp_path / "nbd", tmp_path / "vm.ctl"
    served = subprocess.Popen([*vhdkit_argv(), "vm", "serve", vm.folder, "--nbd-dir", str(nbd), "--control",
                               str(control)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    guests = []
    try:
        line = served.stdout.readline() if served.stdout else ""
        assert line.startswith("running web01"), line + served.stderr.read()
        for i, name in enumerate(("IDE0-0", "SCSI0-0")):
            ready = tmp_path / f"guest{i}.ready"
            guests.append((subprocess.Popen(["/usr/bin/python3", str(GUEST), "--uri", f"nbd+unix:///?socket={nbd / name}.sock",
                                             "--shadow", str(shadows[i]), "--rate", "150", "--seed", str(i + 3),
                                             "--ready-file", str(ready)], stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True), ready))
        deadline = time.monotonic() + 30
        while not all(ready.exists() for _, ready in guests):
            assert time.monotonic() < deadline and all(g.poll() is None for g, _ in guests)
            time.sleep(0.02)
        time.sleep(0.3)
        share = share_folder(samba, "share1", tmp_path.name)
        moved = vhdkit_cmd("vm", "move", "--control", str(control), "--type", "live-storage", "--to", share,
                           "--delete-source", "--json")
        assert moved.returncode == 0, moved.stderr
        report = json.loads(moved.stdout)
        assert report["pause_ms"] is not None and report["source_deleted"] and not os.path.exists(vm.folder)
        time.sleep(0.3)  # the guests go on writing, now on the share
    finally:
        written = []
        for guest, _ in guests:
            guest.send_signal(signal.SIGTERM)
            out, err = guest.communicate(timeout=30)
            assert guest.returncode == 0, err
            written.append(int(out))
        served.send_signal(signal.SIGTERM)
        served.communicate(timeout=60)
    assert all(n > 50 for n in written), written
    here = load(samba.share_path("share1") / tmp_path.name / "web01")
    assert [len(d.chain) for d in here.disks] == [3, 1] and not any(d.problem for d in here.disks)
    for disk, shadow in zip(here.disks, shadows):
        with vhdkit.open(disk.chain[0], allowed_parent_dirs=[here.folder]) as d:
            assert d.pread(0, d.size) == shadow.read_bytes()  # first content + every acknowledged write
    qemu_reads_chains(here)


def test_a_served_move_reports_its_steps_and_can_be_cancelled(tmp_path):
    """--status while the disks mirror (held to 1 MiB/s), --cancel before the switch-over: the
    move fails, the destination is gone, the VM goes on from where it was; --events streams steps."""
    vm = make_vm(tmp_path / "old" / "web01", layer_mib=8)
    nbd, control = tmp_path / "nbd", tmp_path / "vm.ctl"
    served = subprocess.Popen([*vhdkit_argv(), "vm", "serve", vm.folder, "--nbd-dir", str(nbd), "--control",
                               str(control)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert served.stdout is not None and served.stdout.readline().startswith("running web01")
        (tmp_path / "new").mkdir()
        moving = subprocess.Popen([*vhdkit_argv(), "vm", "move", "--control", str(control), "--type", "live-storage",
                                   "--to", str(tmp_path / "new"), "--speed", "1M"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while True:
            status = json.loads(vhdkit_cmd("vm", "move", "--control", str(control), "--status").stdout)
            if status["moving"] and status["moving"]["event"] == "mirroring":
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.05)
        assert status["moving"]["total"] > 0
        cancelled = vhdkit_cmd("vm", "move", "--control", str(control), "--cancel")
        assert cancelled.returncode == 0 and '"cancelled": 2' in cancelled.stdout, cancelled.stdout + cancelled.stderr
        _, err = moving.communicate(timeout=60)
        assert moving.returncode == 1 and "cancelled" in err, err
        assert not (tmp_path / "new" / "web01").exists()
        status = json.loads(vhdkit_cmd("vm", "move", "--control", str(control), "--status").stdout)
        assert all(name.startswith(vm.folder) for name in status["disks"].values()) and status["moving"] is None
    finally:
        served.send_signal(signal.SIGTERM)
        served.communicate(timeout=60)
    events = subprocess.run([*vhdkit_argv(), "vm", "move", vm.folder, "--type", "live-storage", "--to",
                             str(tmp_path / "new"), "--events"], capture_output=True, text=True, timeout=120)
    assert events.returncode == 0, events.stderr
    steps = [json.loads(line)["event"] for line in events.stdout.splitlines() if line.startswith("{")]
    assert steps[0] == "copying" and steps[-3:] == ["relinked", "written", "done"], steps
