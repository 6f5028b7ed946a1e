"""``vhdkit migrate --control PATH``: drive a live migration of a disk ``vhdkit serve`` runs.

    vhdkit migrate --control /run/vm1.ctl --to /srv/new/vm1.vhdx --complete
    vhdkit migrate --control /run/vm1.ctl --to smb://fs1/vms/vm1.vhdx     # leave it mirroring ("ready")
    vhdkit migrate --control /run/vm1.ctl --complete --delete-source       # switch over later
    vhdkit migrate --control /run/vm1.ctl --status | --cancel

Before anything is copied, the preflight rules that apply to the endpoints run (the target's
share is reachable and speaks SMB 3: specs/preflight.md, rule 15); a failure stops the migration
with the report (``--no-preflight`` skips them). The guest keeps running throughout; ``--complete`` switches it to the target with a pause of
milliseconds (printed), verifies the copy, and only then (``--delete-source``) removes the source.
Exit codes: 0 done, 1 the migration failed or was refused (the guest stays on the source).
"""

from __future__ import annotations

import time

from vhdkit import formats
from vhdkit.units import format_size

from .parsing import RAW_DESCRIPTION, Namespace
from .progress import ProgressBar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any, help: str) -> None:  # noqa: A002
    p = sub.add_parser("migrate", help=help, description=__doc__, formatter_class=RAW_DESCRIPTION)
    p.add_argument("--control", required=True, metavar="PATH", help="the control socket of vhdkit serve")
    p.add_argument("--to", metavar="TARGET", help="start a migration to this new image (path or smb:// URL)")
    p.add_argument("--format", choices=formats.NAMES, help="the target's format (default: by its name)")
    p.add_argument("--mode", choices=("write-blocking", "background"),
                   help="default background (the guest never waits for the target; turns write-blocking if it "
                        "stops converging)")
    p.add_argument("--speed", help="copy at most this much per second, e.g. 200M")
    p.add_argument("--granularity", help="dirty tracking grain, e.g. 64K (the default)")
    p.add_argument("--complete", action="store_true", help="switch the guest over once the copy is ready")
    p.add_argument("--delete-source", action="store_true", help="after a verified switch-over, delete the source")
    p.add_argument("--timeout", type=float, help="seconds to wait for the copy to be ready")
    p.add_argument("--detach", action="store_true", help="start the migration and return at once")
    p.add_argument("--status", action="store_true", help="show the migration's state and exit")
    p.add_argument("--cancel", action="store_true", help="stop the migration; the guest stays on the source")
    p.add_argument("--json", action="store_true", help="print the final status as JSON")
    p.add_argument("--no-preflight", action="store_true", help="do not check the target before copying")
    p.set_defaults(run=run)


def run(args: Namespace) -> int:
    from vhdkit.migration.service import request  # loaded when the command runs, not for --help

    def ask(cmd: str, **fields: Any) -> dict[str, Any]:
        answer = request(args.control, cmd, **fields)
        if not answer.get("ok"):
            raise SystemExit(_fail(args, answer.get("error", "refused")))
        return answer

    if args.status:
        return _show(args, ask("status"))
    if args.cancel:
        return _show(args, ask("cancel")["job"])
    if args.to:
        if not args.no_preflight and not _preflight(args.to):
            return _fail(args, "the preflight failed: nothing was copied, the guest stays on the source "
                               "(--no-preflight skips it)")
        started = ask("migrate", to=args.to, format=args.format, mode=args.mode, speed=args.speed,
                      granularity=args.granularity)
        if args.detach:
            return _show(args, started["job"])
    elif not args.complete:
        raise SystemExit(_fail(args, "say --to TARGET, --complete, --status or --cancel"))
    job = _follow(args, ask)
    if job["state"] != "ready":
        return _fail(args, f"the migration is {job['state']}: {job.get('error')}")
    if not args.complete:
        return _show(args, job)
    done = ask("complete", delete_source=args.delete_source)["job"]
    return _show(args, done)


def _preflight(target: str) -> bool:
    """Rule 15 for this host and ``target`` (Live Storage: the same host, a new place); prints
    what is not a pass; False when something fails."""
    import socket

    from vhdkit import preflight

    from .preflight import report_problems
    from vhdkit.preflight.facts import HostFacts
    from vhdkit.preflight.linux import share_facts

    here = HostFacts(host=socket.gethostname(), kind="linux",
                     shares=[share_facts(target)] if target.startswith("smb://") else [])
    return report_problems(preflight.run([here, here], only=[15], transfer="live-storage", target=target))


def _follow(args: Namespace, ask: Any) -> dict[str, Any]:
    """Until ready (or ended), with a progress bar on a terminal."""
    bar = ProgressBar("migrating")
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    try:
        while True:
            job = ask("wait", state="ready", timeout=0.2)["job"]
            bar(max(0, job["total"] - job["remaining"]), max(job["total"], 1))
            if job["state"] not in ("created", "copying", "paused"):
                return job
            if deadline is not None and time.monotonic() > deadline:
                return job
    finally:
        bar.close()


def _show(args: Namespace, job: dict[str, Any]) -> int:
    if args.json:
        import json

        print(json.dumps(job, indent=2))
        return 0 if job.get("state") not in ("failed",) else 1
    inner = job.get("job", job) or {}
    if "state" not in inner:
        print(f"{job.get('image')}: no migration")
        return 0
    line = (f"{inner['state']}: {inner['source']} -> {inner['target']}, copied {format_size(inner['copied'])}, "
            f"mirrored {format_size(inner['mirrored'])}")
    if inner.get("pause_ms") is not None:
        line += f", switch-over pause {inner['pause_ms']:.1f} ms"
    if inner.get("error"):
        line += f" ({inner['error']})"
    print(line)
    return 1 if inner["state"] == "failed" else 0


def _fail(args: Namespace, message: str) -> int:
    import sys

    print(f"vhdkit migrate: {message}", file=sys.stderr)
    return 1
