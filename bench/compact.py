#!/usr/bin/env python3
"""Compact time: `vhdkit compact` vs `qemu-img convert -O vhdx` of the same image, which is the
only way to give the space back on Linux today (qemu-img has no compact for VHDX).

    python bench/compact.py [--runs 5] [--size 1G]

Source: a dynamic VHDX (2 MiB blocks) with random data in 60% of its 8 MiB pieces, of which the
guest then zeroed every other piece. Each run starts from a fresh copy of that file, untimed, then
`sync`: `cp --sparse=always` (the zeroed blocks become holes in the file, as a guest's TRIM or a
sparse-aware copy leaves them: both tools skip reading them) and `cp --sparse=never` (every zero
byte is stored and must be read). Whole processes; vhdkit's installed copy is timed
(bench/README.md). Both end with the same content (checked); the table gives the median time, the
resulting file size, and the ratio to qemu-img's default run on the same copy. vhdkit compact is
crash-safe: it flushes before every log entry (14 fsyncs here); qemu-img convert by default never
flushes its target, so the -t writeback row (one flush at the end) is the like-for-like peer.
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


def make_source(path: Path, size: int) -> None:
    import vhdkit

    rng = random.Random(42)
    piece = 8 << 20
    with vhdkit.create(path, size, block_size=2 << 20) as disk:
        data = [at for at in range(0, size, piece) if rng.random() < 0.6]
        for at in data:
            disk.pwrite(at, rng.randbytes(piece))
        for at in data[::2]:
            disk.pwrite(at, bytes(piece))


def main() -> int:
    from vhdkit.units import format_size

    runs, size_text, size = runs_and_size(__doc__)
    work = Path(tempfile.mkdtemp(prefix="vhdkit-bench-compact-", dir="/var/tmp"))
    try:
        vhdkit = installed_vhdkit(work)
        source = work / "source.vhdx"
        make_source(source, size)
        tools = ("vhdkit compact", "qemu-img convert", "qemu-img convert -t writeback")
        times: dict[tuple[str, str], list[Timing]] = {(copy, tool): [] for copy in ("sparse", "dense") for tool in tools}
        sizes: dict[tuple[str, str], int] = {}
        warm: dict[tuple[str, str], Timing] = {}  # the untimed first round, which learns the peak RSS
        with hot_freed_memory() as note:
            for run in range(runs + 1):  # the first round warms up, untimed
                for key in (list(times) if run % 2 else list(reversed(times))):
                    layout, tool = key
                    copy = work / "copy.vhdx"
                    out = work / "out.vhdx"
                    for p in (copy, out):
                        p.unlink(missing_ok=True)
                    subprocess.run(["cp", f"--sparse={'always' if layout == 'sparse' else 'never'}", str(source), str(copy)],
                                   check=True)
                    if tool == "vhdkit compact":
                        t = timed([vhdkit, "compact", str(copy)], settle=True, rss=not run)
                        result = copy
                    else:  # qemu-img's default target cache is "unsafe" (never flushed); -t writeback flushes
                        cache = ["-t", "writeback"] if tool.endswith("writeback") else []
                        t = timed(["qemu-img", "convert", *cache, "-f", "vhdx", "-O", "vhdx", "-o",
                                   "block_size=2097152", str(copy), str(out)], settle=True, rss=not run)
                        result = out
                    if run:
                        times[key].append(t)
                    else:
                        warm[key] = t
                    sizes[key] = result.stat().st_size
                    same = subprocess.run(["qemu-img", "compare", "-f", "vhdx", "-F", "vhdx", str(result), str(source)],
                                          capture_output=True)
                    if same.returncode != 0:
                        print(f"{tool} changed the content!", file=sys.stderr)
                        return 1
        rows = []
        for (layout, tool), ts in times.items():
            peer = median(times[(layout, "qemu-img convert")])
            rows.append((f"{layout} copy", tool, f"{median(ts):.3f}", format_size(sizes[(layout, tool)]),
                         f"{median(ts) / peer:.2f}", peak(warm[(layout, tool)])))
        print(f"compact a {size_text} dynamic VHDX ({format_size(source.stat().st_size)} file, half its data "
              f"zeroed by the guest), median of {runs}")
        print(table(rows, ("source file", "tool", "seconds", "file after", "vs qemu-img", "peak RSS")))
        print(f"goal: vhdkit faster than the convert; {note}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
