"""``vhdkit set-parent CHILD PARENT``: after a parent moved, point the differencing disk at its new
place (Hyper-V's ``Set-VHD -Path CHILD -ParentPath PARENT``). The parent must be the disk the child
was made against; the relative and absolute paths are rewritten, crash-safely (VHDX: the log; VHD: a new header the footers switch to)."""

from __future__ import annotations


from .options import add_allowed_parent_dirs
from .parsing import Namespace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any, help: str) -> None:  # noqa: A002
    p = sub.add_parser("set-parent", help=help, description=__doc__)
    p.add_argument("child", help="the differencing disk")
    p.add_argument("parent", help="its parent, where it is now")
    add_allowed_parent_dirs(p)
    p.set_defaults(run=run)


def run(args: Namespace) -> int:
    from vhdkit.ops.reparent import set_parent

    relative, absolute = set_parent(args.child, args.parent)
    print(f"{args.child}: parent {relative}" + (f" ({absolute})" if absolute else ""))
    return 0
