"""``vhdkit check IMAGE...``: validate disk images for CI.

Exit codes, as qemu-img check where it has one: 0 every image clean, 1 an image could not be
checked (or not completely: a differencing disk's parent is missing), 2 corruption, 3 leaks
only; and 4 an image is sound but breaks a --require rule. With several images, the worst code
in that order: 1, 2, 4, 3, 0. Warnings (damage an image survives) do not change the code unless
--strict. Output: one paragraph per image; --json for programs; --junit FILE for CI systems (one
testcase per image; a <failure> per error, leak or broken rule, an <error> when it could not be
checked).

Rules (--require, repeatable): format=vhdx|vhd, type=fixed|dynamic|differencing,
size-multiple=1MiB, max-size=2TiB, block-size=32MiB, logical-sector-size=512, no-parent;
--azure is format=vhd, type=fixed, size-multiple=1MiB, max-size=1023GiB.
"""

from __future__ import annotations

import os

from vhdkit.ops.check import Report, check, check_folder, parse_rules, worst_exit_code

from .options import add_force_share
from .parsing import RAW_DESCRIPTION, Namespace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any, help: str) -> None:  # noqa: A002
    p = sub.add_parser("check", help=help, description=__doc__, formatter_class=RAW_DESCRIPTION)
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="path or URL of an image; a folder: its images, and temporary files a killed run left")
    p.add_argument("--require", action="append", default=[], metavar="RULE", help="a rule the images must meet")
    p.add_argument("--azure", action="store_true", help="the rules Azure sets for uploaded VHDs")
    p.add_argument("--allowed-parent-dir", action="append", metavar="DIR",
                   help="parents must lie inside DIR (repeatable); others count as not found")
    p.add_argument("--no-parent", action="store_true", help="do not look for differencing disks' parents")
    add_force_share(p)
    p.add_argument("--repair", action="store_true",
                   help="fix what is safe (replay a log, rewrite a bad copy from the good one, cut leaked space "
                        "at the end), say what changed, and check again")
    p.add_argument("--strict", action="store_true",
                   help="warnings (one damaged copy of a doubled header, region table or footer) fail too (exit 2)")
    p.add_argument("--json", action="store_true", help="print the reports as JSON")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report to FILE")
    p.set_defaults(run=run)


def run(args: Namespace) -> int:
    texts = list(args.require) + (["azure"] if args.azure else [])
    try:
        rules = parse_rules(texts)
    except ValueError as e:
        raise SystemExit(f"vhdkit check: error: {e}") from None
    options = dict(policy=rules, allowed_parent_dirs=args.allowed_parent_dir, check_parent=not args.no_parent,
                   repair=args.repair, strict=args.strict)
    reports = []
    for image in args.images:
        if os.path.isdir(image):  # its images, and what a killed create or convert left there
            reports += check_folder(image, **options)
        else:
            reports.append(check(image, **options))
    code = worst_exit_code(reports)
    if args.json:
        import json

        print(json.dumps({"exit_code": code, "rules": [str(r) for r in rules],
                          "images": [r.as_dict() for r in reports]}, indent=2))
    else:
        print("\n".join(render(r) for r in reports))
    if args.junit:
        from .junit import write_junit

        write_junit(args.junit, reports)
    return code


def render(report: Report) -> str:
    if report.failure is not None:
        return f"{report.path}: could not be checked: {report.failure}"
    counts = f"{report.count('error')} errors, {report.count('leak')} leaks, {report.count('warning')} warnings"
    if report.count("policy"):
        counts += f", {report.count('policy')} rules broken"
    lines = [f"{report.path}: {report.verdict} ({report.format or 'not an image'}; {counts})"]
    lines += [f"  {finding}" for finding in report.findings]
    lines += [f"  repaired: {change}" for change in report.repairs]
    return "\n".join(lines)
