"""``vhdkit preflight``: will this live migration work?

    vhdkit preflight collect [--out host.json] [--name NAME] [--peer ADDR]... [--share URL]...
    vhdkit preflight collect --powershell > collect.ps1      (run it on each Hyper-V host)
    vhdkit preflight SOURCE.json DEST.json [MORE.json] [--vm VM] [--type TYPE] [--target URL]
                     [--netvirt MODEL] [--rate PPS] [--json | --junit FILE] [--strict]

The first file is the source host, the others destinations. One line per rule and host (pair):
pass, warn or fail, the reason, and the command that fixes it on the host it names. Exit 0 when
nothing fails, 2 on a failure, 1 on warnings with --strict (specs/preflight.md).
"""

from __future__ import annotations

import sys

from .parsing import RAW_DESCRIPTION, Namespace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Sequence

EXIT_OK, EXIT_WARNINGS, EXIT_FAILED = 0, 1, 2


def register(sub: Any, help: str) -> None:  # noqa: A002
    p = sub.add_parser("preflight", help=help, description=__doc__,
                       formatter_class=RAW_DESCRIPTION)
    p.add_argument("hosts", nargs="+", metavar="HOST.json", help="facts files: the source first ('collect' gathers)")
    p.add_argument("--vm", help="the VM to move (default: every VM the source lists)")
    p.add_argument("--type", dest="transfer", choices=("live", "live-vsm", "live-storage"), help="the transfer type")
    p.add_argument("--target", help="where Live Storage / Live VSM put the files (a folder or smb:// URL)")
    p.add_argument("--netvirt", metavar="MODEL", help="a vhdkit netvirt model: check room for NVGRE/VXLAN")
    p.add_argument("--rate", metavar="PPS", help="packets/s the VM's synthetic NIC must take (200kpps)")
    p.add_argument("--rule", type=int, action="append", metavar="N", help="only these rules (repeatable)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="the report as JSON")
    out.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report to FILE")
    p.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    collect = p.add_argument_group("collect (vhdkit preflight collect ...)")
    collect.add_argument("--out", metavar="FILE", help="write the facts here (default: standard output)")
    collect.add_argument("--name", help="the host's name in reports (default: its host name)")
    collect.add_argument("--peer", action="append", default=[], metavar="ADDR",
                         help="probe this address with don't-fragment packets of the path's MTU (repeatable)")
    collect.add_argument("--share", action="append", default=[], metavar="URL",
                         help="log in to this SMB share and record its dialect (repeatable)")
    collect.add_argument("--powershell", action="store_true",
                         help="print the script that gathers a Hyper-V host's facts instead")
    p.set_defaults(run=run)


def run(args: Namespace) -> int:
    if args.hosts[0] == "collect":
        if len(args.hosts) > 1:
            raise SystemExit("vhdkit preflight collect takes options only")
        return _collect(args)
    return _check(args)


def _collect(args: Namespace) -> int:
    if args.powershell:
        from vhdkit.preflight.hyperv import powershell_script

        sys.stdout.write(powershell_script())
        return 0
    from vhdkit.preflight.linux import collect

    facts = collect(name=args.name, peers=args.peer, shares=args.share)
    text = facts.to_json() + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        print(f"wrote {args.out}: {facts.host}, {len(facts.adapters)} adapters", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _check(args: Namespace) -> int:
    from vhdkit import preflight

    if len(args.hosts) < 2:
        raise SystemExit("vhdkit preflight: give the source host's facts and at least one destination's")
    hosts = [preflight.load(path) for path in args.hosts]
    options: dict[str, Any] = dict(vm=args.vm, transfer=args.transfer, target=args.target, rate=_rate(args.rate))
    if args.netvirt:
        from vhdkit.netvirt.loader import load as load_model

        options["netvirt"] = load_model(args.netvirt)
    results = preflight.run(hosts, only=args.rule, **options)
    code = exit_code(results, args.strict)
    if args.junit:
        write_junit(results, args.junit)
    if args.json:
        import json

        print(json.dumps({"schema": "vhdkit-preflight-report/1", "hosts": [h.host for h in hosts],
                          "exit_code": code, "results": [r.as_dict() for r in results]}, indent=2))
        return code
    for r in results:
        print(f"{r.status.upper():4}  {r.rule:>2} {r.title:<18} {r.hosts}: {r.reason}")
        if r.fix and r.status != "pass":
            print(f"{'':6}   fix: {r.fix}")
    counts = {s: sum(1 for r in results if r.status == s) for s in ("pass", "warn", "fail")}
    print(f"{counts['fail']} failed, {counts['warn']} warnings, {counts['pass']} passed")
    return code


def _rate(text: str | None) -> int | None:
    if text is None:
        return None
    from .vmbus import parse_rate  # (an unreadable rate exits with its message)

    return parse_rate(text)


def report_problems(results: Sequence[Any]) -> bool:
    """Print each result that is not a pass on stderr (as a command that runs the preflight first
    shows them); False when one of them fails."""
    for r in results:
        if r.status != "pass":
            print(f"preflight {r.status.upper()} {r.rule} {r.title} ({r.hosts}): {r.reason}"
                  + (f"\n  fix {r.fix}" if r.fix else ""), file=sys.stderr)
    return not any(r.status == "fail" for r in results)


def exit_code(results: Sequence[Any], strict: bool) -> int:
    if any(r.status == "fail" for r in results):
        return EXIT_FAILED
    if strict and any(r.status == "warn" for r in results):
        return EXIT_WARNINGS
    return EXIT_OK


def write_junit(results: Sequence[Any], path: str) -> None:
    """One testcase per rule and host (pair); a failure for fail (and for warn, as a failure of
    type warning, so CI shows it), the fix in the failure's text."""
    import socket
    import time
    import xml.etree.ElementTree as ET

    failed = sum(1 for r in results if r.status != "pass")
    root = ET.Element("testsuites", name="vhdkit preflight", tests=str(len(results)), failures=str(failed),
                      errors="0", time="0.000")
    suite = ET.SubElement(root, "testsuite", name="vhdkit preflight", tests=str(len(results)), failures=str(failed),
                          errors="0", skipped="0", time="0.000", timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"),
                          hostname=socket.gethostname())
    for r in results:
        case = ET.SubElement(suite, "testcase", name=f"{r.rule}. {r.title}: {r.hosts}",
                             classname=f"vhdkit.preflight.rule{r.rule}", time="0.000")
        if r.status != "pass":
            failure = ET.SubElement(case, "failure", message=r.reason, type=r.status)
            failure.text = r.reason + (f"\nfix {r.fix}" if r.fix else "")
        else:
            ET.SubElement(case, "system-out").text = r.reason
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
