#!/usr/bin/env python3
"""Sequential read of a 1 GiB VHDX with ~60% of its blocks holding data: vhdkit vs qemu-img.

    python bench/read_vhdx.py [--runs 5] [--size 1G] [--fill 0.6] [--block-size 8M]

Peers, measured in the same run, each as a whole process (start-up included), page cache warm:
  vhdkit           python -c: vhdkit.open() and readinto() 4 MiB at a time to the end
  qemu-img→null    qemu-img convert -n -f vhdx IMG --target-image-opts driver=null-co
                   (qemu-img cannot convert to /dev/null: "Cannot grow device files"; null-co is
                   qemu's own discard target, so this is qemu's read path alone)
  qemu-img→raw     qemu-img convert -f vhdx -O raw IMG out.raw (a real convert, sparse output)
Prints the median of --runs for each and the ratio vhdkit / qemu-img→null (goal: <= 1.0).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import Timing, hot_freed_memory, peak, timed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vhdkit.units import format_size, parse_size  # noqa: E402

READER = """
import sys, vhdkit
buf = bytearray(4 << 20)
total = 0
with vhdkit.open(sys.argv[1]) as disk:
    while True:
        n = disk.readinto(buf)
        if not n:
            break
        total += n
assert total == disk.size, (total, disk.size)
"""


def build_image(workdir: Path, size: int, fill: float, block_size: int) -> Path:
    """A raw file with random data in ``fill`` of its blocks, converted to VHDX by qemu-img."""
    raw = workdir / "source.raw"
    image = workdir / "bench.vhdx"
    blocks = size // block_size
    rng = random.Random(1)
    chosen = sorted(rng.sample(range(blocks), round(blocks * fill)))
    with open(raw, "wb") as f:
        f.truncate(size)
        for b in chosen:
            f.seek(b * block_size)
            f.write(rng.randbytes(block_size))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vhdx", "-o", f"block_size={block_size}",
                    str(raw), str(image)], check=True)
    raw.unlink()
    return image


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", default="1G")
    ap.add_argument("--fill", type=float, default=0.6)
    ap.add_argument("--block-size", default="8M")
    args = ap.parse_args()
    if not shutil.which("qemu-img"):
        print("qemu-img is needed (apt-get install qemu-utils)", file=sys.stderr)
        return 1
    size, block_size = parse_size(args.size), parse_size(args.block_size)
    with hot_freed_memory() as memory_note, \
            tempfile.TemporaryDirectory(prefix="vhdkit-bench-", dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        work = Path(tmp)
        image = build_image(work, size, args.fill, block_size)
        out = work / "out.raw"
        peers = {
            "vhdkit": [sys.executable, "-c", READER, str(image)],
            "qemu-img→null": ["qemu-img", "convert", "-n", "-f", "vhdx", str(image), "--target-image-opts",
                              f"driver=null-co,size={size}"],
            "qemu-img→raw": ["qemu-img", "convert", "-f", "vhdx", "-O", "raw", str(image), str(out)],
        }
        warm = {}
        for name, cmd in peers.items():  # warm the page cache and the interpreter's files; peak RSS
            warm[name] = timed(cmd, rss=True)
        times: dict[str, list[Timing]] = {name: [] for name in peers}
        for _ in range(args.runs):  # interleaved, so noise hits every peer alike
            for name, cmd in peers.items():
                if out.exists():
                    out.unlink()
                times[name].append(timed(cmd))
        startup = statistics.median(timed([sys.executable, "-c", "import vhdkit"]) for _ in range(args.runs))

    print(f"sequential read of a {format_size(size)} VHDX, {args.fill:.0%} of {format_size(block_size)} blocks "
          f"holding data; median of {args.runs} runs, page cache warm")
    print(f"{'reader':<16}{'median s':>10}{'min s':>10}{'MiB/s':>10}{'peak RSS':>10}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<16}{med:>10.3f}{min(ts):>10.3f}{size / med / 2**20:>10.0f}{peak(warm[name]):>10}")
    ratio = statistics.median(times["vhdkit"]) / statistics.median(times["qemu-img→null"])
    print(f"ratio vhdkit / qemu-img→null: {ratio:.2f} (goal <= 1.0); "
          f"python start-up + import vhdkit alone: {startup:.3f} s")
    print(memory_note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
