#!/usr/bin/env python3
"""Library scan speed: `vhdkit library scan` of a tree of small images, cold (an empty index)
then warm (nothing changed), vs the peer `find TREE -name '*.vhd*' | xargs qemu-img info` on the
same tree (qemu-img info takes one file: one process per file).

    python bench/library.py [--runs 3] [--count 10000]

The tree: COUNT images in 100 folders, half VHDX and half VHD (dynamic, 64 MiB, copies of two
images vhdkit made, so making the tree is fast). Whole processes, vhdkit's installed copy, page
cache warm (every tool reads the same files). Goals: cold >= 5x faster than the peer; warm
rescan >= 20,000 files/s.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from _common import installed_vhdkit, median, peak, table, timed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    import vhdkit

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--count", type=int, default=10_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vhdkit-bench-library-", dir="/var/tmp"))
    try:
        exe = installed_vhdkit(work)
        tree = work / "tree"
        models = {}
        for fmt in ("vhdx", "vhd"):
            models[fmt] = work / f"model.{fmt}"
            vhdkit.create(models[fmt], 64 << 20, format=fmt).close()
        for i in range(args.count):
            folder = tree / f"f{i % 100}"
            folder.mkdir(parents=True, exist_ok=True)
            fmt = "vhdx" if i % 2 else "vhd"
            shutil.copyfile(models[fmt], folder / f"disk{i}.{fmt}")
        peer = f"find {tree} -name '*.vhd*' -print0 | xargs -0 -n 1 qemu-img info >/dev/null"
        cold, warm, peers = [], [], []
        for run in range(args.runs + 1):  # the first round warms up untimed and learns the peak RSS
            db = work / f"lib{run}.sqlite3"
            cold.append(timed([exe, "library", "scan", str(tree), "--db", str(db)], rss=not run))
            warm.append(timed([exe, "library", "scan", str(tree), "--db", str(db)], rss=not run))
            peers.append(timed(["sh", "-c", peer], rss=not run))
        rss = {"cold": cold.pop(0), "warm": warm.pop(0), "peer": peers.pop(0)}
        n = args.count
        rows = [("vhdkit library scan (cold)", f"{median(cold):.2f}", f"{n / median(cold):,.0f}",
                 f"{median(peers) / median(cold):.1f}x", peak(rss['cold'])),
                ("vhdkit library scan (warm)", f"{median(warm):.2f}", f"{n / median(warm):,.0f}",
                 f"{median(peers) / median(warm):.1f}x", peak(rss['warm'])),
                ("find | xargs qemu-img info", f"{median(peers):.2f}", f"{n / median(peers):,.0f}", "1.0x",
                 peak(rss["peer"]) + " (largest qemu-img)")]
        print(f"{n:,} images (half VHDX, half VHD), median of {args.runs}")
        print(table(rows, ("tool", "seconds", "files/s", "vs peer", "peak RSS")))
        print("goals: cold >= 5x the peer; warm >= 20,000 files/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
