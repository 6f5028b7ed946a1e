"""VMs whose files are on an SMB share, read and moved through SMB as their host reaches them:
Live Storage share -> local folder and share -> share, Live VSM off a share the new host cannot
see, Live between hosts that both reach the share (vhdkit's description then names the new
host), and a destination too small; the guests write throughout, against the tests' real Samba."""

from __future__ import annotations

import os
import time

import pytest

import vhdkit
from vhdkit.errors import RefusedError
from vhdkit.guest import GuestDisk
from vhdkit.placement import DiskSpec, Host, Identity, Location, VmSpec, place
from vhdkit.placement.folders import Folders
from vhdkit.units import MiB
from vhdkit.vm import load
from vhdkit.vm.move import move_vm

from ..copy.guestload import StampedWriter, read_all
from .conftest import share_folder
from .xml_fixture import configuration, write


@pytest.fixture
def hosts(samba, monkeypatch):
    monkeypatch.setenv("VHDKIT_SMB_PASSWORD", samba.password)  # how hosta logs in to the share, as an admin would
    return (Host("hosta", Identity(samba.user, samba.password), local=True),
            Host("hostb", Identity("hostb", samba.other_users["hostb"])))


def placed_vm(samba, hosts, share: str, name: str) -> str:
    """A VM placed by vhdkit on ``share`` (its description, a disk under a checkpoint, a data disk),
    with data in the base before the checkpoint; the VM folder's URL."""
    where = Location(samba.url(share), identity=hosts[0].identity)
    spec = VmSpec(name, ("hosta", "hostb"), (DiskSpec("os.vhdx", 32 * MiB), DiskSpec("data.vhdx", 16 * MiB)),
                  checkpoints=(("os.vhdx", MiB),))
    placed = place(spec, where)
    base = next(p for p in placed.files if p.endswith("os.vhdx"))
    child = next(p for p in placed.files if p.endswith(".avhdx"))
    Folders(where).remove(child)  # the base had content before its checkpoint: write it, take the checkpoint again
    with vhdkit.open(base, "r+") as disk:
        disk.pwrite(0, os.urandom(4 * MiB))
    vhdkit.create(child, format="vhdx", parent=base).close()
    return placed.where


def xml_vm_on(samba, share: str, name: str) -> str:
    """A Hyper-V 2012 R2 VM (XML, UNC paths) written into a folder of ``share``: the OS disk under two
    checkpoints and a data disk; the folder's URL."""
    url = share_folder(samba, share, name)
    root = samba.share_path(share) / name / "web01"
    disks = root / "Virtual Hard Disks"
    disks.mkdir(parents=True)
    with vhdkit.create(disks / "os.vhdx", 64 * MiB) as d:
        d.pwrite(0, b"O" * MiB)
    with vhdkit.create(disks / "os_1.avhdx", parent=disks / "os.vhdx") as d:
        d.pwrite(MiB, b"1" * MiB)
    vhdkit.create(disks / "os_2.avhdx", parent=disks / "os_1.avhdx").close()
    with vhdkit.create(disks / "data.vhdx", 64 * MiB) as d:
        d.pwrite(2 * MiB, b"D" * MiB)
    unc = rf"\\127.0.0.1\{share}\{name}\web01\Virtual Hard Disks"
    write(root / "Virtual Machines" / "A.xml", configuration("web01", ide=[unc + r"\os_2.avhdx"],
                                                             scsi=[unc + r"\data.vhdx"]))
    uid = os.stat(samba.share_path(share) / name).st_uid
    for path in [root, *root.rglob("*")]:
        os.chown(path, uid, -1)
    return f"{url}/web01"


def run_guests(vm):
    guests, writers = {}, []
    for disk in vm.disks:
        guest = GuestDisk(vhdkit.open(disk.chain[0], "r+", allowed_parent_dirs=[vm.folder]))
        guests[disk.chain[0]] = guest
        writers.append(StampedWriter(guest, bytearray(read_all(guest)), rate=120, seed=len(writers)).start())
    time.sleep(0.2)
    return guests, writers


def stopped(writers):
    for writer in writers:
        writer.stop()
        assert not writer.errors and writer.acknowledged > 5, writer.errors
    return writers


def test_vm_show_reads_a_vm_through_smb(samba, hosts):
    folder = xml_vm_on(samba, "share1", "show01")
    vm = load(folder)
    assert vm.folder == folder and vm.config_format == "hyperv-xml"
    assert [len(d.chain) for d in vm.disks] == [3, 1] and not any(d.problem for d in vm.disks)
    assert all(layer.startswith(folder + "/Virtual Hard Disks/") for d in vm.disks for layer in d.chain)


def test_live_storage_from_a_share_to_a_local_folder_while_the_guests_write(samba, hosts, tmp_path):
    folder = xml_vm_on(samba, "share1", "out01")
    vm = load(folder)
    guests, writers = run_guests(vm)
    (tmp_path / "local").mkdir()
    try:
        report = move_vm(vm, "live-storage", to=str(tmp_path / "local"), source_host=hosts[0], guests=guests,
                         delete_source=True)
        time.sleep(0.2)  # on, from the local folder
    finally:
        stopped(writers)
    assert report.source_deleted and not (samba.share_path("share1") / "out01" / "web01").exists()
    moved = load(tmp_path / "local" / "web01")
    assert moved.disks[0].path == str(tmp_path / "local" / "web01" / "Virtual Hard Disks" / "os_2.avhdx")
    for writer, (key, guest) in zip(writers, guests.items()):
        assert guest.name.startswith(str(tmp_path)), guest.name
        assert read_all(guest) == bytes(writer.shadow)
        guest.close()
    for disk, writer in zip(moved.disks, writers):
        with vhdkit.open(disk.chain[0], allowed_parent_dirs=[moved.folder]) as d:
            assert read_all(d) == bytes(writer.shadow)


def test_live_storage_share_to_share_keeps_identities(samba, hosts):
    folder = placed_vm(samba, hosts, "share2", "s2s01")
    vm = load(folder)
    assert [os.path.basename(d.path) for d in vm.disks] == ["os_checkpoint1.avhdx", "data.vhdx"]
    ids = {}
    for disk in vm.disks:
        with vhdkit.open(disk.chain[0], allowed_parent_dirs=[folder]) as d:
            ids[os.path.basename(disk.chain[0])] = d.info().disk_id
    guests, writers = run_guests(vm)
    try:
        report = move_vm(vm, "live-storage", to=samba.url("share1"), source_host=hosts[0], guests=guests)
    finally:
        stopped(writers)
    assert report.destination == samba.url("share1", "s2s01") and not report.source_deleted
    assert (samba.share_path("share2") / "s2s01").is_dir()  # kept: not asked to delete it
    moved = load(report.destination)
    assert moved.host == "hosta"
    for disk, writer in zip(moved.disks, writers):
        with vhdkit.open(disk.chain[0], allowed_parent_dirs=[moved.folder], force_share=True) as d:
            assert d.info().disk_id == ids[os.path.basename(disk.chain[0])]  # the same disks, moved
    for guest, writer in zip(guests.values(), writers):
        assert read_all(guest) == bytes(writer.shadow)
        guest.close()


def test_live_vsm_off_a_share_the_new_host_cannot_see(samba, hosts):
    folder = placed_vm(samba, hosts, "share2", "vsm01")  # hostb may not use share2
    vm = load(folder)
    with pytest.raises(RefusedError, match="hostb cannot write to"):  # nor to where it would go
        move_vm(vm, "live-vsm", to=samba.url("share2"), source_host=hosts[0], destination_host=hosts[1])
    guests, writers = run_guests(vm)
    try:
        report = move_vm(vm, "live-vsm", to=samba.url("share1"), source_host=hosts[0], destination_host=hosts[1],
                         guests=guests, delete_source=True)
    finally:
        stopped(writers)
    assert (report.kind, report.host, report.source_deleted) == ("live-vsm", "hostb", True)
    assert not (samba.share_path("share2") / "vsm01").exists()
    assert load(report.destination).host == "hostb"
    for guest, writer in zip(guests.values(), writers):
        assert read_all(guest) == bytes(writer.shadow)
        guest.close()


def test_live_needs_files_both_hosts_reach_and_then_names_the_new_host(samba, hosts, tmp_path):
    on_share2 = load(placed_vm(samba, hosts, "share2", "live01"))
    with pytest.raises(RefusedError, match=r"hostb cannot write to \\\\127.0.0.1\\share2"):
        move_vm(on_share2, "live", source_host=hosts[0], destination_host=hosts[1])
    local = load(placed_vm(samba, hosts, "share1", "live02"))
    (tmp_path / "here").mkdir()
    move_vm(local, "live-storage", to=str(tmp_path / "here"), source_host=hosts[0])
    with pytest.raises(RefusedError, match="own storage") as refused:
        move_vm(load(tmp_path / "here" / "live02"), "live", source_host=hosts[0], destination_host=hosts[1])
    assert "Live VSM" in str(refused.value)
    events = []
    report = move_vm(local, "live", source_host=hosts[0], destination_host=hosts[1],
                     on_event=lambda event, fields: events.append(event))
    assert (report.kind, report.host, report.files_copied) == ("live", "hostb", 0)
    assert events == ["written", "done"]
    assert load(local.folder).host == "hostb"  # the description on the share says where it runs


def test_a_move_that_does_not_fit_says_so_and_makes_nothing(samba, hosts):
    vm = load(placed_vm(samba, hosts, "share1", "big01"))
    samba.set_free("small", 64 * MiB, 1 * MiB)
    try:
        with pytest.raises(RefusedError, match="too small"):
            move_vm(vm, "live-storage", to=samba.url("small"), source_host=hosts[0])
    finally:
        samba.clear_free("small")
    assert list(samba.share_path("small").iterdir()) == []
