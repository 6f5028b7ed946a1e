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
from .test_move import make_vm


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
        share = f"smb://{samba.user}@127.0.0.1:{samba.port}/share1"
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
    here = load(samba.share_path("share1") / "web01")
    assert [len(d.chain) for d in here.disks] == [3, 1] and not any(d.problem for d in here.disks)
    for disk, shadow in zip(here.disks, shadows):
        with vhdkit.open(disk.chain[0], allowed_parent_dirs=[here.folder]) as d:
            assert d.pread(0, d.size) == shadow.read_bytes()  # first content + every acknowledged write
