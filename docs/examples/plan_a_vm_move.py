"""Open a VM and plan a move (docs/engine-api.md). Run it with a VM folder (Export-VM's layout,
or Hyper-V's on a share) and a folder to move it into:

    python plan_a_vm_move.py VM_FOLDER DESTINATION
"""

from __future__ import annotations

import sys

from vhdkit.placement.locations import Host
from vhdkit.vm import load, plan_move

vm = load(sys.argv[1])  # Hyper-V XML or .vmcx, or vhdkit's own description; nothing is written
print(f"{vm.name} ({vm.config_format} {vm.version}), generation {vm.generation}, {vm.processors} CPU, "
      f"{vm.memory_mb} MB")
for disk in vm.disks:
    print(f"  {disk.controller}:{disk.location} {disk.path}")
    for layer in disk.chain:  # the attached file first, then its parents (checkpoints)
        print(f"      {layer}")

here = Host("this-host", local=True)
for kind, to, other in (("live-storage", sys.argv[2], None), ("live", None, Host("host2"))):
    plan = plan_move(vm, kind, source_host=here, destination_host=other, to=to)
    verdict = "can be done" if plan.allowed else "refused: " + "; ".join(plan.refusals)
    print(f"{kind}: {verdict}")
