#!/usr/bin/env python3
"""Live migration under a writing guest: `vhdkit serve` + `vhdkit migrate` against QEMU's
blockdev-mirror in qemu-storage-daemon, same workloads, same run (specs/migration.md).

    python bench/migrate.py [--reps 3] [--size 1G] [--only W1,vhdx]

Source: --size of 4 MiB pieces, 60% random data, 10% written zeros, 30% never written (seed 42);
for the VHDX rows the same content as a dynamic VHDX with 2 MiB blocks (qemu-img convert). A
guest in another process (tests/copy/nbd_guest.py, libnbd) writes stamped 64 KiB blocks through
the NBD export at a fixed rate, before, during and after the migration, and keeps a shadow copy;
every run ends with `qemu-img compare` of the target against the shadow.

Each tool runs with its defaults: QEMU's mirror in background mode (16 x 1 MiB in flight), vhdkit
in background mode too (2 x 1 MiB in flight, 64 KiB grains; write-blocking when it stops
converging). Phases: baseline 1 s, bulk (start -> ready), ready 1 s, switch (complete sent ->
done; vhdkit's verification is left out of it), after 0.5 s.
Columns: bulk s; switch ms (command -> done); the worst guest write overlapping the switch; guest
write p99 (service time) per phase; bytes written to the target (the process's wchar minus the
guest's own writes) / (the source's non-zero data + guest writes during the job); and whether the
target equals the shadow; the serving process's peak RSS (VmHWM; the largest of the reps). Medians
of --reps, and vhdkit/QEMU ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import hot_freed_memory, installed_vhdkit, median, peak_rss, table

ROOT = Path(__file__).resolve().parent.parent
GUEST = ROOT / "tests" / "copy" / "nbd_guest.py"
RECORD = struct.Struct("<QQqqq")
MiB = 1 << 20
WORKLOADS = {  # name: (source format, writes/s, hot spot)
    "W0": ("raw", 0, False), "W1": ("raw", 200, False), "W2": ("raw", 1000, False),
    "hot": ("raw", 1000, True), "vhdx": ("vhdx", 200, False), "sparse": ("raw", 200, False),
}
SPARSE = "sparse"  # the same data at the start of a --sparse-size disk (64 GiB): the rest is a hole


# -- the source ----------------------------------------------------------------------------------
def make_source(work: Path, size: int) -> tuple[Path, int]:
    raw = work / "source.raw"
    rng = random.Random(42)
    nonzero = 0
    with open(raw, "wb") as f:
        f.truncate(size)
        for at in range(0, size, 4 * MiB):
            roll = rng.random()
            if roll < 0.6:
                f.seek(at)
                f.write(rng.randbytes(4 * MiB))
                nonzero += 4 * MiB
            elif roll < 0.7:
                f.seek(at)
                f.write(bytes(4 * MiB))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vhdx", "-o", "block_size=2097152,subformat=dynamic",
                    str(raw), str(work / "source.vhdx")], check=True)
    return raw, nonzero


def make_sparse_source(work: Path, size: int) -> None:
    """source-sparse.raw: source.raw's content, then a hole up to ``size``."""
    sparse = work / "source-sparse.raw"
    subprocess.run(["cp", "--sparse=always", str(work / "source.raw"), str(sparse)], check=True)
    os.truncate(sparse, size)


def fresh_copy(work: Path, fmt: str, source: str = "source") -> Path:
    src = work / f"src.{fmt}"
    src.unlink(missing_ok=True)
    subprocess.run(["cp", "--sparse=always", str(work / f"{source}.{fmt}"), str(src)], check=True)
    return src


def settle() -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass


# -- the guest -----------------------------------------------------------------------------------
class Guest:
    def __init__(self, uri: str, shadow: Path, log: Path, rate: int, hot: bool) -> None:
        self.log = log
        self.proc = None
        if rate:
            ready = log.with_suffix(".ready")
            ready.unlink(missing_ok=True)
            cmd = ["/usr/bin/python3", str(GUEST), "--uri", uri, "--shadow", str(shadow), "--log", str(log),
                   "--rate", str(rate), "--ready-file", str(ready)] + (["--hot"] if hot else [])
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            while not ready.exists():
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the guest did not start: {self.proc.communicate()}")
                time.sleep(0.01)

    def stop(self) -> list[tuple[int, int, int, int, int]]:
        if self.proc is None:
            return []
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=60)
        if self.proc.returncode:
            raise RuntimeError(f"the guest failed: {err}")
        data = self.log.read_bytes()
        return [RECORD.unpack_from(data, i) for i in range(0, len(data), RECORD.size)]


def wchar(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def measure(writes: list, marks: dict[str, int], wrote: int, nonzero: int) -> dict:
    """Figures of one run from the guest's log and the phase marks (CLOCK_MONOTONIC ns)."""
    def p99(lo: int, hi: int) -> float | None:
        svc = sorted(end - start for _, _, _, start, end in writes if lo <= start < hi)
        return round(svc[int(0.99 * (len(svc) - 1))] / 1e6, 2) if svc else None

    sw0, sw1 = marks["switch"], marks["done"]
    during_switch = [end - start for _, _, _, start, end in writes if start < sw1 and end > sw0]
    guest_total = len(writes) * 64 * 1024
    guest_in_job = sum(1 for w in writes if marks["start"] <= w[3] < sw1) * 64 * 1024
    return {
        "bulk_s": (marks["ready"] - marks["start"]) / 1e9,
        "switch_ms": (sw1 - sw0) / 1e6,
        "worst_write_ms": max(during_switch) / 1e6 if during_switch else 0.0,
        "p99": [p99(0, marks["start"]), p99(marks["start"], marks["ready"]), p99(marks["ready"], sw0),
                p99(sw1, 2**63)],
        "bytes_ratio": (wrote - guest_total) / (nonzero + guest_in_job),
    }


# -- QEMU ----------------------------------------------------------------------------------------
class Qmp:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.reader = self.sock.makefile("rb")
        self.events: list[dict] = []
        json.loads(self.reader.readline())  # greeting
        self.execute("qmp_capabilities")

    def execute(self, cmd: str, **args: object) -> object:
        self.sock.sendall(json.dumps({"execute": cmd, "arguments": args}).encode() + b"\n")
        while True:
            msg = json.loads(self.reader.readline())
            if "event" in msg:
                self.events.append(msg)
            elif "error" in msg:
                raise RuntimeError(f"QMP {cmd}: {msg['error']}")
            elif "return" in msg:
                return msg["return"]

    def wait_event(self, name: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(e["event"] == name for e in self.events):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {name} from QEMU")
            self.execute("query-block-jobs")  # events arrive with replies
            time.sleep(0.01)


def run_qemu(work: Path, fmt: str, rate: int, hot: bool, nonzero: int, size: int, source: str = "source") -> dict:
    src = fresh_copy(work, fmt, source)
    shadow = work / "shadow.raw"
    subprocess.run(["qemu-img", "convert", "-f", fmt, "-O", "raw", str(src), str(shadow)], check=True)
    tgt = work / f"tgt.{fmt}"
    tgt.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "create", "-f", fmt, *(["-o", "block_size=2097152"] if fmt == "vhdx" else []),
                    str(tgt), str(size)], check=True, capture_output=True)
    nbd, qmp_path = work / "q.nbd", work / "q.qmp"
    for p in (nbd, qmp_path):
        p.unlink(missing_ok=True)
    settle()
    node = "file.driver=file,file.cache.direct=off,file.aio=threads"
    qsd = subprocess.Popen([
        "qemu-storage-daemon",
        "--blockdev", f"driver={fmt},node-name=src,{node},file.filename={src}",
        "--blockdev", f"driver={fmt},node-name=tgt,{node},file.filename={tgt},discard=unmap",
        "--nbd-server", f"addr.type=unix,addr.path={nbd}",
        "--export", "type=nbd,id=exp0,node-name=src,name=disk,writable=on",
        "--chardev", f"socket,id=qmp0,path={qmp_path},server=on,wait=off", "--monitor", "chardev=qmp0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while not (nbd.exists() and qmp_path.exists()):
        time.sleep(0.01)
    qmp = Qmp(qmp_path)
    guest = Guest(f"nbd+unix:///disk?socket={nbd}", shadow, work / "q.log", rate, hot)
    time.sleep(1.0)
    marks = {"start": time.monotonic_ns()}
    qmp.execute("blockdev-mirror", **{"job-id": "mj", "device": "src", "target": "tgt", "sync": "full"})
    qmp.wait_event("BLOCK_JOB_READY")
    marks["ready"] = time.monotonic_ns()
    time.sleep(1.0)
    marks["switch"] = time.monotonic_ns()
    qmp.execute("job-complete", id="mj")
    qmp.wait_event("BLOCK_JOB_COMPLETED")
    marks["done"] = time.monotonic_ns()
    time.sleep(0.5)
    writes = guest.stop()
    wrote = wchar(qsd.pid)
    rss = peak_rss(qsd.pid)
    qmp.execute("quit")
    qsd.wait(30)
    same = subprocess.run(["qemu-img", "compare", "-f", fmt, "-F", "raw", str(tgt), str(shadow)],
                          capture_output=True).returncode == 0
    return dict(measure(writes, marks, wrote, nonzero), identical=same, peak_rss=rss)


# -- vhdkit --------------------------------------------------------------------------------------
def ask(control: Path, cmd: str, **fields: object) -> dict:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(control))
        s.sendall(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")
        answer = json.loads(s.makefile("rb").readline())
    if not answer.get("ok"):
        raise RuntimeError(f"vhdkit {cmd}: {answer.get('error')}")
    return answer


def run_vhdkit(vhdkit: str, work: Path, fmt: str, rate: int, hot: bool, nonzero: int, size: int,
               options: dict | None = None, source: str = "source") -> dict:
    src = fresh_copy(work, fmt, source)
    shadow = work / "shadow.raw"
    subprocess.run(["qemu-img", "convert", "-f", fmt, "-O", "raw", str(src), str(shadow)], check=True)
    tgt = work / f"tgt.{fmt}"
    tgt.unlink(missing_ok=True)
    nbd, control = work / "v.nbd", work / "v.ctl"
    settle()
    serve = subprocess.Popen([vhdkit, "serve", str(src), "--nbd", f"unix:{nbd}", "--control", str(control)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while True:
        try:
            ask(control, "status")
            break
        except (OSError, RuntimeError):
            if time.monotonic() > deadline or serve.poll() is not None:
                raise RuntimeError("vhdkit serve did not start") from None
            time.sleep(0.01)
    guest = Guest(f"nbd+unix:///?socket={nbd}", shadow, work / "v.log", rate, hot)
    time.sleep(1.0)
    marks = {"start": time.monotonic_ns()}
    ask(control, "migrate", to=str(tgt), **(options or {}))
    job = ask(control, "wait", state="ready", timeout=300)["job"]
    marks["ready"] = time.monotonic_ns()
    if job["state"] != "ready":
        raise RuntimeError(f"vhdkit migration {job['state']}: {job['error']}")
    time.sleep(1.0)
    marks["switch"] = time.monotonic_ns()
    done = ask(control, "complete", verify=False)["job"]
    marks["done"] = time.monotonic_ns()
    time.sleep(0.5)
    writes = guest.stop()
    wrote = wchar(serve.pid)
    rss = peak_rss(serve.pid)
    serve.send_signal(signal.SIGTERM)
    serve.wait(30)
    same = subprocess.run(["qemu-img", "compare", "-f", fmt, "-F", "raw", str(tgt), str(shadow)],
                          capture_output=True).returncode == 0
    return dict(measure(writes, marks, wrote, nonzero), identical=same, pause_ms=done["pause_ms"], peak_rss=rss)


# -- the table -----------------------------------------------------------------------------------
def main() -> int:
    sys.path.insert(0, str(ROOT))
    from vhdkit.units import parse_size

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--size", default="1G")
    ap.add_argument("--only", help="comma-separated workloads: " + ",".join(WORKLOADS))
    ap.add_argument("--sparse-size", default="64G", help="the disk of the sparse row (--size of data at its start)")
    ap.add_argument("--job", action="append", default=[], metavar="KEY=VALUE",
                    help="a vhdkit migration option (mode, granularity, in_flight, flush_interval, ...)")
    args = ap.parse_args()
    for tool in ("qemu-storage-daemon", "qemu-img"):
        if not shutil.which(tool):
            print(f"{tool} is missing (scripts/setup.sh installs it)", file=sys.stderr)
            return 2
    size = parse_size(args.size)
    options = {k: json.loads(v) if v[:1].isdigit() else v for k, _, v in (o.partition("=") for o in args.job)}
    names = args.only.split(",") if args.only else list(WORKLOADS)
    work = Path(tempfile.mkdtemp(prefix="vhdkit-bench-migrate-", dir="/var/tmp"))
    rows = []
    try:
        vhdkit = installed_vhdkit(work)
        _, nonzero = make_source(work, size)
        sparse_size = parse_size(args.sparse_size)
        if SPARSE in names:
            make_sparse_source(work, sparse_size)
        with hot_freed_memory() as note:
            for name in names:
                fmt, rate, hot = WORKLOADS[name]
                source, disk_size = ("source-sparse", sparse_size) if name == SPARSE else ("source", size)
                runs: dict[str, list[dict]] = {"qemu": [], "vhdkit": []}
                for rep in range(args.reps):
                    order = ("qemu", "vhdkit") if rep % 2 == 0 else ("vhdkit", "qemu")
                    for tool in order:
                        r = (run_qemu(work, fmt, rate, hot, nonzero, disk_size, source) if tool == "qemu"
                             else run_vhdkit(vhdkit, work, fmt, rate, hot, nonzero, disk_size, options, source))
                        runs[tool].append(r)
                for tool in ("qemu", "vhdkit"):
                    rs = runs[tool]
                    p99 = ["/".join("-" if v is None else f"{v:.2f}" for v in (
                        median([x for x in col if x is not None]) if any(x is not None for x in col) else None
                        for col in zip(*(r["p99"] for r in rs))))]
                    rows.append((name, tool, f"{median([r['bulk_s'] for r in rs]):.3f}",
                                 f"{median([r['switch_ms'] for r in rs]):.1f}",
                                 f"{median([r['worst_write_ms'] for r in rs]):.1f}", p99[0],
                                 f"{median([r['bytes_ratio'] for r in rs]):.3f}",
                                 f"{sum(r['identical'] for r in rs)}/{len(rs)}",
                                 f"{max(r['peak_rss'] for r in rs) / MiB:.0f} MiB"))
                q, v = runs["qemu"], runs["vhdkit"]
                rows.append((name, "vhdkit/qemu", f"{median([r['bulk_s'] for r in v]) / median([r['bulk_s'] for r in q]):.2f}",
                             f"{median([r['switch_ms'] for r in v]) / median([r['switch_ms'] for r in q]):.2f}",
                             "", "", f"{median([r['bytes_ratio'] for r in v]) / median([r['bytes_ratio'] for r in q]):.2f}",
                             "", f"{max(r['peak_rss'] for r in v) / max(r['peak_rss'] for r in q):.2f}"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"live migration of a {args.size} disk under a writing guest (64 KiB writes), medians of {args.reps}")
    print(table(rows, ("load", "tool", "bulk s", "switch ms", "worst write ms", "p99 ms base/bulk/ready/after",
                       "bytes ratio", "identical", "peak RSS (largest)")))
    print("W0 no writes; W1 200/s (12.5 MiB/s); W2 1000/s; hot: W2 with 90% of writes in 5% of the disk; "
          f"vhdx: W1 on a VHDX source; sparse: W1 on a {args.sparse_size} raw disk holding the same data at its "
          "start. Goals: switch <= QEMU's (<= 20 ms at W1), bytes ratio <= 1.05, VHDX bulk <= 0.8x QEMU's, "
          f"identical every run, the serving process under 200 MiB migrating the sparse disk; {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
