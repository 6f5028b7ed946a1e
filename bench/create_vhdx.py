#!/usr/bin/env python3
"""Create time: `vhdkit create` vs `qemu-img create -f vhdx`, whole processes, same run.

    python bench/create_vhdx.py [--runs 7]

Cases: 16G and 60G, dynamic and fixed. Not like for like on "fixed": qemu-img's fixed VHDX is
sparse (every block ZERO, nothing reserved); vhdkit's reserves the space with fallocate, as
Hyper-V's fixed disks do. Also printed: vhdkit.create() timed inside one process (no interpreter
start-up), and the start-up of `python -c "import vhdkit_cli.main"` alone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import hot_freed_memory, installed_vhdkit, median, peak, table, timed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    if not shutil.which("qemu-img"):
        print("qemu-img is needed (apt-get install qemu-utils)", file=sys.stderr)
        return 1
    import vhdkit

    rows = []
    with hot_freed_memory() as memory_note, \
            tempfile.TemporaryDirectory(prefix="vhdkit-bench-", dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        work = Path(tmp)
        vhdkit_exe = installed_vhdkit(work)
        for size in ("16G", "60G"):
            for kind in ("dynamic", "fixed"):
                ours, theirs, inproc = [], [], []
                target = work / "disk.vhdx"
                qopts = ["-o", "subformat=fixed"] if kind == "fixed" else []
                for run in range(args.runs + 1):  # the first run warms up untimed and learns the peak RSS
                    target.unlink(missing_ok=True)
                    ours.append(timed([vhdkit_exe, "create", str(target), "--size", size, "--type", kind], rss=not run))
                    target.unlink()
                    theirs.append(timed(["qemu-img", "create", "-q", "-f", "vhdx", *qopts, str(target), size],
                                        rss=not run))
                    target.unlink()
                    start = time.perf_counter()
                    vhdkit.create(target, vhdkit.units.parse_size(size), type=kind).close()
                    inproc.append(time.perf_counter() - start)
                    target.unlink()
                theirs_warm, ours_warm, _ = theirs.pop(0), ours.pop(0), inproc.pop(0)
                q, v, i = median(theirs), median(ours), median(inproc)
                rows.append((f"{size} {kind}", f"{q * 1000:.1f}", f"{v * 1000:.1f}", f"{v / q:.1f}",
                             f"{i * 1000:.1f}", f"{i / q:.2f}", peak(theirs_warm), peak(ours_warm)))
        python = str(Path(vhdkit_exe).parent / "python")  # the installed copy's interpreter
        startup = median([timed([python, "-c", "import vhdkit_cli.main"]) for _ in range(args.runs)])
        bare = median([timed([python, "-c", "pass"]) for _ in range(args.runs)])
        qemu_floor = median([float(r[1]) for r in rows]) / 1000
    print(f"create time, median of {args.runs} runs (ms); ratio = vhdkit / qemu-img (goal <= 2.0)")
    print(table(rows, ("case", "qemu-img", "vhdkit cmd", "ratio", "vhdkit.create()", "ratio",
                       "peak RSS qemu-img", "vhdkit cmd")))
    print(f"python start-up + imports of the vhdkit command alone: {startup * 1000:.1f} ms; "
          f"a bare `python -c pass`: {bare * 1000:.1f} ms = {bare / qemu_floor:.1f}x qemu-img's whole create, "
          f"so 2x qemu-img leaves {max(0.0, 2 * qemu_floor - bare) * 1000:.1f} ms for every import and all the work")
    print(memory_note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
