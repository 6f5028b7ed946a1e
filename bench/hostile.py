#!/usr/bin/env python3
"""Hostile inputs: time and peak memory, vhdkit beside qemu-img / qemu-nbd in the same run.

    python bench/hostile.py [--runs 3] [--clients 200]

1. Giant BAT: a VHDX of a few hundred KiB on disk claiming 64 TiB in 1 MiB blocks (a 512 MiB BAT),
   and a differencing child of it (chain depth 2). `vhdkit info`/`check` of the child and the base
   against `qemu-img info`/`check` of the base (qemu-img cannot open a VHDX differencing disk).
2. Far log entry: a 64 MiB VHDX whose log zeroes 256 MiB at 8 GiB. The read-write open that
   replays it (`vhdkit check --repair`, `qemu-img check -r all`): time, peak RSS, and what the
   file then takes on disk (written zeros would take 256 MiB).
3. Idle NBD clients: `vhdkit serve` and `qemu-nbd`, each allowing --clients connections, with
   that many clients connected (handshake done) and idle: the server's resident memory before and
   after, and the time to connect them all.

Wall time and peak RSS of whole processes come from /usr/bin/time (GNU time's %e and %M).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _common import hot_freed_memory, installed_vhdkit, median, mib, status_bytes, table, timed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MiB, GiB, TiB = 1 << 20, 1 << 30, 1 << 40


def time_and_rss(cmd: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS in bytes) of one whole process; hostile inputs may make it fail."""
    run = timed(cmd, rss=True, check=False)
    assert run.peak_rss is not None
    return float(run), run.peak_rss


def giant_bat(work: Path, vhdkit_exe: str, runs: int) -> list[tuple[str, ...]]:
    import vhdkit

    base, child = work / "giant-base.vhdx", work / "giant-child.vhdx"
    with vhdkit.create(base, size=64 * TiB, block_size=MiB) as disk:
        disk.pwrite(64 * TiB - MiB, b"\xa5" * MiB)
    vhdkit.create(child, parent=base, block_size=MiB).close()
    rows = []
    cases = [("info, chain of 2", [vhdkit_exe, "info", str(child)], ["qemu-img", "info", str(base)]),
             ("check, chain of 2", [vhdkit_exe, "check", str(child)], ["qemu-img", "check", str(base)]),
             ("info, base", [vhdkit_exe, "info", str(base)], ["qemu-img", "info", str(base)]),
             ("check, base", [vhdkit_exe, "check", str(base)], ["qemu-img", "check", str(base)])]
    for label, ours_cmd, theirs_cmd in cases:
        ours = [time_and_rss(ours_cmd) for _ in range(runs)]
        theirs = [time_and_rss(theirs_cmd) for _ in range(runs)]
        t_ours, t_theirs = median([t for t, _ in ours]), median([t for t, _ in theirs])
        m_ours, m_theirs = median([m for _, m in ours]), median([m for _, m in theirs])
        rows.append((f"64 TiB / 1 MiB blocks: {label}", f"{t_ours:.2f} s", mib(m_ours), f"{t_theirs:.2f} s",
                     mib(m_theirs), f"{m_ours / m_theirs:.2f}x"))
    return rows


def far_log_entry(work: Path, vhdkit_exe: str, runs: int) -> list[tuple[str, ...]]:
    import vhdkit
    from tests.vhdx.logbuilder import Desc, build_entry, put_entry, set_log_guid
    from tests.vhdx.patching import Image

    pristine = work / "far-log.vhdx"
    vhdkit.create(pristine, 64 * MiB).close()
    img = Image(pristine)
    guid = uuid.uuid4()
    set_log_guid(img, guid)
    far = 8 * GiB
    put_entry(img, 0, build_entry(77, guid, 0, [Desc(far, None, 256 * MiB)], len(img.data), far + 256 * MiB))
    img.save()
    rows = []
    for tool, cmd in (("vhdkit check --repair", [vhdkit_exe, "check", "--repair"]),
                      ("qemu-img check -r all", ["qemu-img", "check", "-r", "all", "-f", "vhdx"])):
        results, allocated = [], []
        for _ in range(runs):
            copy = work / "far-log-copy.vhdx"
            shutil.copyfile(pristine, copy)
            results.append(time_and_rss([*cmd, str(copy)]))
            allocated.append(copy.stat().st_blocks * 512)
            copy.unlink()
        rows.append((f"log zeroes 256 MiB at 8 GiB: {tool}", f"{median([t for t, _ in results]):.2f} s",
                     mib(median([m for _, m in results])), f"{median(allocated) / MiB:.1f} MiB on disk"))
    return rows


def _nbd_client(path: str) -> socket.socket:
    """Connect and finish the NBD handshake (fixed newstyle, NBD_OPT_GO of export "")."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(path)

    def recv(n: int) -> bytes:
        out = b""
        while len(out) < n:
            got = s.recv(n - len(out))
            if not got:
                raise ConnectionError("server hung up")
            out += got
        return out

    recv(18)
    s.sendall(struct.pack(">I", 3))  # fixed newstyle, no zeroes
    s.sendall(struct.pack(">QII", 0x49484156454F5054, 7, 6) + struct.pack(">IH", 0, 0))
    while True:
        _, _, kind, length = struct.unpack(">QIII", recv(20))
        recv(length)
        if kind == 1:  # NBD_REP_ACK
            return s
        if kind != 3:  # not NBD_REP_INFO
            raise ConnectionError(f"NBD_OPT_GO refused ({kind:#x})")


def idle_clients(work: Path, vhdkit_exe: str, clients: int) -> list[tuple[str, ...]]:
    import vhdkit

    image = work / "served.vhdx"
    vhdkit.create(image, GiB).close()
    rows = []
    servers = {
        "vhdkit serve": [vhdkit_exe, "serve", str(image), "--nbd", "unix:{sock}", "--max-clients", str(clients)],
        "qemu-nbd": ["qemu-nbd", "-t", "-f", "vhdx", "-e", str(clients), "-k", "{sock}", str(image)],
    }
    for name, argv in servers.items():
        sock = str(work / "nbd.sock")
        proc = subprocess.Popen([a.replace("{sock}", sock) for a in argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    _nbd_client(sock).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            time.sleep(0.3)
            before = status_bytes("VmRSS", proc.pid)
            start = time.perf_counter()
            held = [_nbd_client(sock) for _ in range(clients)]
            took = time.perf_counter() - start
            time.sleep(0.5)
            after = status_bytes("VmRSS", proc.pid)
            threads = len(os.listdir(f"/proc/{proc.pid}/task"))
            for s in held:
                s.close()
        finally:
            proc.terminate()
            proc.wait(30)
        rows.append((f"{clients} idle NBD clients: {name}", f"{took:.2f} s to connect", mib(before), mib(after),
                     f"{(after - before) / 1024 / clients:.0f} KiB/client", f"{threads} threads"))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", type=int, default=200)
    args = ap.parse_args()
    for tool in ("qemu-img", "qemu-nbd", "/usr/bin/time"):
        if not shutil.which(tool):
            print(f"{tool} is needed (apt-get install qemu-utils time)", file=sys.stderr)
            return 1
    with hot_freed_memory() as memory_note, \
            tempfile.TemporaryDirectory(prefix="vhdkit-bench-", dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        work = Path(tmp)
        vhdkit_exe = installed_vhdkit(work)
        print(f"{memory_note}; medians of {args.runs} runs")
        print()
        print(table(giant_bat(work, vhdkit_exe, args.runs),
                    ("case", "vhdkit", "peak RSS", "qemu-img", "peak RSS", "RSS ratio")))
        print()
        print(table(far_log_entry(work, vhdkit_exe, args.runs), ("case", "time", "peak RSS", "file after")))
        print()
        print(table(idle_clients(work, vhdkit_exe, args.clients),
                    ("case", "connect", "RSS idle", f"RSS with {args.clients}", "per client", "threads")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
