#!/usr/bin/env python3
"""Convert time: `vhdkit convert` vs `qemu-img convert`, with `cp --sparse=always` of the raw
image as the ceiling; whole processes, same run, page cache warm.

    python bench/convert.py [--runs 11] [--size 1G] [--fill 0.6] [--verbose]

Source: a raw image with random data in --fill of its 8 MiB pieces and holes elsewhere, and the
same content as a dynamic VHDX and VHD made by qemu-img. Pairs: vhdx->raw, raw->vhdx, vhd->vhdx.
Both tools write their default dynamic VHDX (qemu: 32 MiB blocks above 1 GiB... here its
default for the size; vhdkit: 32 MiB). qemu-img convert runs with its defaults; note that
vhdkit fsyncs the target before it reports success, qemu-img convert (cache=unsafe for the
target by default) does not, so a second vhdkit column shows the cost of that flush.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import Timing, hot_freed_memory, installed_vhdkit, median, peak, table, timed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    from vhdkit.units import MiB, format_size, parse_size

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--size", default="1G")
    ap.add_argument("--fill", type=float, default=0.6)
    ap.add_argument("--verbose", action="store_true", help="print every run's time")
    args = ap.parse_args()
    for tool in ("qemu-img", "cp"):
        if not shutil.which(tool):
            print(f"{tool} is needed", file=sys.stderr)
            return 1
    size = parse_size(args.size)
    rows = []
    with hot_freed_memory() as memory_note, \
            tempfile.TemporaryDirectory(prefix="vhdkit-bench-", dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        work = Path(tmp)
        vhdkit_exe = installed_vhdkit(work)
        raw = work / "src.raw"
        piece = 8 * MiB
        rng = random.Random(7)
        with open(raw, "wb") as f:
            f.truncate(size)
            for p in sorted(rng.sample(range(size // piece), round(size // piece * args.fill))):
                f.seek(p * piece)
                f.write(rng.randbytes(piece))
        sources = {"raw": raw, "vhdx": work / "src.vhdx", "vhd": work / "src.vhd"}
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vhdx", str(raw), str(sources["vhdx"])], check=True)
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic,force_size=on",
                        str(raw), str(sources["vhd"])], check=True)
        qfmt = {"raw": "raw", "vhdx": "vhdx", "vhd": "vpc"}
        out = work / "out"
        ceiling = []
        for _ in range(args.runs + 1):  # the first run is a warm-up, dropped below
            out.unlink(missing_ok=True)
            ceiling.append(timed(["cp", "--sparse=always", str(raw), str(out)], settle=True, rss=not ceiling))
        cp_warm, ceiling = ceiling[0], ceiling[1:]
        rss = []
        cp_time, cp_best = median(ceiling), min(ceiling)
        peers = {
            "qemu-img": lambda src, sf, df: ["qemu-img", "convert", "-f", qfmt[sf], "-O", qfmt[df], str(src), str(out)],
            "vhdkit --no-sync": lambda src, sf, df: [vhdkit_exe, "convert", str(src), str(out), "-O", df, "--no-sync"],
            "qemu-img -t writeback": lambda src, sf, df: ["qemu-img", "convert", "-t", "writeback", "-f", qfmt[sf],
                                                          "-O", qfmt[df], str(src), str(out)],
            "vhdkit": lambda src, sf, df: [vhdkit_exe, "convert", str(src), str(out), "-O", df],
        }
        for src_fmt, dst_fmt in (("vhdx", "raw"), ("raw", "vhdx"), ("vhd", "vhdx")):
            times: dict[str, list[Timing]] = {name: [] for name in peers}
            names = list(peers)
            warm = {}
            for name in names:  # untimed: warm the page cache, the interpreter's files, the allocator; peak RSS
                out.unlink(missing_ok=True)
                warm[name] = timed(peers[name](sources[src_fmt], src_fmt, dst_fmt), settle=True, rss=True)
            for run in range(args.runs):
                # Each round starts with another tool: this VM stalls some runs for ~1 s (the host
                # takes back freed memory), and a fixed order would pin the stalls on one tool.
                for name in names[run % len(names):] + names[: run % len(names)]:
                    out.unlink(missing_ok=True)
                    times[name].append(timed(peers[name](sources[src_fmt], src_fmt, dst_fmt), settle=True))
            out.unlink(missing_ok=True)
            if args.verbose:
                for name, ts in times.items():
                    print(f"{src_fmt} -> {dst_fmt} {name}: {' '.join(f'{t:.3f}' for t in ts)}", file=sys.stderr)
            m = {name: median(ts) for name, ts in times.items()}
            best = {name: min(ts) for name, ts in times.items()}
            rss.append((f"{src_fmt} -> {dst_fmt}", *(peak(warm[n]) for n in peers)))
            rows.append((f"{src_fmt} -> {dst_fmt}", *(f"{m[n]:.3f} ({best[n]:.3f})" for n in peers),
                         f"{m['vhdkit --no-sync'] / m['qemu-img']:.2f} ({best['vhdkit --no-sync'] / best['qemu-img']:.2f})",
                         f"{m['vhdkit'] / m['qemu-img -t writeback']:.2f} ({best['vhdkit'] / best['qemu-img -t writeback']:.2f})",
                         f"{cp_time / m['vhdkit --no-sync']:.0%} ({cp_best / best['vhdkit --no-sync']:.0%})"))
    print(f"convert {format_size(size)} with {args.fill:.0%} random data in 8 MiB pieces, holes elsewhere; "
          f"median (best) of {args.runs} runs, seconds, whole processes")
    print(table(rows, ("pair", *peers, "no-sync/qemu", "synced/synced", "no-sync vs cp")))
    print(f"ceiling: cp --sparse=always of the raw image, {cp_time:.3f} s (best {cp_best:.3f} s). "
          "Goals: vhdkit/qemu <= 1.0 and >= 75% of the ceiling's throughput")
    print(f"peak RSS, of the warm-up run (cp: {peak(cp_warm)})")
    print(table(rss, ("pair", *peers)))
    print(memory_note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
