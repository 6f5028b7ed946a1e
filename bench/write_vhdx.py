#!/usr/bin/env python3
"""Write throughput: vhdkit vs qemu-io on the same image layout, whole processes, same run.

    python bench/write_vhdx.py [--runs 5] [--size 4G] [--seq 1G] [--random 4000]

Each run starts from a fresh copy of one empty vhdkit-made dynamic VHDX (32 MiB blocks), so both
peers pay for allocating blocks. Workloads:
  sequential  --seq bytes from offset 0 in 1 MiB writes, then a flush
  random      --random 4 KiB writes at 4 KiB-aligned offsets spread over the disk (the same
              offsets for both), then a flush
qemu-io reads the same write commands from its standard input; vhdkit runs them in a loop of
pwrite() calls. Page cache, no O_DIRECT for either. Throughput counts the bytes written over the
whole process time, start-up included.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

from _common import hot_freed_memory, median, peak, table, timed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WRITER = r"""
import sys, vhdkit
path, plan = sys.argv[1], sys.argv[2]
with open(plan) as f:
    writes = [tuple(map(int, line.split())) for line in f]
with vhdkit.open(path, "r+") as disk:
    for offset, length in writes:
        disk.pwrite(offset, b"\x55" * length)
    disk.flush()
"""


def main() -> int:
    from vhdkit.units import MiB, format_size, parse_size

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", default="4G")
    ap.add_argument("--seq", default="1G")
    ap.add_argument("--random", type=int, default=4000)
    args = ap.parse_args()
    if not shutil.which("qemu-io"):
        print("qemu-io is needed (apt-get install qemu-utils)", file=sys.stderr)
        return 1
    import vhdkit

    size, seq = parse_size(args.size), parse_size(args.seq)
    rng = random.Random(42)
    plans = {
        "sequential 1 MiB": [(off, MiB) for off in range(0, seq, MiB)],
        "random 4 KiB": [(rng.randrange(0, size // 4096) * 4096, 4096) for _ in range(args.random)],
    }
    rows = []
    with hot_freed_memory() as memory_note, \
            tempfile.TemporaryDirectory(prefix="vhdkit-bench-", dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        work = Path(tmp)
        empty = work / "empty.vhdx"
        vhdkit.create(empty, size).close()
        image = work / "image.vhdx"
        for name, plan in plans.items():
            plan_file = work / "plan.txt"
            plan_file.write_text("".join(f"{o} {n}\n" for o, n in plan))
            script = "".join(f"write -q -P 0x55 {o} {n}\n" for o, n in plan) + "flush\n"
            ours, theirs = [], []
            for run in range(args.runs + 1):  # the first run warms up untimed and learns the peak RSS
                shutil.copyfile(empty, image)
                ours.append(timed([sys.executable, "-c", WRITER, str(image), str(plan_file)], rss=not run))
                shutil.copyfile(empty, image)
                theirs.append(timed(["qemu-io", "-f", "vhdx", str(image)], stdin=script.encode(), rss=not run))
            theirs_warm, ours_warm = theirs.pop(0), ours.pop(0)
            total = sum(n for _, n in plan)
            v, q = median(ours), median(theirs)
            rows.append((name, format_size(total), f"{total / q / MiB:.1f}", f"{total / v / MiB:.1f}",
                         f"{q / v:.2f}", peak(theirs_warm), peak(ours_warm)))
    print(f"write throughput on a {format_size(size)} dynamic VHDX (32 MiB blocks, fresh each run), "
          f"median of {args.runs} runs, MiB/s over whole-process time")
    print(table(rows, ("workload", "bytes", "qemu-io", "vhdkit", "vhdkit/qemu-io", "peak RSS qemu-io", "vhdkit")))
    print("goal: sequential vhdkit/qemu-io >= 1.0")
    print(memory_note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
