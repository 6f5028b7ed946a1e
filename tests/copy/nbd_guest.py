#!/usr/bin/python3
"""An outside guest for live-migration tests and benchmarks: libnbd, another process.

Writes ``--block`` bytes at ``--rate`` per second (open loop) to random aligned offsets of an NBD
export, each block stamped <seq:u64><offset:u64> repeated, and applies every acknowledged write
to ``--shadow`` (a copy of the disk's first content), so the shadow is what the disk must hold.
Stops on SIGTERM/SIGINT or after ``--seconds``; ``--log`` gets one record per write
(seq, offset, scheduled, started, ended: CLOCK_MONOTONIC ns) for latency by phase.

Needs Debian's python3-libnbd (run with /usr/bin/python3).
"""

import argparse
import os
import random
import signal
import struct
import time

import nbd

RECORD = struct.Struct("<QQqqq")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", required=True, help="e.g. nbd+unix:///?socket=/tmp/x.sock")
    ap.add_argument("--shadow", required=True)
    ap.add_argument("--log")
    ap.add_argument("--block", type=int, default=64 * 1024)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--hot", action="store_true", help="90%% of the writes to the first 5%% of the disk")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--ready-file", help="created once connected")
    args = ap.parse_args()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    h = nbd.NBD()
    h.connect_uri(args.uri)
    slots = h.get_size() // args.block
    rng = random.Random(args.seed)
    shadow = os.open(args.shadow, os.O_WRONLY)
    log = open(args.log, "wb") if args.log else None
    if args.ready_file:
        open(args.ready_file, "w").close()
    period = 1e9 / args.rate
    start = due = time.monotonic_ns()
    seq = 0
    while not stop and time.monotonic_ns() - start < args.seconds * 1e9:
        now = time.monotonic_ns()
        if now < due:
            time.sleep((due - now) / 1e9)
            if stop:
                break
        scheduled = int(due)
        due += period
        slot = rng.randrange(max(1, slots // 20)) if args.hot and rng.random() < 0.9 else rng.randrange(slots)
        offset = slot * args.block
        seq += 1
        data = struct.pack("<QQ", seq, offset) * (args.block // 16)
        began = time.monotonic_ns()
        h.pwrite(data, offset)
        ended = time.monotonic_ns()
        os.pwrite(shadow, data, offset)  # only once acknowledged
        if log:
            log.write(RECORD.pack(seq, offset, scheduled, began, ended))
    if log:
        log.close()
    os.close(shadow)
    h.shutdown()
    print(seq, flush=True)


if __name__ == "__main__":
    main()
