"""``vhdkit create FILE``: a new disk, as New-VHD and qemu-img create make them.

Sizes are binary: 60G, 60GB and 60GiB all mean 60 GiB (64424509440 bytes), as in qemu-img and
PowerShell; a bare number is bytes. The size actually used is printed with its unit.
"""

from __future__ import annotations

import vhdkit
from vhdkit import formats
from vhdkit.guid import Guid
from vhdkit.units import format_size, parse_size

from .info import render
from .parsing import RAW_DESCRIPTION, Namespace, argument_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argument_error(str(e)) from e


def _uuid(text: str) -> Guid:
    return Guid(text)


_uuid.__name__ = "UUID"  # argparse names the type in its message: "invalid UUID value: 'x'"


def register(sub: Any, help: str) -> None:  # noqa: A002
    p = sub.add_parser("create", help=help, description=__doc__,
                       formatter_class=RAW_DESCRIPTION)
    p.add_argument("image", help="the file to create (or an fsspec URL)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--size", type=_size, help="virtual size: bytes or 16G, 60GiB, 512M ... (binary units)")
    how.add_argument("--blank", choices=sorted(vhdkit.BLANK_SIZES),
                     help="VMM library's blank disk: small = 16 GiB, large = 60 GiB (dynamic)")
    p.add_argument("--format", choices=formats.NAMES,
                   help="image format (default: what the name's extension says, .vhdx/.vhd/.raw; else vhdx). "
                        "A format the extension contradicts is refused: Hyper-V goes by the extension")
    p.add_argument("--type", choices=["dynamic", "fixed", "differencing"],
                   help="dynamic (default), fixed (all space reserved up front), differencing (needs --parent)")
    p.add_argument("--parent", help="parent image of a differencing disk (its size and sectors are taken)")
    p.add_argument("--block-size", type=_size,
                   help="a power of two; VHDX 1M-256M (default 32M, 2M for differencing), VHD default 2M")
    p.add_argument("--logical-sector-size", type=int, choices=[512, 4096], help="default 512")
    p.add_argument("--physical-sector-size", type=int, choices=[512, 4096], help="default 4096")
    p.add_argument("--disk-id", type=_uuid, help="the virtual disk id (default: a new random one)")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.add_argument("--json", action="store_true", help="print what was made as JSON")
    p.set_defaults(run=run)


def run(args: Namespace) -> int:
    size = vhdkit.BLANK_SIZES[args.blank] if args.blank else args.size
    if size is None and args.parent is None:
        raise SystemExit("vhdkit create: error: give --size, --blank or --parent")
    try:
        disk = vhdkit.create(
            args.image, size, format=args.format, type=args.type, block_size=args.block_size,
            logical_sector_size=args.logical_sector_size, physical_sector_size=args.physical_sector_size,
            parent=args.parent, disk_id=args.disk_id, overwrite=args.force,
        )
    except ValueError as e:  # parameters Hyper-V would refuse: say why, no traceback
        raise SystemExit(f"vhdkit create: error: {e}") from e
    with disk:
        info = disk.info()
    if args.json:
        import json

        print(json.dumps(info.as_dict(), indent=2))
    else:
        print(f"created {info.path}: {info.type} {info.format.upper()} of {format_size(info.virtual_size)} "
              f"({info.virtual_size} bytes)")
        print(render(info))
    return 0
