#!/usr/bin/env python3
"""SMB throughput: 1 GiB written and read sequentially through vhdkit's SmbStore, through
smbprotocol's own ``open_file`` with 1 MiB chunks (the peer: what the library under us can do),
and on the local disk; one private Samba on loopback (tests/smb/samba.py, port 4446), same run.

    python bench/smb.py [--runs 5] [--size 1G]      (as root: it starts smbd)

Goal: vhdkit >= 90% of smbprotocol's throughput, both ways.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import hot_freed_memory, median, mib, peak_rss, reset_peak_rss, table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHUNK = 1 << 20


def main() -> int:
    from tests.smb.samba import Samba
    from vhdkit.units import MiB, parse_size

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", default="1G")
    args = ap.parse_args()
    size = parse_size(args.size)
    data = os.urandom(CHUNK)
    samba = Samba(Path("/tmp/vhdkit-bench-smb"), port=4446, shares=("bench",), read_only=())
    samba.start()
    os.environ["VHDKIT_SMB_PASSWORD"] = samba.password
    import smbclient

    from vhdkit.storage.smb import SmbStore

    opts = dict(port=samba.port, username=samba.user, password=samba.password)
    unc = rf"\\{samba.host}\bench\peer.bin"
    results: dict[str, dict[str, list[float]]] = {}

    peaks: dict[str, int] = {}

    def record(name: str, way: str, seconds: float) -> None:
        results.setdefault(name, {}).setdefault(way, []).append(size / seconds / MiB)
        peaks[name] = max(peaks.get(name, 0), peak_rss())  # the phase's peak: the last one ended at reset
        reset_peak_rss()

    try:
        with hot_freed_memory() as memory_note, tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
            local = Path(tmp) / "local.bin"
            reset_peak_rss()
            for _ in range(args.runs):
                # smbprotocol, 1 MiB requests (buffering=0)
                start = time.perf_counter()
                with smbclient.open_file(unc, "wb", buffering=0, **opts) as f:
                    for _ in range(size // CHUNK):
                        f.write(data)
                    f.flush()
                record("smbprotocol open_file", "write", time.perf_counter() - start)
                buf = bytearray(CHUNK)
                start = time.perf_counter()
                with smbclient.open_file(unc, "rb", buffering=0, **opts) as f:
                    while f.readinto(buf):
                        pass
                record("smbprotocol open_file", "read", time.perf_counter() - start)
                smbclient.remove(unc, **opts)
                # vhdkit's store
                url = samba.url("bench", "vhdkit.bin")
                start = time.perf_counter()
                store = SmbStore(url, create=True)
                for i in range(size // CHUNK):
                    store.pwrite(i * CHUNK, data)
                store.flush()
                store.close()
                record("vhdkit SmbStore", "write", time.perf_counter() - start)
                start = time.perf_counter()
                store = SmbStore(url)
                view = memoryview(bytearray(CHUNK))
                for i in range(size // CHUNK):
                    store.preadinto(i * CHUNK, view)
                store.close()
                record("vhdkit SmbStore", "read", time.perf_counter() - start)
                smbclient.remove(rf"\\{samba.host}\bench\vhdkit.bin", **opts)
                # local disk (page cache), the same loop
                start = time.perf_counter()
                with open(local, "wb", buffering=0) as f:
                    for _ in range(size // CHUNK):
                        f.write(data)
                    os.fsync(f.fileno())
                record("local disk", "write", time.perf_counter() - start)
                start = time.perf_counter()
                with open(local, "rb", buffering=0) as f:
                    while f.readinto(buf):
                        pass
                record("local disk", "read", time.perf_counter() - start)
                local.unlink()
    finally:
        samba.stop()
    peer = results["smbprotocol open_file"]
    rows = []
    for name, ways in results.items():
        w, r = median(ways["write"]), median(ways["read"])
        rows.append((name, f"{w:.0f}", f"{r:.0f}", f"{w / median(peer['write']):.0%}", f"{r / median(peer['read']):.0%}",
                     mib(peaks[name])))
    print(f"sequential {args.size} over SMB 3.1.1 on loopback, 1 MiB requests, median of {args.runs} (MiB/s)")
    print(table(rows, ("path", "write", "read", "write vs smbprotocol", "read vs smbprotocol",
                       "peak RSS (this process)")))
    print("goal: vhdkit >= 90% of smbprotocol both ways; " + memory_note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
