"""Each transfer type's preconditions, checked before anything is made and refused in a sentence,
with reach measured against the tests' real Samba (hostb may use share1, not share2)."""

from __future__ import annotations

import pytest

import vhdkit
from vhdkit.placement.locations import Host, Identity
from vhdkit.vm import load
from vhdkit.vm.plan import plan_move

from .xml_fixture import configuration, write

MiB = 1 << 20


def vm_recorded_at(tmp_path, prefix: str):
    """web01 whose configuration records its disks under ``prefix`` (a host path or a UNC one)."""
    root = tmp_path / "web01"
    disks = root / "Virtual Hard Disks"
    disks.mkdir(parents=True)
    vhdkit.create(disks / "os.vhdx", 16 * MiB).close()
    vhdkit.create(disks / "os_1.avhdx", parent=disks / "os.vhdx").close()
    vhdkit.create(disks / "data.vhdx", 16 * MiB).close()
    write(root / "Virtual Machines" / "A.xml", configuration(
        "web01", ide=[prefix + r"\Virtual Hard Disks\os_1.avhdx"], scsi=[prefix + r"\Virtual Hard Disks\data.vhdx"]))
    return load(root)


@pytest.fixture
def hosts(samba):
    return (Host("hosta", Identity(samba.user, samba.password), local=True),
            Host("hostb", Identity("hostb", "hostb-test-pw")))


def shares(samba):
    return {r"\\fs1\share1": f"smb://127.0.0.1:{samba.port}/share1",
            r"\\fs1\share2": f"smb://127.0.0.1:{samba.port}/share2"}


def test_live_is_refused_for_a_vm_on_local_disks_naming_the_files(tmp_path, hosts):
    vm = vm_recorded_at(tmp_path, r"C:\Hyper-V\web01")
    plan = plan_move(vm, "live", source_host=hosts[0], destination_host=hosts[1])
    assert not plan.allowed
    assert "own storage" in plan.refusals[0]
    for name in ("os_1.avhdx", "os.vhdx", "data.vhdx"):  # the chain's parent too
        assert name in plan.refusals[0]


def test_live_on_a_share_both_hosts_reach(tmp_path, samba, hosts):
    vm = vm_recorded_at(tmp_path, r"\\fs1\share1\web01")
    plan = plan_move(vm, "live", source_host=hosts[0], destination_host=hosts[1], shares=shares(samba))
    assert plan.allowed, plan.refusals
    assert plan.files == [r"\\fs1\share1\web01\Virtual Hard Disks\os_1.avhdx",
                          r"\\fs1\share1\web01\Virtual Hard Disks\os.vhdx",
                          r"\\fs1\share1\web01\Virtual Hard Disks\data.vhdx"]
    given_a_place = plan_move(vm, "live", source_host=hosts[0], destination_host=hosts[1], to="/srv",
                              shares=shares(samba))
    assert "only the running state" in given_a_place.refusals[0]


def test_live_is_refused_when_a_host_cannot_reach_the_share(tmp_path, samba, hosts):
    vm = vm_recorded_at(tmp_path, r"\\fs1\share2\web01")
    plan = plan_move(vm, "live", source_host=hosts[0], destination_host=hosts[1], shares=shares(samba))
    assert [r for r in plan.refusals if r.startswith(r"hostb cannot write to \\fs1\share2")], plan.refusals


def test_live_vsm_is_refused_when_the_destination_reaches_the_storage(tmp_path, samba, hosts):
    vm = vm_recorded_at(tmp_path, r"\\fs1\share1\web01")
    target = f"smb://127.0.0.1:{samba.port}/share1"
    plan = plan_move(vm, "live-vsm", source_host=hosts[0], destination_host=hosts[1], to=target,
                     shares=shares(samba))
    assert any("already reaches" in r and "use Live" in r for r in plan.refusals), plan.refusals
    local = vm_recorded_at(tmp_path / "other", r"C:\Hyper-V\web01")  # storage hostb cannot see
    plan = plan_move(local, "live-vsm", source_host=hosts[0], destination_host=hosts[1], to=target)
    assert plan.allowed, plan.refusals


def test_live_storage_preconditions(tmp_path, samba, hosts):
    vm = vm_recorded_at(tmp_path, r"C:\Hyper-V\web01")
    (tmp_path / "new").mkdir()
    assert plan_move(vm, "live-storage", source_host=hosts[0], to=str(tmp_path / "new")).allowed
    same = plan_move(vm, "live-storage", source_host=hosts[0], to=str(tmp_path))
    assert any("already is" in r for r in same.refusals)
    other_host = plan_move(vm, "live-storage", source_host=hosts[0], destination_host=hosts[1],
                           to=str(tmp_path / "new"))
    assert any("keeps the VM on its host" in r for r in other_host.refusals)
    nowhere = plan_move(vm, "live-storage", source_host=hosts[0], to=str(tmp_path / "missing"))
    assert any("cannot write to" in r for r in nowhere.refusals)
    assert plan_move(vm, "live-storage", source_host=hosts[0],
                     to=f"smb://127.0.0.1:{samba.port}/share1").allowed
    with pytest.raises(ValueError, match="transfer type"):
        plan_move(vm, "teleport", source_host=hosts[0])
