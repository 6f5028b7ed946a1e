"""``vhdkit vm show PATH [--json]``, ``vhdkit vm move PATH --type TYPE --to DIR``: a virtual machine from its configuration (Hyper-V 2012/2012 R2
XML, vhdkit's own .vhdkit.json) or its folder (Export-VM's layout, Hyper-V's on a share): name, id,
generation, memory, processors, every disk with its controller, location and checkpoint chain,
and the network adapters with their switch. Nothing is written."""

from __future__ import annotations

from .parsing import Namespace

TYPE_CHECKING = False
if TYPE_CHECKING:
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
    serve = actions.add_parser("serve", help="run a VM's disks: one NBD export each, and a control socket")
    serve.add_argument("path", help="the VM's configuration or folder")
    serve.add_argument("--nbd-dir", required=True, metavar="DIR", help="a unix socket per disk goes here")
    serve.add_argument("--control", required=True, metavar="PATH", help="where vhdkit vm move --control asks")
    serve.set_defaults(run=_serve)
    move = actions.add_parser("move", help="move a VM (Live Storage, Live VSM, Live)")
    move.add_argument("path", nargs="?", help="the VM's configuration or folder (a VM that is off)")
    move.add_argument("--control", metavar="PATH", help="move the VM vhdkit vm serve runs, while its guests write")
    move.add_argument("--type", dest="kind", choices=("live", "live-vsm", "live-storage"))
    move.add_argument("--to", help="the folder the VM's folder goes into (Live Storage, Live VSM)")
    move.add_argument("--host", help="the destination host (Live, Live VSM)")
    move.add_argument("--delete-source", action="store_true", help="after a verified move, delete the source")
    move.add_argument("--netvirt", metavar="MODEL", help="a vhdkit netvirt model: print the lookup records the "
                                                           "host change moves (Live, Live VSM)")
    move.add_argument("--facts", action="append", default=[], metavar="FILE",
                      help="host facts (vhdkit preflight collect), the source's then the destination's: every "
                           "preflight rule runs for this VM first")
    move.add_argument("--no-preflight", action="store_true", help="do not run the preflight rules first")
    move.add_argument("--json", action="store_true", help="print the report as JSON")
    move.add_argument("--events", action="store_true", help="one JSON line per step on stdout, for engines")
    move.add_argument("--status", action="store_true", help="with --control: what the served VM is doing")
    move.add_argument("--speed", help="with --control: mirror at most this much per second, e.g. 200M")
    move.add_argument("--cancel", action="store_true",
                      help="with --control: stop a move before its switch-over (the VM stays where it was)")
    move.set_defaults(run=_move)


def _show(args: Namespace) -> int:
    import json

    from vhdkit.storage import redact
    from vhdkit.vm import load

    vm = load(args.path, follow_chains=not args.no_chains)
    if args.json:
        doc = vm.as_dict()
        doc.update(folder=redact(vm.folder), config_path=redact(vm.config_path))
        print(json.dumps(doc, indent=2))
        return 0
    print(f"name:        {vm.name}")
    print(f"id:          {vm.id or '-'}")
    print(f"format:      {vm.config_format} {vm.version}".rstrip())
    print(f"generation:  {vm.generation}")
    print(f"memory:      {vm.memory_mb} MB" if vm.memory_mb else "memory:      -")
    print(f"processors:  {vm.processors or '-'}" + (" (compatibility mode)" if vm.processor_compatibility else ""))
    print(f"folder:      {redact(vm.folder)}")
    if vm.host:
        print(f"host:        {vm.host}")
    for d in vm.disks:
        print(f"disk {d.controller}:{d.location}  {d.path}")
        for i, layer in enumerate(d.chain):
            print(f"    {'attached' if i == 0 else 'parent  '} {layer}")
        if d.problem:
            print(f"    ! {d.problem}")
    for n in vm.nics:
        vlan = "  vlan set (not decoded)" if n.vlan_set else ""
        print(f"nic  {n.name or '-'}  switch {n.switch or '(not connected)'}  mac {n.mac or '-'}{vlan}")
    return 0


def _serve(args: Namespace) -> int:
    from vhdkit.vm.runner import VmRunner

    from .serve import run_until_stopped

    runner = VmRunner(args.path, args.nbd_dir)

    def start() -> str:
        runner.serve_nbd()
        runner.serve_control(args.control)
        exports = ", ".join(f"{disk} at unix:{path}" for disk, path in runner.exports.items())
        return f"running {runner.vm.name}: {exports}; control at {args.control}"

    run_until_stopped(runner, start, lambda: f"stopped {runner.vm.name}")
    return 0


def _move(args: Namespace) -> int:
    import json
    import os
    import socket

    if args.control:
        return _move_served(args)
    if not args.path or not args.kind:
        raise SystemExit("vhdkit vm move: give the VM's folder and --type, or --control of the vhdkit vm serve "
                         "running it")

    from vhdkit.placement.locations import Host, Identity
    from vhdkit.vm import load
    from vhdkit.vm.loader import vm_folder
    from vhdkit.vm.move import move_vm, resume_move

    to = args.to if not args.to or "://" in args.to else os.path.abspath(args.to)
    changes = None
    if args.netvirt:  # worked out first: a model that does not know the VM or the host stops the move
        if not args.host:
            raise SystemExit("vhdkit vm move: --netvirt is for a move to another host (--host)")
        from vhdkit.vm.loader import vm_folder as folder_of

        changes = _lookup_changes(args.netvirt, _vm_name(args.path, folder_of), args.host)
    report = None
    if to:  # a move killed after its destination was complete finishes from there
        report = resume_move(args.kind, to, os.path.basename(vm_folder(args.path)), delete_source=args.delete_source)
    if report is None:
        vm = load(args.path)
        if not args.no_preflight and not _preflight(vm, args.kind, to, args.facts):
            raise SystemExit(1)
        identity = None
        if to and to.startswith("smb://"):  # the hosts log in as the URL's user (password: VHDKIT_SMB_PASSWORD)
            from urllib.parse import urlsplit

            identity = Identity(urlsplit(to).username or "", os.environ.get("VHDKIT_SMB_PASSWORD", ""))
        here = Host(socket.gethostname(), identity, local=True)
        other = Host(args.host, identity) if args.host else None
        report = move_vm(vm, args.kind, to=to, source_host=here, destination_host=other,
                         delete_source=args.delete_source, on_event=_event_printer(args))
    if args.json:
        print(json.dumps(dict(report._asdict(), lookup_changes=changes), indent=2))
        return 0
    for change in changes or []:
        print(f"VSID {change['before']['VirtualSubnetID']} CA {change['before']['CustomerAddress']}: "
              f"PA {change['before']['ProviderAddress']} -> {change['after']['ProviderAddress']}")
    print(f"{report.kind}: {report.vm} {report.source} -> {report.destination}, {report.files_copied} files, "
          f"{report.bytes_copied} bytes" + (", source deleted" if report.source_deleted else "")
          + (" (finished a move that had been interrupted)" if report.resumed else ""))
    return 0


def _preflight(vm: Any, kind: str, to: str | None, facts_files: list[str]) -> bool:
    """The preflight rules that apply to the move (vm.plan.preflight_move); what is not a pass is
    printed; False, with a sentence, when one fails."""
    import sys

    from vhdkit import preflight
    from vhdkit.vm.plan import preflight_move

    from .preflight import report_problems

    facts = [preflight.load(path) for path in facts_files]
    if not report_problems(preflight_move(vm, kind, to=to, facts=facts)):
        print(f"vhdkit vm move: the preflight failed: nothing was moved, {vm.name} stays where it is "
              "(--no-preflight skips it)", file=sys.stderr)
        return False
    return True


def _event_printer(args: Namespace) -> Any:
    """Events as JSON lines (--events), or a progress bar on a terminal: the files copied of the
    VM's total, then the mirrored disks summed, each disk's share after the figures."""
    import json

    from .progress import ProgressBar

    bar = ProgressBar("moving")
    disks: dict[str, tuple[int, int]] = {}

    def on_event(event: str, fields: dict[str, Any]) -> None:
        if args.events:
            print(json.dumps({"event": event, **fields}), flush=True)
        elif event == "copying":
            bar(fields["bytes"], fields["total"], fields["file"].rsplit("/", 1)[-1])
        elif event == "mirroring":
            disks[fields["disk"].rsplit("/", 1)[-1]] = (fields["total"] - fields["remaining"], fields["total"])
            bar(sum(d for d, _ in disks.values()), sum(t for _, t in disks.values()),
                " ".join(f"{name} {done / max(total, 1):.0%}" for name, (done, total) in disks.items()))
        elif event in ("switched", "written") and bar.enabled and not bar.closed:
            bar.close()

    return on_event


def _move_served(args: Namespace) -> int:
    import json
    import os

    from vhdkit.migration.service import request

    if args.status or args.cancel:
        answer = request(args.control, "status" if args.status else "cancel")
        if not answer.get("ok"):
            raise SystemExit(f"vhdkit vm move: {answer.get('error', 'refused')}")
        print(json.dumps({k: v for k, v in answer.items() if k != "ok"}, indent=2))
        return 0
    if not args.kind:
        raise SystemExit("vhdkit vm move: --type is needed to move")
    to = args.to if not args.to or "://" in args.to else os.path.abspath(args.to)
    speed = None
    if args.speed:
        from vhdkit.units import parse_size

        speed = parse_size(args.speed)
    if not args.no_preflight:  # the served VM's configuration says what the rules look at
        from vhdkit.vm import load

        status = request(args.control, "status")
        if not status.get("ok"):
            raise SystemExit(f"vhdkit vm move: {status.get('error', 'refused')}")
        if not _preflight(load(status["folder"], follow_chains=False), args.kind, to, args.facts):
            raise SystemExit(1)
    answer = request(args.control, "move", type=args.kind, to=to or "", delete_source=args.delete_source,
                     **({"speed": speed} if speed else {}))
    if not answer.get("ok"):
        raise SystemExit(f"vhdkit vm move: {answer.get('error', 'refused')}")
    move = answer["move"]
    if args.json:
        print(json.dumps(move, indent=2))
    else:
        print(f"{move['kind']}: {move['vm']} {move['source']} -> {move['destination']}, {move['files_copied']} files,"
              f" switch-over pause {move['pause_ms']} ms" + (", source deleted" if move["source_deleted"] else ""))
    return 0


def _lookup_changes(model: str, vm: str, host: str) -> list[dict[str, Any]]:
    """The lookup records a VM's move to ``host`` changes in a netvirt model (only the PAs move),
    as ``vhdkit netvirt move`` reports them."""
    from vhdkit import netvirt

    fabric = netvirt.load(model)
    before = netvirt.lookup_table(fabric)
    fabric.move_vm(vm, host)
    return [{"before": old.as_dict(), "after": new.as_dict()}
            for old, new in netvirt.move_changes(before, netvirt.lookup_table(fabric))]


def _vm_name(path: str, folder_of: Any) -> str:
    from vhdkit.errors import VhdkitError
    from vhdkit.vm import load

    try:
        return load(path, follow_chains=False).name
    except (VhdkitError, OSError):  # moved already: the folder's name is the VM's
        import os

        return os.path.basename(folder_of(path))
