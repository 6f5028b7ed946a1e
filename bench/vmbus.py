#!/usr/bin/env python3
"""Packets/s through a VMBus ring shared by two processes (a 1 MiB data area in /dev/shm), with
every packet numbered and checksummed and checked by the receiver, at 64, 256 and 1,500 bytes of
payload. The peer, measured in the same run: the same ring driven by the C program the tests
use (tests/vmbus/ring_peer.c, gcc -O2), a C writer and a C reader that also check every packet;
that is about what the ring's layout allows on this machine.

    python bench/vmbus.py [--runs 5] [--count 300000]

Goal: more than the 260,000 packets/s the native stack reached in the published account, at 256
bytes (vhdkit's row). Medians of the runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import median, mib, peak_rss, reported_peak_rss, reset_peak_rss, table, under_gnu_time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vhdkit.vmbus.channel import map_ring, two_processes  # noqa: E402


def c_pair(exe: str, size: int, count: int) -> tuple[float, int]:
    """(packets/s, the larger peak RSS of the C writer and reader in bytes, by GNU time)."""
    fd, path = tempfile.mkstemp(prefix="vhdkit-ring-", dir="/dev/shm")
    os.close(fd)
    reports = [tempfile.NamedTemporaryFile("r", prefix="vhdkit-bench-rss-") for _ in range(2)]
    try:
        mapping, ring = map_ring(path, 1 << 20)
        start = time.perf_counter()
        reader = subprocess.Popen(under_gnu_time([exe, "read", path, str(count)], reports[0].name),
                                  stdout=subprocess.PIPE, text=True)
        writer = subprocess.run(under_gnu_time([exe, "write", path, str(count), str(size)], reports[1].name),
                                capture_output=True, text=True)
        out, _ = reader.communicate()
        elapsed = time.perf_counter() - start
        if writer.returncode or reader.returncode or not out.startswith(f"ok {count}"):
            raise SystemExit(f"the C pair failed: {writer.stdout} {out}")
        del ring
        mapping.close()
        return count / elapsed, max(reported_peak_rss(r) for r in reports)
    finally:
        os.unlink(path)
        for r in reports:
            r.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--count", type=int, default=300_000)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="vhdkit-bench-vmbus-")
    exe = os.path.join(work, "ring_peer")
    subprocess.run(["gcc", "-O2", "-o", exe, str(ROOT / "tests/vmbus/ring_peer.c")], check=True)
    rows = []
    for size in (64, 256, 1500):
        ours, peer = [], []
        sender_peak = receiver_peak = peer_peak = 0
        for _ in range(args.runs):
            reset_peak_rss()
            result = two_processes(size, count=args.count)
            sender_peak = max(sender_peak, peak_rss())
            receiver_peak = max(receiver_peak, result.receiver_peak_rss)
            if result.bad or result.received != args.count:
                raise SystemExit(f"{size} bytes: {result}")
            ours.append(result.packets_per_second)
            rate, c_peak = c_pair(exe, size, args.count)
            peer.append(rate)
            peer_peak = max(peer_peak, c_peak)
        rows.append((str(size), f"{median(ours):,.0f}", f"{median(peer):,.0f}", f"{median(ours) / median(peer):.2f}",
                     f"{median(ours) * size / 1e6:,.0f}", mib(sender_peak), mib(receiver_peak), mib(peer_peak)))
    print(f"{args.count:,} numbered packets through a 1 MiB ring, two processes, median of {args.runs}")
    print(table(rows, ("payload bytes", "vhdkit packets/s", "C peer packets/s", "vhdkit/C", "vhdkit MB/s",
                       "peak RSS vhdkit sender", "receiver", "C peer")))
    print("goal: vhdkit > 260,000 packets/s at 256 bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
