"""``vhdkit.check()``: validate an image's structure (and optional policies) for CI.

    report = vhdkit.check("disk.vhdx", policy=["type=fixed", "size-multiple=1MiB"])
    report.verdict      # "clean", "leaks", "corrupt" or "not checked"
    report.exit_code    # as qemu-img check: 0, 3, 2, 1
    for finding in report.findings: print(finding)

The check never writes to the file. Findings carry a severity (error, leak, warning), the
structure as the spec names it, its file offset and a sentence.
"""

from __future__ import annotations

import os
import time
from typing import Sequence

from ..errors import VhdkitError
from ..open import detect_format
from ..open import open as open_image
from ..storage import open_store
from .policy import Rule, apply_rules, parse_rules
from .report import ERROR, LEAK, WARNING, Finding, Report, worst_exit_code


def check(target: str | os.PathLike[str], *, policy: Sequence[str] | Sequence[Rule] = (),
          allowed_parent_dirs: Sequence[str | os.PathLike[str]] | None = None,
          check_parent: bool = True, repair: bool = False) -> Report:
    """Check one image against its format's rules and the ``policy`` rules (strings as on the
    command line, or Rules); a failure to check at all is in ``report.failure`` (exit code 1).

    ``repair``: fix what is safe to fix (see vhdkit.check.repair), then check again; the report
    is the second check's, with ``repairs`` saying what was changed."""
    report = _check(target, _expand(policy), allowed_parent_dirs, check_parent)
    if not repair or report.failure is not None or not report.findings:
        return report
    from .repair import repair as run_repairs

    try:
        done = run_repairs(target, report)
    except VhdkitError as e:
        report.failure = f"repair failed, nothing more was changed: {e}"
        return report
    after = _check(target, _expand(policy), allowed_parent_dirs, check_parent)
    after.repairs = done
    return after


def _check(target: str | os.PathLike[str], rules: list[Rule],
           allowed_parent_dirs: Sequence[str | os.PathLike[str]] | None, check_parent: bool) -> Report:
    report = Report(os.fspath(target))
    start = time.perf_counter()
    try:
        store = open_store(target)
    except VhdkitError as e:
        report.failure = str(e)
        return report
    try:
        fmt = detect_format(store)
        report.format = fmt
        open_parent = (lambda: open_image(target, allowed_parent_dirs=allowed_parent_dirs)) if check_parent else None
        if fmt == "vhdx":
            from .vhdx import check_vhdx

            check_vhdx(store, report, open_parent)
        elif fmt == "vhd":
            from .vhd import check_vhd

            check_vhd(store, report, open_parent)
        if rules:
            apply_rules(rules, _facts(target, fmt, report), report)
    except VhdkitError as e:  # a structure no check above expected to fail that way
        report.add(ERROR, "image", None, str(e))
    finally:
        store.close()
        report.seconds = time.perf_counter() - start
    return report


def _expand(policy: Sequence[str] | Sequence[Rule]) -> list[Rule]:
    out: list[Rule] = []
    for item in policy:
        out.extend(parse_rules([item]) if isinstance(item, str) else [item])
    return out


def _facts(target: str | os.PathLike[str], fmt: str, report: Report) -> dict[str, object]:
    facts: dict[str, object] = {"format": fmt}
    try:
        with open_image(target, format=fmt, resolve_parents=False, tolerate_checksum=True) as disk:
            info = disk.info()
            facts.update(type=info.type, virtual_size=info.virtual_size, block_size=info.block_size,
                         logical_sector_size=info.logical_sector_size,
                         physical_sector_size=info.physical_sector_size)
    except VhdkitError as e:
        report.add(ERROR, "policy", None, f"the rules cannot be checked: the image does not open ({e})")
    return facts


__all__ = ["ERROR", "LEAK", "WARNING", "Finding", "Report", "Rule", "check", "parse_rules", "worst_exit_code"]
