"""``vhdkit convert SRC DST``: any format and type to any other (Convert-VHD, qemu-img convert).

The target format comes from -O or DST's extension (.vhdx .avhdx .vhd .avhd .raw .img). Only
what the source holds is read and written, so dynamic and raw targets stay sparse. A failed
conversion removes its half-made target; the source is only ever read.
"""

from __future__ import annotations

import vhdkit
from vhdkit import formats
from vhdkit.storage import redact
from vhdkit.units import format_size

from .create import _size
from .options import add_allowed_parent_dirs, add_force_share
from .parsing import RAW_DESCRIPTION, Namespace
from .progress import ProgressBar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any, help: str) -> None:  # noqa: A002
    p = sub.add_parser("convert", help=help, description=__doc__,
                       formatter_class=RAW_DESCRIPTION)
    p.add_argument("source")
    add_allowed_parent_dirs(p)
    add_force_share(p)
    p.add_argument("target")
    p.add_argument("-O", "--format", dest="format", choices=formats.NAMES, help="target format")
    p.add_argument("--type", choices=["dynamic", "fixed"], default="dynamic", help="target type (default dynamic)")
    p.add_argument("--block-size", type=_size, help="target block size")
    p.add_argument("--azure", action="store_true",
                   help="a fixed VHD for Azure: refuses sizes that are not a whole number of MiB")
    p.add_argument("--round-up", action="store_true", help="with --azure: grow to the next whole MiB instead")
    p.add_argument("--verify", action="store_true", help="read both back and compare")
    p.add_argument("--no-sync", action="store_true",
                   help="do not flush the target before returning (qemu-img convert's default): faster, "
                        "but a crash soon after may lose it")
    p.add_argument("--force", action="store_true",
                   help="replace an existing target; also read a source with a bad VHD checksum")
    p.add_argument("--json", action="store_true", help="print a summary as JSON")
    p.set_defaults(run=run)


def run(args: Namespace) -> int:
    bar = ProgressBar(f"converting {redact(args.source)}")
    try:
        stats = vhdkit.convert(
            args.source, args.target, format=args.format, type=args.type, block_size=args.block_size,
            overwrite=args.force, azure=args.azure, round_up=args.round_up, verify=args.verify,
            sync=not args.no_sync,
            progress=bar, tolerate_checksum=args.force,
        )
    except ValueError as e:
        raise SystemExit(f"vhdkit convert: error: {e}") from e
    finally:
        bar.close()
    if args.json:
        import json

        print(json.dumps({"source": redact(args.source), "target": redact(args.target), **stats.as_dict()}, indent=2))
    else:
        print(f"{redact(args.target)}: {format_size(stats.size)} converted in {stats.seconds:.2f} s; read "
              f"{format_size(stats.bytes_read)}, wrote {format_size(stats.bytes_written)}, skipped "
              f"{format_size(stats.bytes_skipped)} of zeros and holes" + (", verified" if stats.verified else ""))
    return 0
