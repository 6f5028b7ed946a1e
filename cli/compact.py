"""``vhdkit compact IMAGE``: give back the space a dynamic or differencing VHD or VHDX no longer
needs (Optimize-VHD).

Blocks the guest filled with zeros stop being stored, the remaining blocks move down into the
gaps, and the file is cut after the last one; the disk's content does not change. A VHDX's BAT
changes go through its log, a VHD's are single-sector writes, so a crash at any point leaves a
whole disk. (A VHD differencing disk keeps its blocks of zeros: they hide the parent.) An image another
vhdkit writer has open is refused (the advisory lock every writer takes).
"""

from __future__ import annotations

import vhdkit
from vhdkit.units import format_size
from vhdkit.storage import redact

from .options import add_allowed_parent_dirs
from .parsing import Namespace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any, help: str) -> None:  # noqa: A002
    p = sub.add_parser("compact", help=help, description=__doc__)
    p.add_argument("image", help="the disk to compact (path or URL)")
    add_allowed_parent_dirs(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: Namespace) -> int:
    report: Any = vhdkit.compact(args.image)
    if args.json:
        import json

        print(json.dumps(dict(report._asdict(), reclaimed=report.reclaimed, image=redact(args.image))))
    else:
        print(f"compacted {redact(args.image)}: {format_size(report.old_file_size)} -> {format_size(report.new_file_size)}, "
              f"{format_size(report.reclaimed)} reclaimed ({report.zero_blocks} blocks of zeros dropped, "
              f"{report.moved} moved)")
    return 0
