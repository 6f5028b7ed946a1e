"""Hyper-V 2012 R2 VM configurations read, with every disk found in the VM's folder and its
checkpoint chain followed; hostile configurations refused with a sentence; nothing written."""

from __future__ import annotations

import json
import os

import pytest

import vhdkit
from vhdkit.errors import VmConfigError
from vhdkit.vm import load

from ..conftest import run
from ..test_cli import vhdkit_cmd
from .xml_fixture import configuration, write

MiB = 1 << 20
HOST = r"C:\ClusterStorage\Volume1\web01"


@pytest.fixture
def web01(tmp_path):
    """An Export-VM folder: the OS disk with two checkpoints, a data disk, two NICs."""
    root = tmp_path / "web01"
    disks = root / "Virtual Hard Disks"
    disks.mkdir(parents=True)
    vhdkit.create(disks / "os.vhdx", 64 * MiB).close()
    vhdkit.create(disks / "os_1.avhdx", parent=disks / "os.vhdx").close()
    vhdkit.create(disks / "os_2.avhdx", parent=disks / "os_1.avhdx").close()
    vhdkit.create(disks / "data.vhdx", 32 * MiB).close()
    vm_id = "5FC5C385-BD98-451F-B3F3-1E50E06EE663"
    write(root / "Virtual Machines" / f"{vm_id}.xml", configuration(
        "web01", vm_id=vm_id, memory_mb=4096, processors=4, compatibility=True,
        ide=[HOST + r"\Virtual Hard Disks\os_2.avhdx"], scsi=[HOST + r"\Virtual Hard Disks\data.vhdx"],
        nics=[("PUBLIC", "00155D010203"), ("Backup", "00155D010204", True)]))
    return root


def test_a_2012_r2_configuration_and_its_chains(web01):
    before = {p: p.stat().st_mtime_ns for p in web01.rglob("*")}
    vm = load(web01)
    assert (vm.name, vm.id, vm.generation, vm.memory_mb, vm.processors) == (
        "web01", "5fc5c385-bd98-451f-b3f3-1e50e06ee663", 1, 4096, 4)
    assert vm.processor_compatibility and vm.config_format == "hyperv-xml" and vm.version == "5.0"
    os_disk, data = vm.disks
    assert (os_disk.controller, os_disk.location, data.controller, data.location) == ("IDE 0", 0, "SCSI 0", 0)
    disks = web01 / "Virtual Hard Disks"
    assert os_disk.chain == [str(disks / n) for n in ("os_2.avhdx", "os_1.avhdx", "os.vhdx")]
    assert data.chain == [str(disks / "data.vhdx")] and not os_disk.problem
    assert [(n.switch, n.mac, n.vlan_set) for n in vm.nics] == [("PUBLIC", "00155D010203", False),
                                                               ("Backup", "00155D010204", True)]
    assert {p: p.stat().st_mtime_ns for p in web01.rglob("*")} == before  # nothing written
    # qemu-img reads the same chain where it can (it reads no VHDX differencing disk, so the base)
    assert run("qemu-img", "info", os_disk.chain[-1]).returncode == 0


def test_vm_show_on_the_command_line(web01):
    shown = vhdkit_cmd("vm", "show", str(web01))
    assert shown.returncode == 0, shown.stderr
    assert "name:        web01" in shown.stdout and "disk IDE 0:0" in shown.stdout
    assert f"parent   {web01}/Virtual Hard Disks/os.vhdx" in shown.stdout
    assert "switch PUBLIC" in shown.stdout and "switch Backup  mac 00155D010204  vlan set (not decoded)" in shown.stdout
    as_json = json.loads(vhdkit_cmd("vm", "show", "--json", str(web01)).stdout)
    assert as_json["disks"][0]["path"] == HOST + r"\Virtual Hard Disks\os_2.avhdx"
    assert len(as_json["disks"][0]["chain"]) == 3


def test_a_missing_disk_is_reported_not_fatal(web01):
    (web01 / "Virtual Hard Disks" / "data.vhdx").unlink()
    vm = load(web01)
    assert vm.disks[1].local is None and "not found" in (vm.disks[1].problem or "")


def _config(web01) -> str:
    return str(next((web01 / "Virtual Machines").iterdir()))


@pytest.mark.parametrize("label, change, message", [
    ("doctype", lambda t: t.replace("<configuration>", '<!DOCTYPE c [<!ENTITY a "aaaa">]><configuration>', 1),
     "DOCTYPE or entity"),
    ("deep", lambda t: t.replace("<configuration>", "<configuration>" + "<x>" * 100 + "</x>" * 100, 1),
     "nested more than 32"),
    ("not xml", lambda t: t[: len(t) // 2], "not well-formed XML"),
    ("wrong root", lambda t: t.replace("<configuration>", "<config>").replace("</configuration>", "</config>"),
     "not <configuration>"),
    ("wrong type", lambda t: t.replace('<count type="integer">', '<count type="string">'), "expected int"),
    ("bad number", lambda t: t.replace('<count type="integer">4<', '<count type="integer">four<'),
     "not a whole number"),
    ("climbs out", lambda t: t.replace(HOST + r"\Virtual Hard Disks\data.vhdx", r"..\..\..\etc\shadow"),
     "climbs out of its folder"),
    ("absolute outside", lambda t: t.replace(HOST + r"\Virtual Hard Disks\data.vhdx", "/etc/passwd"),
     "outside the VM's folder"),
])
def test_hostile_configurations_are_refused(web01, label, change, message):
    path = _config(web01)
    text = open(path, "rb").read()[2:].decode("utf-16-le")
    with open(path, "wb") as f:
        f.write(b"\xff\xfe" + change(text).encode("utf-16-le"))
    with pytest.raises(VmConfigError, match=message):
        load(web01)
    shown = vhdkit_cmd("vm", "show", str(web01))
    assert shown.returncode == 1 and message.split()[0] in shown.stderr and "Traceback" not in shown.stderr


def test_a_symlink_out_of_the_folder_is_refused(web01, tmp_path):
    outside = tmp_path / "elsewhere.vhdx"
    vhdkit.create(outside, 16 * MiB).close()
    data = web01 / "Virtual Hard Disks" / "data.vhdx"
    data.unlink()
    os.symlink(outside, data)
    with pytest.raises(VmConfigError, match="outside the VM's folder"):
        load(web01)


def test_bad_utf16_huge_and_empty_files(web01):
    path = _config(web01)
    open(path, "wb").write(b"\xff\xfe" + b"<\x00" + b"\x00\xd8")
    with pytest.raises(VmConfigError, match="not valid UTF-16"):
        load(path)
    open(path, "wb").write(b"<configuration>" + b" " * (17 * MiB) + b"</configuration>")
    with pytest.raises(VmConfigError, match="larger than 16 MiB"):
        load(path)
    open(path, "wb").write(b"")
    with pytest.raises(VmConfigError, match="not well-formed|empty"):
        load(path)
