"""``vhdkit library``: an index of the VHD/VHDX images in folders (VMM's library).

  scan FOLDER...        index every disk image below the folders (again: only what changed)
  list [filters]        the indexed images; --format, --type, --min-size, --max-size, --health,
                        --broken-parent, --children-of PATH
  show PATH             one image's record and the tree of its differencing children
  find TEXT [filters]   images whose path contains TEXT
  init FOLDER           put VMM's blank disks there (16 GiB and 60 GiB, .vhdx and .vhd) if missing

The index lives in an SQLite file (--db; default ~/.local/share/vhdkit/library.sqlite3).
"""

from __future__ import annotations

import sys

from vhdkit import formats
from vhdkit.validation.report import EXIT_CODES
from vhdkit.library import default_db
from vhdkit.units import format_size, parse_size
from vhdkit.storage import redact

from .options import add_allowed_parent_dirs
from .parsing import RAW_DESCRIPTION, Namespace, ParserSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from vhdkit.library import ImageRecord


def register(sub: Any, help: str) -> None:  # noqa: A002
    p = sub.add_parser("library", help=help, description=__doc__, formatter_class=RAW_DESCRIPTION)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    def action(name: str, text: str) -> ParserSpec:
        a = actions.add_parser(name, help=text)
        a.add_argument("--db", default=None, help=f"the index (default {default_db()})")
        a.add_argument("--json", action="store_true", help="machine-readable output")
        return a

    scan = action("scan", "index the disk images below folders")
    scan.add_argument("locations", nargs="+", metavar="FOLDER")
    add_allowed_parent_dirs(scan)
    scan.set_defaults(run=_scan)
    for name, text in (("list", "the indexed images"), ("find", "images whose path contains TEXT")):
        a = action(name, text)
        if name == "find":
            a.add_argument("text")
        a.add_argument("--format", choices=tuple(f.name for f in formats.FORMATS if f.structured))
        a.add_argument("--type", choices=("fixed", "dynamic", "differencing"))
        a.add_argument("--min-size", type=parse_size, help="virtual size at least (16G)")
        a.add_argument("--max-size", type=parse_size, help="virtual size at most")
        a.add_argument("--health", choices=tuple(EXIT_CODES))
        a.add_argument("--broken-parent", action="store_true", help="only differencing disks whose parent is broken")
        a.add_argument("--children-of", metavar="PATH", help="only the children of this image")
        a.set_defaults(run=_list)
    show = action("show", "one image and its children")
    show.add_argument("path")
    show.set_defaults(run=_show)
    init = action("init", "put the blank library disks in a folder")
    init.add_argument("folder")
    init.set_defaults(run=_init)


def _scan(args: Namespace) -> int:
    import json

    from vhdkit.library import Library  # loaded when the action runs, not for --help

    def progress(n: int, path: str) -> None:
        if sys.stderr.isatty():
            print(f"\r{n} images: {path[-60:]:<60}", end="", file=sys.stderr, flush=True)

    with Library(args.db) as library:
        report = library.scan(args.locations, progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if args.json:
        print(json.dumps(report._asdict()))
    else:
        print(f"{report.files} images: {len(report.read)} read, {report.unchanged} unchanged, "
              f"{report.removed} gone; {report.skipped} other files skipped")
    return 0


def _list(args: Namespace) -> int:
    import json

    from vhdkit.library import Library  # loaded when the action runs, not for --help

    with Library(args.db) as library:
        records = library.records(format=args.format, type=args.type, min_size=args.min_size, max_size=args.max_size,
                                  health=args.health, broken_parent=args.broken_parent, children_of=args.children_of)
    if getattr(args, "text", None):
        records = [r for r in records if args.text.lower() in r.path.lower()]
    if args.json:
        print(json.dumps([r.as_dict() for r in records], indent=1))
    else:
        for r in records:
            print(_line(r))
    return 0


def _line(r: ImageRecord) -> str:
    size = format_size(r.virtual_size) if r.virtual_size is not None else "?"
    health = r.verdict + (f", parent broken: {r.parent_problem}" if r.parent_status == "broken" else "")
    return f"{r.path}  {r.format or '?'} {r.type or '?'} {size}  [{health}]"


def _show(args: Namespace) -> int:
    import json

    from vhdkit.library import Library  # loaded when the action runs, not for --help

    with Library(args.db) as library:
        tree = list(library.tree(args.path))
    if not tree:
        print(f"vhdkit: error: {redact(args.path)} is not in the library (scan its folder first)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"image": tree[0][1].as_dict(),
                          "tree": [{"depth": d, "path": r.path} for d, r in tree]}, indent=1))
        return 0
    top = tree[0][1]
    for name, value in top.as_dict().items():
        print(f"{name}: {value}")
    print("tree:")
    for depth, record in tree:
        print("  " + "  " * depth + ("└─ " if depth else "") + _line(record))
    return 0


def _init(args: Namespace) -> int:
    import json

    from vhdkit.library import init_blank_disks  # loaded when the action runs, not for --help

    done = init_blank_disks(args.folder)
    if args.json:
        print(json.dumps([{"path": p, "state": s} for p, s in done]))
    else:
        for path, state in done:
            print(f"{state}: {path}")
    return 0
