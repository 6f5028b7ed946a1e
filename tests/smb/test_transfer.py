"""Live Storage, Live VSM and Live: a VM placed by vhdkit, running (its guests writing), moved
between a local folder and the tests' Samba shares; every precondition that fails is named."""

from __future__ import annotations

import os
import time

import pytest

import vhdkit
from vhdkit.errors import PlacementError
from vhdkit.placement import DiskSpec, Host, Identity, Location, VmSpec, place
from vhdkit.placement.folders import Folders
from vhdkit.placement.transfer import RunningVm, live, live_storage, live_vsm
from vhdkit.units import MiB

from ..copy.guestload import StampedWriter, read_all


@pytest.fixture
def world(samba, tmp_path):
    hosta = Host("hosta", Identity(samba.user, samba.password), local=True)
    hostb = Host("hostb", Identity("hostb", samba.other_users["hostb"]))
    local = tmp_path / "vms"
    local.mkdir()
    return samba, [hosta, hostb], Location(str(local))


def running_vm(world, name: str, where: Location | None = None):
    """A VM with a system disk under a checkpoint and a data disk, placed and running on hosta,
    its guests writing to both running layers."""
    samba, hosts, local = world
    where = where or local
    spec = VmSpec(name, ("hosta",), (DiskSpec("os.vhdx", 32 * MiB), DiskSpec("data.vhdx", 16 * MiB)),
                  checkpoints=(("os.vhdx", MiB),))
    import vhdkit as vk

    placed = place(spec, where)
    base = next(p for p in placed.files if p.endswith("os.vhdx"))
    child = next(p for p in placed.files if p.endswith(".avhdx"))
    # the system disk had content before its checkpoint was taken: write it, take the checkpoint again
    Folders(where).remove(child)
    with vk.open(base, "r+") as disk:
        disk.pwrite(0, os.urandom(4 * MiB))
    vk.create(child, format="vhdx", parent=base).close()
    vm = RunningVm(where, name, "hosta")
    writers = {}
    for layer, guest in vm.guests.items():
        shadow = bytearray(read_all(guest))
        writers[layer] = StampedWriter(guest, shadow, rate=150, seed=len(layer)).start()
    time.sleep(0.2)
    return vm, writers


def stop(writers):
    for w in writers.values():
        w.stop()
        assert not w.errors, w.errors


def test_live_storage_moves_every_file_to_a_share_while_the_guest_writes(world):
    samba, hosts, local = world
    vm, writers = running_vm(world, "move01")
    source = vm.folder
    share = Location(samba.url("share1"), identity=hosts[0].identity)
    report = live_storage(vm, share, hosts, delete_source=True)
    time.sleep(0.2)  # the guests go on, on the share now
    stop(writers)
    assert report.kind == "live-storage" and report.host == "hosta" and report.source_deleted
    assert report.verified_bytes > 0 and report.pause_ms is not None
    moved = samba.share_path("share1") / "move01"
    assert sorted(str(p.relative_to(moved)) for p in moved.rglob("*") if p.is_file()) == [
        "Virtual Hard Disks/data.vhdx", "Virtual Hard Disks/os.vhdx", "Virtual Hard Disks/os_checkpoint1.avhdx",
        "Virtual Machines/move01.vhdkit.json"]
    assert not os.path.exists(source)  # deleted, after the verified switch-over
    for layer, writer in writers.items():  # what the guests see is what they wrote...
        assert read_all(vm.guests[layer]) == bytes(writer.shadow)
    vm.close()
    with vhdkit.open(moved / "Virtual Hard Disks" / "os_checkpoint1.avhdx") as child:  # ...and it is on the share,
        assert child.parent is not None and child.parent.name.endswith("move01/Virtual Hard Disks/os.vhdx")
        assert read_all(child) == bytes(writers["os_checkpoint1.avhdx"].shadow)  # the chain intact
    assert vhdkit.check(moved / "Virtual Hard Disks" / "data.vhdx").verdict == "clean"


def test_live_vsm_moves_storage_and_host_and_checks_the_new_host_first(world):
    samba, hosts, local = world
    vm, writers = running_vm(world, "vsm01")
    try:
        share2 = Location(samba.url("share2"), identity=hosts[0].identity)  # hostb may not use share2
        with pytest.raises(PlacementError) as refused:
            live_vsm(vm, share2, "hostb", hosts)
        assert "hostb" in str(refused.value) and "refused" in str(refused.value)
        assert not (samba.share_path("share2") / "vsm01").exists()  # nothing was made
        share1 = Location(samba.url("share1"), identity=hosts[0].identity)
        report = live_vsm(vm, share1, "hostb", hosts)
    finally:
        stop(writers)
    assert (report.kind, report.host, report.source_deleted) == ("live-vsm", "hostb", False)
    assert os.path.exists(report.source)  # kept: not asked to delete it
    config = (samba.share_path("share1") / "vsm01" / "Virtual Machines" / "vsm01.vhdkit.json").read_text()
    assert '"host": "hostb"' in config
    for layer, writer in writers.items():
        assert read_all(vm.guests[layer]) == bytes(writer.shadow)
    vm.close()


def test_live_needs_files_both_hosts_reach(world):
    samba, hosts, local = world
    vm, writers = running_vm(world, "live01")
    stop(writers)
    with pytest.raises(PlacementError, match="hostb cannot reach") as refused:
        live(vm, "hostb", hosts)  # its files are on a folder of hosta
    assert "Live VSM" in str(refused.value)
    vm.close()
    on_share, writers = running_vm(world, "live02", Location(samba.url("share1"), identity=hosts[0].identity))
    stop(writers)
    report = live(on_share, "hostb", hosts)
    assert (report.kind, report.host, report.files_copied) == ("live", "hostb", 0)
    assert '"host": "hostb"' in (samba.share_path("share1") / "live02" / "Virtual Machines" /
                                 "live02.vhdkit.json").read_text()
    on_share.close()


def test_a_move_that_does_not_fit_says_so_and_makes_nothing(world):
    samba, hosts, local = world
    vm, writers = running_vm(world, "big01")
    stop(writers)
    small = Location(samba.url("small"), identity=hosts[0].identity)
    samba.set_free("small", 64 * MiB, 1 * MiB)
    try:
        with pytest.raises(PlacementError, match="too small"):
            live_storage(vm, small, hosts)
    finally:
        samba.clear_free("small")
    assert list(samba.share_path("small").iterdir()) == []
    assert vm.folder.startswith(local.where)
    vm.close()
