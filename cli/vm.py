"""``vhdkit vm show PATH [--json]``, ``vhdkit vm move PATH --type TYPE --to DIR``: a virtual machine from its configuration (Hyper-V 2012/2012 R2
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
    move = actions.add_parser("move", help="move a VM (Live Storage, Live VSM, Live)")
    move.add_argument("path", help="the VM's configuration or folder")
    move.add_argument("--type", dest="kind", required=True, choices=("live", "live-vsm", "live-storage"))
    move.add_argument("--to", help="the folder the VM's folder goes into (Live Storage, Live VSM)")
    move.add_argument("--host", help="the destination host (Live, Live VSM)")
    move.add_argument("--delete-source", action="store_true", help="after a verified move, delete the source")
    move.add_argument("--json", action="store_true")
    move.set_defaults(run=_move)


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


def _move(args: argparse.Namespace) -> int:
    import os
    import socket

    from vhdkit.placement.locations import Host, Identity
    from vhdkit.vm import load
    from vhdkit.vm.loader import vm_folder
    from vhdkit.vm.move import move_vm, resume_move

    to = args.to if not args.to or "://" in args.to else os.path.abspath(args.to)
    report = None
    if to:  # a move killed after its destination was complete finishes from there
        report = resume_move(args.kind, to, os.path.basename(vm_folder(args.path)), delete_source=args.delete_source)
    if report is None:
        vm = load(args.path)
        identity = None
        if to and to.startswith("smb://"):  # this host logs in as the URL's user (password: VHDKIT_SMB_PASSWORD)
            from urllib.parse import urlsplit

            identity = Identity(urlsplit(to).username or "", os.environ.get("VHDKIT_SMB_PASSWORD", ""))
        here = Host(socket.gethostname(), identity, local=True)
        other = Host(args.host) if args.host else None
        report = move_vm(vm, args.kind, to=to, source_host=here, destination_host=other,
                         delete_source=args.delete_source)
    if args.json:
        print(json.dumps(report._asdict(), indent=2))
        return 0
    print(f"{report.kind}: {report.vm} {report.source} -> {report.destination}, {report.files_copied} files, "
          f"{report.bytes_copied} bytes" + (", source deleted" if report.source_deleted else "")
          + (" (finished a move that had been interrupted)" if report.resumed else ""))
    return 0
