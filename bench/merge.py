#!/usr/bin/env python3
"""Merge time: `vhdkit merge CHILD` (into its parent) and `vhdkit merge CHILD --to NEW` vs a full
`qemu-img convert -O vhdx` of the same disk: qemu-img cannot open a VHDX differencing chain, so
the only way on Linux today is to rewrite the whole disk, which is what it is timed doing (from a
flat VHDX with the chain's content).

    python bench/merge.py [--runs 5] [--size 1G]

Chain: a dynamic VHDX base (2 MiB blocks) with random data in 60% of its 8 MiB pieces, and a
child (2 MiB blocks) holding new data in 10% of the pieces. Each run starts from fresh copies
(`cp --sparse=always`, untimed, then `sync`); whole processes, vhdkit's installed copy. Every
result is compared with the flat image (qemu-img compare).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import Timing, hot_freed_memory, installed_vhdkit, median, peak, runs_and_size, table, timed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_chain(work: Path, size: int) -> tuple[Path, Path, Path]:
    import vhdkit

    rng = random.Random(42)
    piece = 8 << 20
    base, child, flat = work / "base.vhdx", work / "child.avhdx", work / "flat.vhdx"
    with vhdkit.create(base, size, block_size=2 << 20) as disk:
        for at in range(0, size, piece):
            if rng.random() < 0.6:
                disk.pwrite(at, rng.randbytes(piece))
    with vhdkit.create(child, format="vhdx", parent=base, block_size=2 << 20) as disk:
        for at in range(0, size, piece):
            if rng.random() < 0.1:
                disk.pwrite(at, rng.randbytes(piece))
    vhdkit.convert(child, flat, block_size=2 << 20)
    return base, child, flat


def main() -> int:
    from vhdkit.units import format_size

    runs, size_text, size = runs_and_size(__doc__)
    work = Path(tempfile.mkdtemp(prefix="vhdkit-bench-merge-", dir="/var/tmp"))
    try:
        vhdkit = installed_vhdkit(work)
        base, child, flat = make_chain(work, size)
        tools = ("vhdkit merge (into parent)", "vhdkit merge --to new", "qemu-img convert", "qemu-img convert -t writeback")
        times: dict[str, list[Timing]] = {t: [] for t in tools}
        run_dir = work / "run"
        warm: dict[str, Timing] = {}  # round 0, which learns the peak RSS
        with hot_freed_memory() as note:
            for rnd in range(runs + 1):  # round 0 warms up, untimed
                for tool in (tools if rnd % 2 else tools[::-1]):
                    shutil.rmtree(run_dir, ignore_errors=True)
                    run_dir.mkdir()
                    for f in (base, child, flat):
                        subprocess.run(["cp", "--sparse=always", str(f), str(run_dir / f.name)], check=True)
                    b, c, fl, out = (run_dir / base.name, run_dir / child.name, run_dir / flat.name,
                                     run_dir / "out.vhdx")
                    if tool == "vhdkit merge (into parent)":
                        t, result = timed([vhdkit, "merge", str(c)], settle=True, rss=not rnd), b
                    elif tool == "vhdkit merge --to new":
                        t, result = timed([vhdkit, "merge", str(c), "--to", str(out)], settle=True, rss=not rnd), out
                    else:
                        cache = ["-t", "writeback"] if tool.endswith("writeback") else []
                        t = timed(["qemu-img", "convert", *cache, "-f", "vhdx", "-O", "vhdx", "-o", "block_size=2097152",
                                   str(fl), str(out)], settle=True, rss=not rnd)
                        result = out
                    if rnd:
                        times[tool].append(t)
                    else:
                        warm[tool] = t
                    same = subprocess.run(["qemu-img", "compare", "-f", "vhdx", "-F", "vhdx", str(result), str(flat)],
                                          capture_output=True)
                    if same.returncode != 0:
                        print(f"{tool}: the result differs from the chain!", file=sys.stderr)
                        return 1
        q = median(times["qemu-img convert"])
        rows = [(tool, f"{median(ts):.3f}", f"{median(ts) / q:.2f}", peak(warm[tool])) for tool, ts in times.items()]
        print(f"merge a {size_text} chain (base {format_size(base.stat().st_size)}, child "
              f"{format_size(child.stat().st_size)}), median of {runs}")
        print(table(rows, ("tool", "seconds", "vs qemu-img convert", "peak RSS")))
        print(f"goal: vhdkit faster than the convert (only the child's data moves); {note}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
