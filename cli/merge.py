"""``vhdkit merge CHILD``: fold a differencing disk into its parent, or a chain into a new disk
(Merge-VHD).

    vhdkit merge web01_checkpoint1.avhdx                 # into its parent; the child is removed
    vhdkit merge web01_checkpoint1.avhdx --into os.vhdx  # the same, saying which parent you mean
    vhdkit merge web01_checkpoint1.avhdx --to flat.vhdx  # the whole chain into one new disk

Merging into the parent writes the child's own data there; the chain reads the same at every
moment, so a crash leaves a usable chain. The parent's other children, if any, no longer match
it afterwards (a VHDX parent says so, and they are refused rather than read wrong).
"""

from __future__ import annotations

import os

import vhdkit
from vhdkit.errors import MergeRefusedError
from vhdkit.units import format_size
from vhdkit.storage import redact

from .options import add_allowed_parent_dirs
from .parsing import RAW_DESCRIPTION, Namespace
from .progress import ProgressBar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any, help: str) -> None:  # noqa: A002
    p = sub.add_parser("merge", help=help, description=__doc__, formatter_class=RAW_DESCRIPTION)
    p.add_argument("child", help="the differencing disk")
    add_allowed_parent_dirs(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--into", metavar="PARENT", help="its parent (checked: it must be the one it links to)")
    where.add_argument("--to", metavar="NEW", help="a new image holding the whole chain, read through")
    p.add_argument("--keep-child", action="store_true", help="leave the child file after merging into the parent")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: Namespace) -> int:
    from vhdkit.ops.merge import merge  # loaded when the command runs, not for --help

    if args.into:
        with vhdkit.open(args.child) as child:
            linked = child.parent.name if child.parent is not None else None
        if linked is None or not os.path.samefile(linked, args.into):
            raise MergeRefusedError(f"{redact(args.child)}'s parent is {linked}, not {redact(args.into)}")
    bar = ProgressBar("merging")
    try:
        report = merge(args.child, to=args.to, remove_child=not args.keep_child, progress=bar)
    finally:
        bar.close()
    if args.json:
        import json

        print(json.dumps(report._asdict()))
    else:
        removed = "; the child was removed" if report.child_removed else ""
        print(f"merged {report.child} into {report.result}: {format_size(report.bytes_merged)}{removed}")
    return 0
