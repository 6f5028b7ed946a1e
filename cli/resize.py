"""``vhdkit resize IMAGE --size N``: change a disk's virtual size, as Resize-VHD does.

    vhdkit resize disk.vhdx --size 2T       # grow: the new part reads zeros
    vhdkit resize disk.vhd --size +10G      # relative, as qemu-img resize takes it
    vhdkit resize disk.vhdx --size 8G       # shrink: only if nothing is stored past 8G ...
    vhdkit resize disk.vhdx --size 8G --force   # ... or cutting it, said first

VHD and VHDX of every type grow; VHDX (and raw) shrink. Every metadata change goes through the
VHDX log (a VHD, which has none, is changed one atomic sector at a time), so a crash at any point
leaves the old size or the new one.
"""

from __future__ import annotations

import vhdkit
from vhdkit.units import format_size
from vhdkit.storage import redact

from .options import add_allowed_parent_dirs
from .parsing import RAW_DESCRIPTION, Namespace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any, help: str) -> None:  # noqa: A002
    p = sub.add_parser("resize", help=help, description=__doc__, formatter_class=RAW_DESCRIPTION)
    p.add_argument("image", help="the disk to resize (path or URL)")
    add_allowed_parent_dirs(p)
    p.add_argument("--size", required=True, help="new size (60G, 2T, bytes) or a change (+10G, -1G)")
    p.add_argument("--force", action="store_true", help="shrink even over stored data (it is lost)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: Namespace) -> int:
    with vhdkit.open(args.image) as disk:
        old = disk.size
    new = vhdkit.resize(args.image, args.size, force=args.force)
    if args.json:
        import json

        print(json.dumps({"image": redact(args.image), "old_size": old, "new_size": new}))
    else:
        print(f"resized {redact(args.image)}: {format_size(old)} -> {format_size(new)} ({new} bytes)")
    return 0
