"""``vhdkit info IMAGE``: what an image is, as qemu-img info and Get-VHD tell it."""

from __future__ import annotations

import vhdkit
from vhdkit.disk import DiskInfo
from vhdkit.formats import NAMES as FORMATS
from vhdkit.units import format_size

from .options import add_allowed_parent_dirs, add_force_share
from .parsing import Namespace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any, help: str) -> None:  # noqa: A002
    p = sub.add_parser("info", help=help, description=__doc__)
    p.add_argument("image", help="path or URL (file://, memory://, any fsspec URL)")
    add_allowed_parent_dirs(p)
    add_force_share(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--format", choices=FORMATS, help="do not detect the format")
    p.add_argument("--force", action="store_true",
                   help="show a VHD whose footer or header checksum is wrong (the damage is listed)")
    p.add_argument("--no-parent", action="store_true",
                   help="do not open a differencing disk's parent (report its locators only)")
    p.set_defaults(run=run)


def run(args: Namespace) -> int:
    options = dict(format=args.format, tolerate_checksum=args.force)
    parent_problem = None
    try:
        disk = vhdkit.open(args.image, resolve_parents=not args.no_parent, **options)
    except (vhdkit.ParentNotFoundError, vhdkit.ParentMismatchError) as e:
        parent_problem = str(e)  # describe the child anyway, and say why its parent is not open
        disk = vhdkit.open(args.image, resolve_parents=False, **options)
    with disk:
        info = disk.info()
    if parent_problem and info.parent is not None:
        info.parent["problem"] = parent_problem
    if args.json:
        import json

        print(json.dumps(info.as_dict(), indent=2))
    else:
        print(render(info))
    return 0


def _bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    return f"{format_size(n)} ({n} bytes)" if n >= 1024 else f"{n} bytes"


def render(info: DiskInfo) -> str:
    lines = [
        ("image", info.path),
        ("format", info.format),
        ("type", info.type),
        ("virtual size", _bytes(info.virtual_size)),
        ("file size", _bytes(info.file_size)),
        ("size on disk", _bytes(info.size_on_disk)),
    ]
    if info.block_size:
        lines.append(("block size", format_size(info.block_size)))
    lines.append(("sector size", f"{info.logical_sector_size} logical, {info.physical_sector_size} physical"))
    if info.disk_id:
        lines.append(("disk id", info.disk_id))
    if info.creator is not None:
        lines.append(("creator", info.creator or "(none)"))
    if info.log is not None:
        state = info.log["state"]
        if state == "empty":
            text = "empty"
        else:
            where = "in memory (file unchanged)" if state == "replayed_in_memory" else "to the file"
            text = (f"replayed {where}: {info.log['entries_replayed']} entries, "
                    f"{info.log['descriptors_replayed']} sector updates")
        lines.append(("log", text))
    if info.blocks:
        counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in info.blocks.items() if k != "total")
        lines.append(("blocks", f"{info.blocks['total']} ({counts})"))
    details = info.details or {}
    if "geometry" in details:
        g = details["geometry"]
        lines.append(("geometry", f"{g['cylinders']}/{g['heads']}/{g['sectors_per_track']} (CHS)"))
    if details.get("size_note"):
        lines.append(("size note", details["size_note"]))
    for problem in details.get("problems", []):
        lines.append(("problem", problem))
    if info.parent:
        lines.append(("parent", info.parent.get("resolved") or info.parent.get("problem") or "(not opened)"))
        if "parent_linkage" in info.parent:
            lines.append(("parent linkage", str(info.parent.get("parent_linkage"))))
        if info.parent.get("parent_unique_id"):
            lines.append(("parent id", info.parent["parent_unique_id"]))
        for key, value in info.parent.get("locators", {}).items():
            if key.startswith("parent_linkage"):
                continue
            lines.append((f"  {key}", value))
    width = max(len(k) for k, _ in lines) + 1
    return "\n".join(f"{k + ':':<{width}} {v}" for k, v in lines)
