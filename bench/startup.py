#!/usr/bin/env python3
"""Start-up: what `import vhdkit` and each `vhdkit` command cost above the interpreter's own start.

    python bench/startup.py [--runs 15] [--top 10]

Every row is a whole process of the installed copy (bench/_common.installed_vhdkit: compiled,
no editable-install hook), timed against `python -c pass` of the same interpreter, interleaved.
Rows: `import vhdkit`; `vhdkit --version`; each command's `--help` (its imports, and argparse:
help and mistakes are argparse's, an ordinary command line is read without it, cli/parsing.py);
and real small jobs: `info` and `check` of a blank 60 GiB VHDX, `create` of one. The goal is
<= 25 ms above `python -c pass` for each. Then, for the slowest rows, `-X importtime`'s ten
largest imports by their own time (self, microseconds), which say where the rest goes.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import Timing, median, peak, table, timed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
GOAL_MS = 25.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args()
    from _common import installed_vhdkit
    from cli.main import COMMANDS

    with tempfile.TemporaryDirectory(prefix="vhdkit-bench-", dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        work = Path(tmp)
        exe = installed_vhdkit(work)
        os.chdir(work)  # `python -c` puts the working folder first on sys.path: not the source tree
        python = str(Path(exe).parent / "python")
        disk = work / "blank.vhdx"
        subprocess.run([exe, "create", str(disk), "--size", "60G"], check=True, stdout=subprocess.DEVNULL)
        new = work / "new.vhdx"
        cases: list[tuple[str, list[str]]] = [
            ("import vhdkit", [python, "-c", "import vhdkit"]),
            ("vhdkit --version", [exe, "--version"]),
            ("vhdkit info 60G.vhdx", [exe, "info", str(disk)]),
            ("vhdkit check 60G.vhdx", [exe, "check", str(disk)]),
            ("vhdkit create 60G", [exe, "create", str(new), "--size", "60G"]),
            *((f"vhdkit {name} --help", [exe, name, "--help"]) for name in COMMANDS),
        ]
        bare: list[Timing] = []
        times: dict[str, list[Timing]] = {label: [] for label, _ in cases}
        for run in range(args.runs + 1):  # interleaved: every round times the bare interpreter too
            bare.append(timed([python, "-c", "pass"], rss=not run))  # the first round: untimed, peak RSS
            for label, argv in cases:
                new.unlink(missing_ok=True)
                times[label].append(timed(argv, rss=not run))
        warm = {label: times[label].pop(0) for label, _ in cases}
        bare_rss = bare.pop(0)
        base = median(bare)
        rows = []
        for label, _ in cases:
            t = median(times[label])
            over = (t - base) * 1000
            rows.append((label, f"{t * 1000:.1f}", f"{over:.1f}", "yes" if over <= GOAL_MS else "NO",
                         peak(warm[label])))
        print(f"whole process, median of {args.runs} runs (ms); python -c pass: {base * 1000:.1f} ms; "
              f"goal: <= {GOAL_MS:.0f} ms above it")
        print(table(rows, ("case", "ms", "above python", "goal met", "peak RSS")))
        print(f"peak RSS of python -c pass: {peak(bare_rss)}")
        worst = sorted(rows, key=lambda r: -float(r[2]))[:3]
        for label, *_ in worst:
            argv = dict(cases)[label]
            new.unlink(missing_ok=True)
            print(f"\n-X importtime, {label}: the {args.top} largest imports by their own time (us)")
            print(table(importtime(argv, python)[:args.top], ("module", "self us", "cumulative us")))
    return 0


def importtime(argv: list[str], python: str) -> list[tuple[str, str, str]]:
    """``-X importtime``'s lines for one run, largest own time first."""
    if argv[0] != python:  # the launcher: run its module through the same interpreter
        argv = [python, "-c", "import sys; from vhdkit_cli.main import run; sys.exit(run())", *argv[1:]]
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True, text=True)
    rows = []
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((m.group(4), m.group(1), m.group(2)))
    return sorted(rows, key=lambda r: -int(r[1]))


if __name__ == "__main__":
    raise SystemExit(main())
