"""Moving a VM read from its configuration: every file, checkpoint chains included, with the copied
chains pointed at their new places and the configuration rewritten; guests the engine runs keep
writing and switch in one pause; a killed move leaves one complete home and a rerun finishes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time

import pytest

import vhdkit
from vhdkit.errors import RefusedError
from vhdkit.guest import GuestDisk
from vhdkit.placement.locations import Host, Identity
from vhdkit.vm import load
from vhdkit.vm.move import JOURNAL, move_vm

from ..copy.guestload import StampedWriter
from ..conftest import require_tool, run_on_terminal
from ..copy.test_serve import vhdkit_argv
from ..test_cli import vhdkit_cmd
from .conftest import share_folder
from .xml_fixture import configuration, write

MiB = 1 << 20
HOST = Host("hosta", local=True)


def make_vm(root, layer_mib: int = 1, ext: str = "vhdx"):
    """web01: the OS disk with two checkpoints (``layer_mib`` written at each level), a data disk;
    2012 R2 XML. ``ext`` "vhd": the 2008-era VHD and .avhd checkpoints."""
    disks = root / "Virtual Hard Disks"
    disks.mkdir(parents=True)
    n = layer_mib * MiB
    with vhdkit.create(disks / f"os.{ext}", 128 * MiB) as d:
        d.pwrite(0, b"O" * n)
    with vhdkit.create(disks / f"os_1.a{ext}", parent=disks / f"os.{ext}") as d:
        d.pwrite(n, b"1" * n)
    with vhdkit.create(disks / f"os_2.a{ext}", parent=disks / f"os_1.a{ext}") as d:
        d.pwrite(2 * n, b"2" * n)
    with vhdkit.create(disks / f"data.{ext}", 128 * MiB) as d:
        d.pwrite(3 * n, b"D" * n)
    write(root / "Virtual Machines" / "A.xml", configuration(
        "web01", ide=[rf"C:\VMs\web01\Virtual Hard Disks\os_2.a{ext}"], scsi=[rf"C:\VMs\web01\Virtual Hard Disks\data.{ext}"]))
    return load(root)


def qemu_reads_chains(vm) -> None:
    """``qemu-img info --backing-chain`` on every layer, as qemu can: a whole disk (a chain's base,
    a disk without checkpoints) reads with its size and no backing file; qemu does not open
    differencing VHDX (ENOTSUP, not damage); a differencing VHD it opens as a VHD of its own."""
    require_tool("qemu-img")
    for disk in vm.disks:
        for layer in disk.chain:
            done = subprocess.run(["qemu-img", "info", "-U", "--backing-chain", "--output=json", layer],
                                  capture_output=True, text=True)
            with vhdkit.open(layer, resolve_parents=False, force_share=True) as opened:
                differencing, size = opened.info().type == "differencing", opened.size
            if differencing and layer.endswith(".avhdx"):
                assert done.returncode != 0 and "Operation not supported" in done.stderr, (layer, done.stderr)
                continue
            assert done.returncode == 0, (layer, done.stderr)
            chain = json.loads(done.stdout)
            assert [c["virtual-size"] for c in chain] == [size] and "backing-filename" not in chain[0], layer


def contents(vm) -> list[str]:
    out = []
    for disk in vm.disks:
        with vhdkit.open(disk.chain[0], allowed_parent_dirs=[vm.folder]) as d:
            out.append(hashlib.sha256(d.pread(0, d.size)).hexdigest())
    return out


def test_live_storage_of_a_vm_that_is_off(tmp_path):
    vm = make_vm(tmp_path / "old" / "web01")
    before = contents(vm)
    (tmp_path / "new").mkdir()
    report = move_vm(vm, "live-storage", to=str(tmp_path / "new"), source_host=HOST)
    moved = load(tmp_path / "new" / "web01")
    assert [len(d.chain) for d in moved.disks] == [3, 1] and not any(d.problem for d in moved.disks)
    assert all(layer.startswith(str(tmp_path / "new")) for d in moved.disks for layer in d.chain)
    assert contents(moved) == before
    assert moved.disks[0].path == str(tmp_path / "new" / "web01" / "Virtual Hard Disks" / "os_2.avhdx")
    with vhdkit.open(moved.disks[0].chain[1], resolve_parents=False) as mid:  # relative and absolute rewritten
        paths = dict(mid.parent_paths())
    assert paths["relative_path"] == ".\\os.vhdx" and paths["absolute_win32_path"] == moved.disks[0].chain[2]
    assert report.files_copied == 5 and not report.source_deleted and os.path.isdir(vm.folder)
    assert not (tmp_path / "new" / "web01" / JOURNAL).exists()


def test_vm_move_shows_its_progress_on_a_terminal(tmp_path):
    vm = make_vm(tmp_path / "old" / "web01", layer_mib=4)
    (tmp_path / "new").mkdir()
    status, text = run_on_terminal([*vhdkit_argv(), "vm", "move", vm.folder, "--type", "live-storage", "--to",
                                    str(tmp_path / "new")])
    assert status == 0, text
    assert "moving [" in text and "100.0%" in text and "[" + "#" * 30 + "]" in text, text
    assert "data.vhdx" in text and "A.xml" in text  # the file being copied (the first, the last)
    assert "live-storage: web01" in text  # then the report
    (tmp_path / "back").mkdir()
    piped = vhdkit_cmd("vm", "move", str(tmp_path / "new" / "web01"), "--type", "live-storage", "--to",
                       str(tmp_path / "back"))
    assert piped.returncode == 0 and "%" not in piped.stderr, piped.stderr


def running_guests(vm, rate: int, seed: int):
    """Each disk's top opened as the engine's guest would hold it, and a writer on each."""
    guests, shadows, writers = {}, {}, []
    for disk in vm.disks:
        opened = vhdkit.open(disk.chain[0], "r+", allowed_parent_dirs=[vm.folder])
        shadows[disk.chain[0]] = bytearray(opened.pread(0, opened.size))
        guests[disk.chain[0]] = GuestDisk(opened)
        writers.append(StampedWriter(guests[disk.chain[0]], shadows[disk.chain[0]], rate=rate,
                                     seed=seed + len(writers)).start())
    return guests, shadows, writers


@pytest.mark.parametrize("ext", ["vhdx", "vhd"])
def test_live_storage_while_the_guest_writes_both_disks(tmp_path, ext):
    vm = make_vm(tmp_path / "old" / "web01", ext=ext)
    guests, shadows, writers = running_guests(vm, rate=150, seed=0)
    (tmp_path / "new").mkdir()
    time.sleep(0.2)
    report = move_vm(vm, "live-storage", to=str(tmp_path / "new"), source_host=HOST, guests=guests,
                     delete_source=True)
    time.sleep(0.2)  # the guests go on writing, now at the destination
    for writer in writers:
        writer.stop()
        assert not writer.errors and writer.acknowledged > 10
    assert report.pause_ms is not None and report.source_deleted and not os.path.exists(vm.folder)
    for path, guest in guests.items():
        assert guest.name.startswith(str(tmp_path / "new")), guest.name
        assert guest.pread(0, guest.size) == bytes(shadows[path])  # every acknowledged write
        guest.close()
    moved = load(tmp_path / "new" / "web01")  # the source is gone: the chains open from their new place
    assert [len(d.chain) for d in moved.disks] == [3, 1] and not any(d.problem for d in moved.disks)
    for disk, path in zip(moved.disks, guests):
        with vhdkit.open(disk.chain[0], allowed_parent_dirs=[moved.folder]) as d:
            assert d.pread(0, d.size) == bytes(shadows[path])
    qemu_reads_chains(moved)


def test_refusals_leave_nothing_behind(tmp_path):
    vm = make_vm(tmp_path / "old" / "web01")
    with pytest.raises(RefusedError, match="cannot write to"):
        move_vm(vm, "live-storage", to=str(tmp_path / "nowhere"), source_host=HOST)
    (tmp_path / "new").mkdir()
    (tmp_path / "old" / "web01" / "Virtual Hard Disks" / "data.vhdx").unlink()
    with pytest.raises(RefusedError, match="cannot be read here"):
        move_vm(load(tmp_path / "old" / "web01"), "live-storage", to=str(tmp_path / "new"), source_host=HOST)
    assert list((tmp_path / "new").iterdir()) == []
    with pytest.raises(RefusedError, match="own storage"):
        move_vm(vm, "live", source_host=HOST, destination_host=Host("hostb"))


def _start_move(vm, to):
    argv = [*vhdkit_argv(), "vm", "move", str(vm.folder), "--type", "live-storage", "--to", str(to),
            "--delete-source", "--json"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dest = to / "web01"
    while not dest.exists() and proc.poll() is None:  # the move proper begins: its folder appears
        time.sleep(0.0005)
    return argv, proc, dest


def test_a_killed_move_leaves_one_complete_home_and_a_rerun_finishes(tmp_path):
    """Ten SIGKILLs spread over the move itself (timed from its folder appearing, across one
    uninterrupted run's length): each leaves a whole VM at the source or the destination."""
    big = lambda root: make_vm(root, layer_mib=24)  # noqa: E731 - long enough to be cut at ten places
    vm = big(tmp_path / "timing" / "old" / "web01")
    (tmp_path / "timing" / "new").mkdir()
    _, proc, _ = _start_move(vm, tmp_path / "timing" / "new")
    started = time.monotonic()
    proc.communicate(timeout=120)
    length = time.monotonic() - started
    assert proc.returncode == 0
    seen = set()
    for point in range(10):
        root = tmp_path / f"cut{point}"
        vm = big(root / "old" / "web01")
        before = contents(vm)
        (root / "new").mkdir()
        argv, proc, dest = _start_move(vm, root / "new")
        time.sleep(length * point / 10)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        journal = json.loads((dest / JOURNAL).read_text()) if (dest / JOURNAL).exists() else None
        seen.add(journal["phase"] if journal else ("done" if proc.returncode == 0 else "not begun"))
        if journal is not None and journal["phase"] == "written" or journal is None and not os.path.exists(vm.folder):
            home = load(dest)  # the move got that far: the destination is the VM's home
        else:
            home = load(vm.folder)  # it did not: the source is, untouched
        assert contents(home) == before, point  # a usable VM, whole
        again = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 or not os.path.exists(vm.folder) and journal is None, again.stderr
        moved = load(dest)
        assert contents(moved) == before and not os.path.exists(vm.folder) and not (dest / JOURNAL).exists()
    assert "copying" in seen, seen  # the cuts land inside the move, not only around it


@pytest.mark.parametrize("ext", ["vhdx", "vhd"])
def test_live_storage_onto_the_samba_share_while_the_guest_writes(tmp_path, samba, monkeypatch, ext):
    monkeypatch.setenv("VHDKIT_SMB_PASSWORD", samba.password)
    vm = make_vm(tmp_path / "old" / "web01", ext=ext)
    guests, shadows, writers = running_guests(vm, rate=100, seed=7)
    share = share_folder(samba, "share1", f"{tmp_path.name}-{ext}")
    time.sleep(0.2)
    try:
        host = Host("hosta", Identity(samba.user, samba.password), local=True)
        report = move_vm(vm, "live-storage", to=share, source_host=host, guests=guests, delete_source=True)
        time.sleep(0.2)
    finally:
        for writer in writers:
            writer.stop()
    assert all(not w.errors and w.acknowledged > 10 for w in writers)
    assert report.pause_ms is not None and report.source_deleted and report.destination == f"{share}/web01"
    for path, guest in guests.items():
        assert guest.name.startswith("smb://"), guest.name
        assert guest.pread(0, guest.size) == bytes(shadows[path])
        guest.close()
    folder = samba.share_path("share1") / f"{tmp_path.name}-{ext}" / "web01"  # the share's files, as the server keeps them
    moved = load(folder)
    assert moved.disks[0].path == rf"\\127.0.0.1\share1\{tmp_path.name}-{ext}\web01\Virtual Hard Disks\os_2.a{ext}"
    assert [len(d.chain) for d in moved.disks] == [3, 1] and not any(d.problem for d in moved.disks)
    qemu_reads_chains(moved)
    for disk, path in zip(moved.disks, guests):  # through SMB, as a host would open it
        url = f"{share}/web01/Virtual Hard Disks/{os.path.basename(disk.chain[0])}"
        with vhdkit.open(url, allowed_parent_dirs=[f"{share}/web01"]) as d:
            assert d.pread(0, d.size) == bytes(shadows[path])


def test_live_vsm_onto_a_share_prints_the_lookup_records_that_move(tmp_path, samba, monkeypatch):
    """A VM on a host's own disks moves with its storage to another host (Live VSM: the share is
    the destination host's); with a netvirt model, the records whose PA changes are printed."""
    from ..preflight.models import netvirt_model

    monkeypatch.setenv("VHDKIT_SMB_PASSWORD", samba.password)
    vm = make_vm(tmp_path / "old" / "web01")
    model = netvirt_model(tmp_path / "model.json", {"hosta": "192.0.2.11", "hostb": "192.0.2.12"}, "nvgre")
    doc = json.loads(model.read_text())
    doc["vm_networks"][0]["subnets"][0].update(start="10.1.1.10", end="10.1.1.200")
    doc["vms"] = [{"name": "web01", "host": "hosta", "nics": [{"network": "Contoso", "subnet": "front"}]}]
    model.write_text(json.dumps(doc))
    share = share_folder(samba, "share2", tmp_path.name)
    done = vhdkit_cmd("vm", "move", str(vm.folder), "--type", "live-vsm", "--to", share, "--host", "hostb",
                      "--netvirt", str(model), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["destination"] == f"{share}/web01" and report["kind"] == "live-vsm"
    [change] = report["lookup_changes"]
    assert (change["before"]["ProviderAddress"], change["after"]["ProviderAddress"]) == ("192.0.2.11", "192.0.2.12")
    unknown = vhdkit_cmd("vm", "move", str(vm.folder), "--type", "live-vsm", "--to", share, "--host", "hostc",
                         "--netvirt", str(model))
    assert unknown.returncode == 1 and "hostc" in unknown.stderr  # refused before anything moved


def test_a_running_disk_alone_in_its_folder_gets_its_folder_at_the_destination(tmp_path):
    """The only file of "Virtual Hard Disks" is the disk the guest writes: nothing is copied
    there, yet its folder must exist at the destination for the mirror's new image."""
    root = tmp_path / "old" / "solo"
    (root / "Virtual Hard Disks").mkdir(parents=True)
    vhdkit.create(root / "Virtual Hard Disks" / "solo.vhdx", 16 * MiB).close()
    write(root / "Virtual Machines" / "A.xml", configuration("solo", scsi=[r"C:\VMs\solo\Virtual Hard Disks\solo.vhdx"]))
    vm = load(root)
    guests, shadows, writers = running_guests(vm, rate=100, seed=3)
    (tmp_path / "new").mkdir()
    try:
        report = move_vm(vm, "live-storage", to=str(tmp_path / "new"), source_host=HOST, guests=guests)
    finally:
        for writer in writers:
            writer.stop()
    assert report.pause_ms is not None and report.files_copied == 2
    for path, guest in guests.items():
        assert guest.name == str(tmp_path / "new" / "solo" / "Virtual Hard Disks" / "solo.vhdx")
        assert guest.pread(0, guest.size) == bytes(shadows[path])
        guest.close()
