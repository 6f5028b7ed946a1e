"""``vhdkit vm show PATH [--json]``: a virtual machine from its configuration (Hyper-V 2012/2012 R2
XML, vhdkit's own .vhdkit.json) or its folder (Export-VM's layout, Hyper-V's on a share): name, id,
generation, memory, processors, every disk with its controller, location and checkpoint chain,
and the network adapters with their switch. Nothing is written."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any, help: str) -> None:  # noqa: A002
    p = sub.add_parser("vm", help=help, description=__doc__)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    show = actions.add_parser("show", help="what a VM configuration holds")
    show.add_argument("path", help="a configuration file, or the VM's folder")
    show.add_argument("--json", action="store_true")
    show.add_argument("--no-chains", action="store_true", help="do not open the disks to follow their chains")
    show.set_defaults(run=_show)


def _show(args: argparse.Namespace) -> int:
    from vhdkit.vm import load

    vm = load(args.path, follow_chains=not args.no_chains)
    if args.json:
        print(json.dumps(vm.as_dict(), indent=2))
        return 0
    print(f"name:        {vm.name}")
    print(f"id:          {vm.id or '-'}")
    print(f"format:      {vm.config_format} {vm.version}".rstrip())
    print(f"generation:  {vm.generation}")
    print(f"memory:      {vm.memory_mb} MB" if vm.memory_mb else "memory:      -")
    print(f"processors:  {vm.processors or '-'}" + (" (compatibility mode)" if vm.processor_compatibility else ""))
    print(f"folder:      {vm.folder}")
    for d in vm.disks:
        print(f"disk {d.controller}:{d.location}  {d.path}")
        for i, layer in enumerate(d.chain):
            print(f"    {'attached' if i == 0 else 'parent  '} {layer}")
        if d.problem:
            print(f"    ! {d.problem}")
    for n in vm.nics:
        print(f"nic  {n.name or '-'}  switch {n.switch or '(not connected)'}  mac {n.mac or '-'}")
    return 0
