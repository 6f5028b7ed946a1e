"""``vhdkit locations`` and ``vhdkit place``: where VM files can go, and putting them there.

Both read an inventory (--inventory FILE: hosts with the SMB identity each uses, and candidate
locations; see vhdkit/placement/inventory.py). Passwords come from the environment variables or
credentials files the inventory names, never from the command line, and are never printed.
"""

from __future__ import annotations

from vhdkit.units import format_size

from .parsing import Namespace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def register_locations(sub: Any, help: str) -> None:  # noqa: A002
    p = sub.add_parser("locations", help=help, description=__doc__)
    p.add_argument("--inventory", required=True, metavar="FILE", help="hosts and locations (JSON or TOML)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run_locations)


def register_place(sub: Any, help: str) -> None:  # noqa: A002
    p = sub.add_parser("place", help=help, description=__doc__)
    p.add_argument("vm_spec", metavar="VM-SPEC", help="the VM: name, disks, checkpoints, saved state (JSON or TOML)")
    p.add_argument("--inventory", required=True, metavar="FILE", help="hosts and locations (JSON or TOML)")
    p.add_argument("--hosts", help="comma-separated hosts that must run the VM (default: the spec's)")
    p.add_argument("--dry-run", action="store_true", help="rate the locations, place nothing")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run_place)


def run_locations(args: Namespace) -> int:
    from vhdkit.placement.inventory import load_inventory  # loaded when the command runs, not for --help

    inventory = load_inventory(args.inventory)
    rows = []
    for location in inventory.locations:
        capacity = location.measure()
        reaches = [location.reach(h) for h in inventory.hosts]
        rows.append({"location": location.where, "total": capacity.total, "free": capacity.free,
                     "dialect": capacity.dialect, "encrypted": capacity.encrypted,
                     "reach": {r.host: ("read-write" if r.writable else "read-only" if r.reachable else "no")
                               for r in reaches},
                     "why_not": {r.host: r.why for r in reaches if r.why}})
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        smb = f", SMB {row['dialect']}{' encrypted' if row['encrypted'] else ''}" if row["dialect"] else ""
        print(f"{row['location']}: {format_size(row['free'])} free of {format_size(row['total'])}{smb}")
        for host, how in row["reach"].items():
            why = row["why_not"].get(host)
            print(f"  {host}: {how}" + (f" ({why})" if why else ""))
    return 0


def run_place(args: Namespace) -> int:
    import json

    from vhdkit.placement import choose, place, rate  # loaded when the command runs, not for --help
    from vhdkit.placement.inventory import load_inventory
    from vhdkit.placement.planner import VmSpec

    inventory = load_inventory(args.inventory)
    with open(args.vm_spec) as f:
        if args.vm_spec.endswith(".toml"):
            import tomllib

            data = tomllib.loads(f.read())
        else:
            data = json.load(f)
    if args.hosts:
        data["hosts"] = [h.strip() for h in args.hosts.split(",") if h.strip()]
    vm = VmSpec.from_dict(data)
    ratings = rate(vm, inventory.locations, inventory.hosts)
    summary = [{"location": r.location.where, "suitable": r.suitable, "room_after": r.room_after,
                "rejected": list(r.rejected)} for r in ratings]
    placed = None
    if not args.dry_run:
        best = choose(vm, inventory.locations, inventory.hosts)  # raises, listing every reason, if none suits
        placed = place(vm, best.location)
    if args.json:
        print(json.dumps({"vm": vm.name, "needs": vm.needed(), "ratings": summary,
                          "placed": placed._asdict() if placed else None}, indent=2))
        return 0
    print(f"{vm.name} needs {format_size(vm.needed())} on a location every one of {', '.join(vm.hosts)} reaches")
    for row in summary:
        mark = "ok " if row["suitable"] else "no "
        print(f"  {mark} {row['location']}" + ("" if row["suitable"] else f": {'; '.join(row['rejected'])}"))
    if placed:
        print(f"placed in {placed.where}:")
        for path in placed.files:
            print(f"  {path}")
    return 0
