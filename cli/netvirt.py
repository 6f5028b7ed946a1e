"""``vhdkit netvirt``: a Hyper-V Network Virtualization model (JSON or TOML; see
vhdkit/netvirt/loader.py for its form) and what the hosts do with it.

  show MODEL                 VM networks, VM subnets (VSIDs), hosts (PAs) and vNICs (CA, MAC, PA)
  records MODEL              the CA->PA lookup records every host holds (--powershell: as
                             New-NetVirtualizationLookupRecord commands)
  reach MODEL SRC DST        can SRC (VM or VM/NIC) reach DST (a VM, VM/NIC or CA seen from SRC's
                             routing domain), and how; exit 0 when delivered, 3 when dropped (1: an error)
  move MODEL VM HOST         simulate a live migration: which lookup records change (only the PA)
  pcap MODEL FILE            write the frames between every pair of vNICs that can reach each other
                             across hosts (NVGRE or VXLAN as their VM network says)
"""

from __future__ import annotations

import sys

from .parsing import RAW_DESCRIPTION, Namespace, ParserSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from vhdkit import netvirt

EXIT_DROPPED = 3  # `reach`: the frame would be dropped (1 stays "error", 2 argparse's usage error)


def register(sub: Any, help: str) -> None:  # noqa: A002
    p = sub.add_parser("netvirt", help=help, description=__doc__, formatter_class=RAW_DESCRIPTION)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    def action(name: str, text: str) -> ParserSpec:
        a = actions.add_parser(name, help=text)
        a.add_argument("model", help="the model (.json or .toml)")
        a.add_argument("--json", action="store_true", help="machine-readable output")
        return a

    action("show", "the model's networks, hosts and vNICs").set_defaults(run=_show)
    records = action("records", "the CA->PA lookup records")
    records.add_argument("--powershell", action="store_true", help="as New-NetVirtualizationLookupRecord commands")
    records.set_defaults(run=_records)
    reach = action("reach", "can SRC reach DST, and how")
    reach.add_argument("source", help="VM or VM/NIC")
    reach.add_argument("destination", help="VM, VM/NIC, or a CA in the source's routing domain")
    reach.add_argument("--source-ip", help="send from this address instead of the vNIC's CA (a spoofing test)")
    reach.add_argument("--source-mac", help="send from this MAC instead of the vNIC's")
    reach.set_defaults(run=_reach)
    move = action("move", "simulate moving a VM to another host")
    move.add_argument("vm")
    move.add_argument("host")
    move.set_defaults(run=_move)
    pcap = action("pcap", "write example frames to a pcap file")
    pcap.add_argument("file", help="the pcap file to write")
    pcap.set_defaults(run=_pcap)


def _show(args: Namespace) -> int:
    import json

    from vhdkit import netvirt  # loaded by the actions that use it, not by --help

    fabric = netvirt.load(args.model)
    if args.json:
        print(json.dumps(netvirt.to_dict(fabric), indent=2))
        return 0
    for host in fabric.hosts.values():
        print(f"host {host.name}: PA {host.pa} ({host.logical_network.name})")
    for net in fabric.vm_networks.values():
        print(f"VM network {net.name} {{{net.routing_domain}}} {net.encapsulation.upper()}")
        for sub in net.subnets.values():
            print(f"  {sub.name} {sub.prefix} VSID {sub.vsid} gateway {sub.gateway}")
            for nic in fabric.nics():
                if nic.subnet is sub:
                    print(f"    {nic.label:<20} CA {str(nic.ca):<15} MAC {netvirt.model.format_mac(nic.mac)} on {nic.host.name} (PA {nic.host.pa})")
    return 0


def _records(args: Namespace) -> int:
    import json

    from vhdkit import netvirt  # loaded by the actions that use it, not by --help

    table = netvirt.lookup_table(netvirt.load(args.model))
    if args.json:
        print(json.dumps([r.as_dict() for r in table], indent=2))
    elif args.powershell:
        for record in table:
            print(record.powershell())
    else:
        for r in table:
            print(f"VSID {r.vsid:<8} CA {str(r.ca):<15} MAC {netvirt.model.format_mac(r.mac)} PA {str(r.pa):<15} {r.vm_name}")
    return 0


def _verdict(fabric: netvirt.Fabric, args: Namespace) -> tuple[netvirt.Verdict, str]:
    from vhdkit import netvirt  # loaded by the actions that use it, not by --help

    import ipaddress

    source = fabric.find_nic(args.source)
    try:
        destination_ca = str(ipaddress.ip_address(args.destination))
    except ValueError:
        destination_ca = str(fabric.find_nic(args.destination).ca)
    mac = netvirt.model.parse_mac(args.source_mac) if args.source_mac else None
    return netvirt.decide(fabric, source, destination_ca, source_ip=args.source_ip, source_mac=mac), destination_ca


def _reach(args: Namespace) -> int:
    import json

    from vhdkit import netvirt  # loaded by the actions that use it, not by --help

    verdict, destination_ca = _verdict(netvirt.load(args.model), args)
    if args.json:
        print(json.dumps(dict(verdict.as_dict(), destination_ca=destination_ca)))
    else:
        where = f" -> {verdict.destination.label}" if verdict.destination else ""
        print(f"{verdict.action.upper()}{where}: {verdict.reason}")
        if verdict.outer:
            print(f"  {verdict.source.subnet.network.encapsulation.upper()} VSID {verdict.inner_vsid}, "
                  f"PA {verdict.outer[0]} -> {verdict.outer[1]}")
    return 0 if verdict.delivered else EXIT_DROPPED


def _move(args: Namespace) -> int:
    import json

    from vhdkit import netvirt  # loaded by the actions that use it, not by --help

    fabric = netvirt.load(args.model)
    before = netvirt.lookup_table(fabric)
    fabric.move_vm(args.vm, args.host)
    after = netvirt.lookup_table(fabric)
    changes = netvirt.move_changes(before, after)
    if args.json:
        print(json.dumps({"vm": args.vm, "host": args.host, "unchanged": len(after) - len(changes),
                          "changed": [{"before": old.as_dict(), "after": new.as_dict()} for old, new in changes]}))
    else:
        for old, new in changes:
            print(f"VSID {old.vsid} CA {old.ca} ({old.vm_name}): PA {old.pa} -> {new.pa}")
        print(f"{len(changes)} record(s) changed on every host, {len(after) - len(changes)} unchanged")
    return 0


def _pcap(args: Namespace) -> int:
    import json

    from vhdkit import netvirt  # loaded by the actions that use it, not by --help

    fabric = netvirt.load(args.model)
    frames = []
    nics = list(fabric.nics())
    for source in nics:
        for target in nics:
            verdict = netvirt.decide(fabric, source, target.ca)
            if verdict.delivered and verdict.destination is target and verdict.outer is not None:
                frames.append((verdict, netvirt.wire_frame(verdict, target.ca, seq=len(frames) + 1)))
    with open(args.file, "wb") as f:
        writer = netvirt.PcapWriter(f)
        for i, (_, frame) in enumerate(frames):
            writer.write(frame, when=1_700_000_000 + i * 0.001)
    if args.json:
        print(json.dumps({"file": args.file, "frames": [dict(v.as_dict(), frame=i + 1) for i, (v, _) in enumerate(frames)]}))
    else:
        print(f"wrote {len(frames)} frames to {args.file}", file=sys.stdout)
    return 0
