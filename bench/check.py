#!/usr/bin/env python3
"""Check time: `vhdkit check` vs `qemu-img check`, whole processes, same files, same run.

    python bench/check.py [--runs 7]

Images: a 64 TiB dynamic VHDX (32 MiB blocks: a BAT of 2,097,152 payload entries, 16 MiB, with
a few blocks allocated) and a 60 GiB one (1,920 entries, 40 blocks holding data), both made by
vhdkit, and the same two sizes made by qemu-img. Also printed: vhdkit.check() inside one process
(no interpreter start-up), which is what grows with the metadata.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import hot_freed_memory, installed_vhdkit, median, mib, peak, peak_rss, reset_peak_rss, table, timed

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
    from vhdkit.units import GiB, MiB, TiB

    rows = []
    with hot_freed_memory() as memory_note, \
            tempfile.TemporaryDirectory(prefix="vhdkit-bench-", dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        work = Path(tmp)
        vhdkit_exe = installed_vhdkit(work)
        images = {}
        for label, size, blocks in (("64 TiB", 64 * TiB, 8), ("60 GiB", 60 * GiB, 40)):
            ours = work / f"vhdkit-{size}.vhdx"
            with vhdkit.create(ours, size) as disk:
                stride = size // blocks
                for i in range(blocks):
                    disk.pwrite(i * stride, b"\x5a" * MiB)
            images[f"{label} vhdkit-made"] = ours
            theirs = work / f"qemu-{size}.vhdx"
            subprocess.run(["qemu-img", "create", "-q", "-f", "vhdx", str(theirs), str(size)], check=True)
            images[f"{label} qemu-made"] = theirs
        for label, path in images.items():
            ours_cmd = [vhdkit_exe, "check", str(path)]
            theirs_cmd = ["qemu-img", "check", str(path)]
            ours_warm, theirs_warm = timed(ours_cmd, rss=True), timed(theirs_cmd, rss=True)  # and peak RSS
            ours, theirs, inproc = [], [], []
            inproc_peak = 0
            for _ in range(args.runs):
                ours.append(timed(ours_cmd))
                theirs.append(timed(theirs_cmd))
                reset_peak_rss()
                start = time.perf_counter()
                report = vhdkit.check(path)
                inproc.append(time.perf_counter() - start)
                inproc_peak = max(inproc_peak, peak_rss())
                assert report.verdict == "clean", report.findings
            v, q, i = median(ours), median(theirs), median(inproc)
            bat_entries = path.stat().st_size  # for the table: file size shows the metadata's size
            rows.append((label, f"{bat_entries / MiB:.0f} MiB", f"{q * 1000:.1f}", f"{v * 1000:.1f}", f"{v / q:.1f}",
                         f"{i * 1000:.1f}", peak(theirs_warm), peak(ours_warm), mib(inproc_peak)))
        python = str(Path(vhdkit_exe).parent / "python")
        startup = median([timed([python, "-c", "import vhdkit_cli.main, vhdkit.ops.check"]) for _ in range(args.runs)])
    print(f"check time, median of {args.runs} runs (ms); ratio = vhdkit / qemu-img (goal <= 1.0)")
    print(table(rows, ("image", "file", "qemu-img check", "vhdkit check", "ratio", "vhdkit.check() in-process",
                       "peak RSS qemu-img", "vhdkit", "in-process (whole bench process)")))
    print(f"python start-up + imports of the check command alone: {startup * 1000:.1f} ms")
    print(memory_note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
