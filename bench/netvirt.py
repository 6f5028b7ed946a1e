#!/usr/bin/env python3
"""Network virtualization speed on one core: CA->PA lookups in a table of 1 million records, and
NVGRE/VXLAN encapsulations, each next to the machine's ceiling for the same work in plain Python.

    python bench/netvirt.py [--runs 5] [--records 1000000]

Lookups: LookupTable.get(vsid, ca) for 1 million random (VSID, CA) pairs that are all present
(256 VSIDs x 3,907 CAs), vs a raw dict lookup of the same number of precomputed int keys (the
ceiling: a lookup cannot be cheaper than one dict probe with a ready key). Encapsulations: Tunnel.encapsulate of a
98-byte customer frame (an ICMP echo), NVGRE with a fixed FlowID and VXLAN with per-frame flow
entropy (a CRC-32 of the inner flow), vs the ceiling of one `bytes` concatenation of a prebuilt
42-byte header and the frame. Rates in millions per second, median of the runs.
Goals: >= 1 million lookups/s and >= 300,000 encapsulations/s.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import sys
import time
from pathlib import Path

from _common import median, mib, peak_rss, table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vhdkit.netvirt import LookupRecord, LookupTable, Tunnel, icmp_echo  # noqa: E402


def rate(fn, n: int) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--frames", type=int, default=300_000)
    args = ap.parse_args()
    rng = random.Random(1)
    pas = [ipaddress.ip_address(f"192.0.2.{h}") for h in range(1, 65)]
    per_vsid = -(-args.records // 256)
    records = []
    for v in range(256):
        vsid = 5000 + v
        base = int(ipaddress.ip_address("10.0.0.0"))
        for i in range(per_vsid):
            if len(records) == args.records:
                break
            records.append(LookupRecord(ipaddress.IPv4Address(base + i), vsid, 0x00155D000000 + len(records),
                                        pas[i % len(pas)], "{00000000-0000-0000-0000-000000000000}", f"vm{i}"))
    lookup = LookupTable(records)
    keys = [(r.vsid, int(r.ca)) for r in records]
    rng.shuffle(keys)
    raw = {c << 24 | v: True for v, c in keys}  # one int per key: the fewest probes a lookup can make
    int_keys = [c << 24 | v for v, c in keys]
    inner = icmp_echo(0x00155D000001, 0x00155D000002, ipaddress.ip_address("10.0.0.5"),
                      ipaddress.ip_address("10.0.0.7"), payload=bytes(56))
    nvgre = Tunnel("nvgre", "192.0.2.10", "192.0.2.20", 5001, flow_id=7)
    vxlan = Tunnel("vxlan", "192.0.2.10", "192.0.2.20", 6001)
    header = nvgre.encapsulate(b"")  # 42 bytes of outer headers
    frames = [inner] * args.frames

    def table_lookups() -> None:
        get = lookup.get
        for v, c in keys:
            if get(v, c) is None:
                raise AssertionError("a present record was not found")

    def dict_lookups() -> None:
        d = raw
        for k in int_keys:
            d[k]

    def encaps(tunnel: Tunnel):
        def run() -> None:
            enc = tunnel.encapsulate
            for f in frames:
                enc(f)
        return run

    def concat() -> None:
        h = header
        for f in frames:
            h + f

    cases = {"lookup (LookupTable.get)": (table_lookups, len(keys)), "ceiling: dict[int]": (dict_lookups, len(keys)),
             "NVGRE encapsulate": (encaps(nvgre), len(frames)), "VXLAN encapsulate": (encaps(vxlan), len(frames)),
             "ceiling: bytes + bytes": (concat, len(frames))}
    rates: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, (fn, n) in cases.items():
            rates[name].append(rate(fn, n))
    ceilings = {"lookup": median(rates["ceiling: dict[int]"]), "encap": median(rates["ceiling: bytes + bytes"])}
    rows = []
    for name, values in rates.items():
        ceiling = ceilings["lookup" if "dict" in name or "lookup" in name else "encap"]
        rows.append((name, f"{median(values) / 1e6:.2f}", f"{median(values) / ceiling:.2f}"))
    print(f"{len(records):,} lookup records, {len(frames):,} frames of {len(inner)} bytes, one core, median of {args.runs}")
    print(table(rows, ("operation", "million/s", "of ceiling")))
    print("goals: lookups >= 1.00 million/s, encapsulations >= 0.30 million/s")
    print(f"peak RSS of this process (the records, the LookupTable and the ceiling's dict): {mib(peak_rss())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
