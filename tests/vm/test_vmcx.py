"""Hyper-V 2016+ .vmcx configurations: the shared sample reads as dissect.hypervisor (a test-only
oracle, never imported by vhdkit) reads it, entry for entry; damaged copies give a VmConfigError
or the same kind of tree, never another exception."""

from __future__ import annotations

import random
import shutil

import pytest

from vhdkit.errors import VmConfigError
from vhdkit.vm import load
from vhdkit.vm.vmcx import read_tree

from ..conftest import samples_dir, unavailable
from ..test_cli import vhdkit_cmd


@pytest.fixture
def vmcx(tmp_path):
    src = samples_dir() / "hyperv" / "test.vmcx"
    if not src.exists():
        unavailable(f"sample hyperv/test.vmcx not found under {samples_dir()} (set VHDKIT_SAMPLES)")
    folder = tmp_path / "Other Location" / "Virtual Machines"
    folder.mkdir(parents=True)
    return shutil.copy(src, folder / "282874FC-59D6-4F30-BC04-5FDD909C82E0.vmcx")


def test_the_sample_reads_as_dissect_reads_it(vmcx):
    from dissect.hypervisor.descriptor.hyperv import HyperVFile  # the test extras' oracle (AGPL: tests only)

    with open(vmcx, "rb") as f:
        oracle = HyperVFile(f).as_dict()
    ours = read_tree(open(vmcx, "rb").read(), str(vmcx))
    assert ours == oracle


def test_the_sample_as_a_vm(vmcx):
    vm = load(vmcx)
    assert (vm.name, vm.id, vm.generation, vm.processors, vm.config_format, vm.version) == (
        "Other Location", "282874fc-59d6-4f30-bc04-5fdd909c82e0", 1, 1, "vmcx", "9.0")
    [disk] = vm.disks
    assert (disk.controller, disk.location) == ("IDE 0", 0)
    assert disk.path == r"C:\Users\Public\Documents\Hyper-V\Virtual Hard Disks\Other Location.vhdx"
    assert disk.local is None and "not found" in (disk.problem or "")  # the disk is not beside it here
    shown = vhdkit_cmd("vm", "show", str(vmcx))
    assert shown.returncode == 0 and "name:        Other Location" in shown.stdout and "vmcx 9.0" in shown.stdout


def test_damaged_copies_fail_cleanly(vmcx):
    data = bytearray(open(vmcx, "rb").read())
    rng = random.Random(20261201)
    outcomes = {"read": 0, "refused": 0}
    for _ in range(400):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            at = rng.choice([rng.randrange(0, 0x3000), rng.randrange(0x3000, len(damaged))])
            damaged[at] = rng.randrange(256)
        try:
            read_tree(bytes(damaged), "damaged.vmcx")
            outcomes["read"] += 1
        except VmConfigError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and outcomes["read"] > 0, outcomes
    for cut in (0, 100, 0x2000, 0x2FFF):  # no room for the headers, object table and a key table
        with pytest.raises(VmConfigError, match="too short|no .vmcx header|no object table"):
            read_tree(bytes(data[:cut]), "cut.vmcx")
    for cut in (0x3005, 0x8000, len(data) - 1):  # a table cut off: refused, or read without it
        try:
            read_tree(bytes(data[:cut]), "cut.vmcx")
        except VmConfigError as e:
            assert "outside the file" in str(e)
