"""``vhdkit serve IMAGE --nbd ADDRESS [--control PATH]``: export a disk, and move it live.

The image is opened for writing and exported over NBD (``unix:PATH`` or ``tcp:HOST:PORT``):
qemu-io, qemu-img, nbdcopy, nbdinfo or the kernel's nbd client become the running guest. A unix
socket is its owner's only (0600). Beyond loopback the export needs TLS (``--tls-creds DIR``, laid
out as qemu's tls-creds-x509: ca-cert.pem, server-cert.pem, server-key.pem; clients must present a
certificate that CA signed, and with ``--tls-allow NAME`` one of those common names), or
``--insecure``. As qemu-nbd: one client at a time unless ``--max-clients``, 10 s to finish the
handshake, and the export answers only to its name (``--export-name``, default ""). The
control socket (JSON lines, see vhdkit/migration/service.py) starts a live migration of the disk while
the guest keeps writing; ``vhdkit migrate --control PATH`` drives it. Runs until SIGINT/SIGTERM or
a "stop" request; the disk is flushed and closed on the way out.
"""

from __future__ import annotations

import sys

from vhdkit.storage import redact

from .options import add_allowed_parent_dirs
from .parsing import Namespace, argument_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable


def register(sub: Any, help: str) -> None:  # noqa: A002
    p = sub.add_parser("serve", help=help, description=__doc__)
    p.add_argument("image", help="the disk to export (path or URL)")
    add_allowed_parent_dirs(p)
    p.add_argument("--nbd", required=True, metavar="ADDRESS", help="unix:PATH or tcp:HOST:PORT")
    p.add_argument("--control", metavar="PATH", help="a unix socket for migration requests")
    p.add_argument("--read-only", action="store_true", help="export read-only (no migration then)")
    p.add_argument("--export-name", default="", metavar="NAME", help='the name clients ask for (default "")')
    p.add_argument("--max-clients", type=_positive_int, default=1, metavar="N",
                   help="connections served at once; the next waits (default 1, as qemu-nbd)")
    p.add_argument("--handshake-limit", type=float, default=10.0, metavar="SECONDS",
                   help="a client must finish its handshake within this (default 10)")
    p.add_argument("--tls-creds", metavar="DIR",
                   help="serve over TLS only: DIR holds ca-cert.pem, server-cert.pem, server-key.pem")
    p.add_argument("--tls-allow", action="append", default=[], metavar="NAME",
                   help="a client certificate common name allowed (repeatable; default: any the CA signed)")
    p.add_argument("--insecure", action="store_true",
                   help="allow a TCP address off this machine without TLS (anyone there may read and write)")
    p.set_defaults(run=run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argument_error(f"must be at least 1, not {value}")
    return value


def run(args: Namespace) -> int:
    from vhdkit.migration.service import DiskService  # loaded when the command runs, not for --help

    if args.tls_allow and not args.tls_creds:
        raise SystemExit("vhdkit serve: --tls-allow needs --tls-creds")
    if not args.handshake_limit > 0:
        raise SystemExit("vhdkit serve: --handshake-limit must be a positive number of seconds")
    options: dict[str, Any] = dict(export_name=args.export_name, max_clients=args.max_clients,
                                   handshake_limit=args.handshake_limit, tls_clients=args.tls_allow)
    if args.tls_creds:
        from vhdkit.nbd.tls import tls_context_from_dir

        try:
            options["tls"] = tls_context_from_dir(args.tls_creds)
        except OSError as e:  # ssl.SSLError too
            raise SystemExit(f"vhdkit serve: cannot load TLS credentials from {args.tls_creds}: {e}") from e
    service = DiskService(args.image, read_only=args.read_only)

    def start() -> str:
        service.serve_nbd(args.nbd, insecure=args.insecure, **options)
        if args.control:
            service.serve_control(args.control)
        control = f"; control at {args.control}" if args.control else ""
        return f"serving {service.guest.name} ({service.guest.size} bytes) at {args.nbd}{control}"

    run_until_stopped(service, start, lambda: f"stopped; the disk is {redact(service.image)}")
    return 0


def run_until_stopped(server: Any, start: Callable[[], str], stopped: Callable[[], str]) -> None:
    """Start ``server`` (``start`` returns the line saying what it serves; a failure stops it),
    stop it on SIGINT or SIGTERM, and wait for that: the life of `vhdkit serve` and `vm serve`."""
    import signal  # here, not at the top: signal loads enum, which `serve --help` has no use for

    try:
        started = start()
    except BaseException:
        server.stop()
        raise
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.stop())
    print(started, flush=True)
    while not server.wait_stopped(0.5):
        pass
    print(stopped(), file=sys.stderr, flush=True)
