"""``vhdkit serve IMAGE --nbd ADDRESS [--control PATH]``: export a disk, and move it live.

The image is opened for writing and exported over NBD (``unix:PATH`` or ``tcp:127.0.0.1:PORT``):
qemu-io, qemu-img, nbdcopy, nbdinfo or the kernel's nbd client become the running guest. The
control socket (JSON lines, see vhdkit/migration/service.py) starts a live migration of the disk while
the guest keeps writing; ``vhdkit migrate --control PATH`` drives it. Runs until SIGINT/SIGTERM or
a "stop" request; the disk is flushed and closed on the way out.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from vhdkit.migration.service import DiskService
from vhdkit.storage import redact

from .options import add_allowed_parent_dirs


def register(sub: Any, help: str) -> None:  # noqa: A002
    p = sub.add_parser("serve", help=help, description=__doc__)
    p.add_argument("image", help="the disk to export (path or URL)")
    add_allowed_parent_dirs(p)
    p.add_argument("--nbd", required=True, metavar="ADDRESS", help="unix:PATH or tcp:HOST:PORT")
    p.add_argument("--control", metavar="PATH", help="a unix socket for migration requests")
    p.add_argument("--read-only", action="store_true", help="export read-only (no migration then)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    service = DiskService(args.image, read_only=args.read_only)
    try:
        service.serve_nbd(args.nbd)
        if args.control:
            service.serve_control(args.control)
    except BaseException:
        service.stop()
        raise
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: service.stop())
    control = f"; control at {args.control}" if args.control else ""
    print(f"serving {service.guest.name} ({service.guest.size} bytes) at {args.nbd}{control}", flush=True)
    while not service.wait_stopped(0.5):
        pass
    print(f"stopped; the disk is {redact(service.image)}", file=sys.stderr, flush=True)
    return 0
