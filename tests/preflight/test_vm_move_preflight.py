"""`vhdkit vm move` runs the preflight rules that apply before anything moves: by itself, rule 15
for a share the files go to (an SMB 2-only server stops it, nothing made there); with the hosts'
facts (`--facts`, source then destination), every rule for this VM and transfer type (a switch
the destination lacks stops a Live VSM); ``--no-preflight`` skips them."""

from __future__ import annotations

import vhdkit

from ..test_cli import vhdkit_cmd
from ..vm.conftest import share_folder
from ..vm.xml_fixture import configuration, write
from . import hyperv_fixture as hv

MiB = 1 << 20


def web01(root):
    disks = root / "web01" / "Virtual Hard Disks"
    disks.mkdir(parents=True)
    vhdkit.create(disks / "web01.vhdx", 16 * MiB).close()
    write(root / "web01" / "Virtual Machines" / "A.xml",
          configuration("web01", ide=[r"C:\VMs\web01\Virtual Hard Disks\web01.vhdx"], nics=[("Public", "00155D010203")]))
    return root / "web01"


def test_vm_move_to_an_smb2_share_is_stopped_by_the_preflight(tmp_path, samba, smb2_server, monkeypatch):
    monkeypatch.setenv("VHDKIT_SMB_PASSWORD", smb2_server.password)
    vm = web01(tmp_path)
    target = f"smb://{smb2_server.user}@127.0.0.3:{samba.port}/vms"
    refused = vhdkit_cmd("vm", "move", str(vm), "--type", "live-storage", "--to", target)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "preflight FAIL 15 storage" in refused.stderr and "speaks SMB 2." in refused.stderr
    assert "nothing was moved" in refused.stderr
    assert list(smb2_server.share_path("vms").iterdir()) == []
    moved = vhdkit_cmd("vm", "move", str(vm), "--type", "live-storage", "--to", target, "--no-preflight")
    assert moved.returncode == 0, moved.stderr
    assert (smb2_server.share_path("vms") / "web01" / "Virtual Hard Disks" / "web01.vhdx").exists()


def test_vm_move_with_host_facts_runs_every_rule_for_the_vm(tmp_path, samba, monkeypatch):
    monkeypatch.setenv("VHDKIT_SMB_PASSWORD", samba.password)
    vm = web01(tmp_path / "old")
    share = share_folder(samba, "share1", f"facts-{tmp_path.name}")  # storage HV02 reaches (as the tests' user)
    source, destination = hv.pair()
    hv.rows(destination, "SmbConnection").append({"ServerName": "127.0.0.1", "ShareName": "share1", "Dialect": "3.1.1",
                                                  "ContinuouslyAvailable": True, "Encrypted": False, "Signed": True})
    destination["VMSwitch"]["Name"] = "public-2"  # web01's NIC is on "Public": the destination has none
    facts = [str(hv.write(tmp_path, source)), str(hv.write(tmp_path, destination))]
    argv = ["vm", "move", str(vm), "--type", "live-vsm", "--host", "HV02", "--to", share]
    refused = vhdkit_cmd(*argv, "--facts", facts[0], "--facts", facts[1])
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "preflight FAIL 1 switch names" in refused.stderr and "Public" in refused.stderr, refused.stderr
    landed = samba.share_path("share1") / f"facts-{tmp_path.name}"
    assert "nothing was moved" in refused.stderr and list(landed.iterdir()) == []
    destination["VMSwitch"]["Name"] = "Public"  # the fix, applied to the destination's facts
    hv.write(tmp_path, destination)
    moved = vhdkit_cmd(*argv, "--facts", facts[0], "--facts", facts[1])
    assert moved.returncode == 0, moved.stderr
    assert "preflight FAIL" not in moved.stderr and (landed / "web01" / "Virtual Machines" / "A.xml").is_file()
