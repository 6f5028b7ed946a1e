"""``vhdkit.check()``: validate an image's structure (and optional policies) for CI.

    report = vhdkit.check("disk.vhdx", policy=["type=fixed", "size-multiple=1MiB"])
    report.verdict      # "clean", "leaks", "corrupt", "policy", "incomplete", "in use" or "not checked"
    report.exit_code    # 0, 3, 2, 4, 1, 1 (validation/report.py has the table)
    for finding in report.findings: print(finding)

The check never writes to the file. Findings carry a severity (error, leak, warning, policy,
incomplete), the structure as the spec names it, its file offset and a sentence.
"""

from __future__ import annotations

import os
import time

from .. import formats
from ..errors import ImageInUseError, VhdkitError
from ..formats import Format
from ..storage import Borrowed, Store, open_store, redact
from ..validation.policy import Rule, apply_rules, parse_rules
from ..validation.report import ERROR, INCOMPLETE, LEAK, POLICY, WARNING, Finding, Report, worst_exit_code
from .open import open_image

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence


def check(target: str | os.PathLike[str] | Store, *, policy: Sequence[str] | Sequence[Rule] = (),
          allowed_parent_dirs: Sequence[str | os.PathLike[str]] | None = None,
          check_parent: bool = True, repair: bool = False, strict: bool = False) -> Report:
    """Check one image against its format's rules and the ``policy`` rules (strings as on the
    command line, or Rules); a failure to check at all is in ``report.failure`` (exit code 1).
    The verdicts and exit codes are in vhdkit.validation.report; ``strict`` makes warnings (damage
    the image survives, such as one bad copy of a doubled structure) count as corruption.

    ``target`` is a path, a URL, or an open Store (checked as it is, and left open; a
    differencing disk's parent is not looked for, having no folder to look in).
    ``repair``: fix what is safe to fix (see vhdkit.validation.repair), then check again; the report
    is the second check's, with ``repairs`` saying what was changed (paths and URLs only)."""
    rules = _expand(policy)
    report = _check(target, rules, allowed_parent_dirs, check_parent, strict)
    if not repair or report.failure is not None or not report.findings:
        return report
    if not isinstance(target, (str, os.PathLike)):
        raise ValueError("repair needs a path or URL, not an open store")
    fmt = formats.get(report.format) if report.format else None
    if fmt is None or fmt.repair is None:
        return report
    done: list[str] = []
    for _ in range(3):  # a repair can uncover more to repair: a replayed log may leave a trailing leak
        try:
            did: list[str] = fmt.load("repair")(target, report)
        except VhdkitError as e:
            report.failure = f"repair failed, nothing more was changed: {e}"
            report.repairs = done
            return report
        done += did
        report = _check(target, rules, allowed_parent_dirs, check_parent, strict)
        if not did or report.failure is not None or not report.findings:
            break
    report.repairs = done
    return report


def check_folder(folder: str | os.PathLike[str], **options: object) -> list[Report]:
    """``check`` of every disk image in ``folder`` (by name: .vhdx, .avhdx, .vhd, .avhd), and a
    report of each temporary file a killed create or convert left there (a leak: nothing refers
    to it and no process will finish it; the next run on the same target removes it)."""
    reports = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.lower().endswith(formats.DISK_EXTENSIONS) and entry.is_file():
            reports.append(check(entry.path, **options))  # type: ignore[arg-type]
    from .leftovers import stale_temporaries  # a folder's check only

    for temp in stale_temporaries(folder):
        report = Report(temp)
        size = os.lstat(temp).st_size
        report.add(LEAK, "temporary file", None, "left by a create or convert that did not finish (its process "
                   "is gone, nobody holds it): remove it, or run the same command again, which does", size)
        report.leaked_bytes = size
        reports.append(report)
    return reports


def _check(target: str | os.PathLike[str] | Store, rules: list[Rule],
           allowed_parent_dirs: Sequence[str | os.PathLike[str]] | None, check_parent: bool,
           strict: bool = False) -> Report:
    path = target if isinstance(target, (str, os.PathLike)) else None  # else a Store, checked as it is
    report = Report(redact(path) if path is not None else target.url, strict=strict)  # type: ignore[union-attr]
    start = time.perf_counter()
    try:
        store: Store = open_store(path) if path is not None else target  # type: ignore[assignment]
    except VhdkitError as e:
        report.failure = str(e)
        report.in_use = isinstance(e, ImageInUseError)
        return report
    try:
        fmt = formats.detect(store)
        report.format = fmt.name
        open_parent = None
        if check_parent and path is not None:
            open_parent = lambda: open_image(path, allowed_parent_dirs=allowed_parent_dirs)  # noqa: E731
        if fmt.check is not None:
            fmt.load("check")(store, report, open_parent)
        facts = _facts(store, fmt, report) if rules else None
        if facts is not None:
            apply_rules(rules, facts, report)
    except VhdkitError as e:  # a structure no check above expected to fail that way
        report.add(ERROR, "image", None, str(e))
    finally:
        if path is not None:
            store.close()
        report.seconds = time.perf_counter() - start
    return report


def _expand(policy: Sequence[str] | Sequence[Rule]) -> list[Rule]:
    out: list[Rule] = []
    for item in policy:
        out.extend(parse_rules([item]) if isinstance(item, str) else [item])
    return out


def _facts(store: Store, fmt: Format, report: Report) -> dict[str, object] | None:
    """What the rules are about, from the image opened on ``store`` (not closed: it is the caller's)."""
    facts: dict[str, object] = {"format": fmt.name}
    try:
        disk = fmt.open_disk(Borrowed(store), tolerate_checksum=True)
        info = disk.info()
        facts.update(type=info.type, virtual_size=info.virtual_size, block_size=info.block_size,
                     logical_sector_size=info.logical_sector_size, physical_sector_size=info.physical_sector_size)
    except VhdkitError as e:
        report.add(ERROR, "policy", None, f"the rules cannot be checked: the image does not open ({e})")
        return None
    return facts


__all__ = ["ERROR", "INCOMPLETE", "LEAK", "POLICY", "WARNING", "Finding", "Report", "Rule", "check", "check_folder",
           "parse_rules", "worst_exit_code"]
