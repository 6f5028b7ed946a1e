"""Mass mutation of VHD and VHDX images against the robustness contract (specs/architecture.md).

    python -m tests.robustness.mutation --count 20000 --seed 1     # what CI runs (under 3 minutes)
    python -m tests.robustness.mutation --count 500000 --seed 7    # a soak

Each mutant is a real image (made by vhdkit, or Windows's dirty-log sample) with one to four edits
inside one structure: random bytes, a flipped bit, or an integer field set to a value that tests
bounds (0, all ones, the file size and its neighbours, 2**40, ...); then, usually, the checksums
re-fixed so that the deeper checks run, and now and then the file cut short. Every mutant is opened
(info, extents, a bounded read of the data) and checked (``vhdkit.check`` on the bytes). The
contract: only VhdkitError escapes, nothing hangs (an alarm per mutant), memory stays bounded.

Mutants are made in place over one buffer per base image, with an undo list, so a 37 MiB base
costs no copy per mutant. Prints one JSON line: counts per structure, escapes, peak RSS.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import random
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback
from pathlib import Path

import crcmod.predefined

import vhdkit
from vhdkit.ops.check import check
from vhdkit.errors import VhdkitError
from vhdkit import formats
from vhdkit.storage import BaseStore
from vhdkit.vhd import layout as VL

MiB = 1 << 20
crc32c = crcmod.predefined.mkCrcFun("crc-32c")
READ_PER_EXTENT = 256 * 1024  # exercising the parsers, not the disk: read a little of each extent
MAX_EXTENTS = 8
ALARM_SECONDS = 20


class BytesStore(BaseStore):
    """A read-only store over a buffer, seeing only its first ``length`` bytes (for cuts)."""

    def __init__(self, buf: bytearray, length: int) -> None:
        self.buf, self.length, self.url = buf, length, "<mutant>"

    def preadinto(self, offset: int, out: memoryview) -> int:
        n = max(0, min(len(out), self.length - offset))
        out[:n] = self.buf[offset : offset + n]
        return n

    def size(self) -> int:
        return self.length

    def close(self) -> None:
        pass


# -- base images and the structures in them ----------------------------------------------------

class Base:
    def __init__(self, name: str, fmt: str, data: bytes, structures: dict[str, tuple[int, int]]) -> None:
        self.name, self.fmt = name, fmt
        self.buf = bytearray(data)
        self.structures = {k: v for k, v in structures.items() if v[1] > 0 and v[0] + v[1] <= len(data)}


def vhdx_structures(data: bytes) -> dict[str, tuple[int, int]]:
    """(offset, span to mutate) of each VHDX structure, found with struct from the spec."""
    out = {"file identifier": (0, 16), "header 1": (0x10000, 80), "header 2": (0x20000, 80),
           "region table 1": (0x30000, 80), "region table 2": (0x40000, 80)}
    count = struct.unpack_from("<I", data, 0x30000 + 8)[0]
    for i in range(min(count, 8)):
        at = 0x30000 + 16 + 32 * i
        guid = data[at : at + 16].hex()
        offset, length = struct.unpack_from("<QI", data, at + 16)
        if guid.startswith("6677c22d"):
            out["BAT"] = (offset, min(length, 4096))
            out["BAT (further)"] = (offset + 4096 * 8, 4096) if length > 8 * 4096 else (offset, 64)
        elif guid.startswith("06a27c8b"):
            out["metadata table"] = (offset, 32 + 32 * 8)
            out["metadata items"] = (offset + 0x10000, 512)
    log_offset, = struct.unpack_from("<Q", data, 0x10000 + 72)
    if data[log_offset : log_offset + 4] == b"loge" or data[log_offset + 0x5000 : log_offset + 0x5004] == b"loge":
        out["log"] = (log_offset, 0x8000)
    return out


def vhd_structures(data: bytes) -> dict[str, tuple[int, int]]:
    out = {"footer": (len(data) - 512, 512)}
    if data[:8] == b"conectix":
        out["footer copy"] = (0, 512)
        header, = struct.unpack_from(">Q", data, 16)
        if header + 1024 <= len(data):
            out["dynamic header"] = (header, 1024)
            table, = struct.unpack_from(">Q", data, header + 16)
            out["BAT"] = (table, 64)
            locator_offset = struct.unpack_from(">Q", data, header + 576 + 16)[0]
            if 0 < locator_offset < len(data):
                out["locator data"] = (locator_offset, 256)
    return out


def make_bases(folder: Path, samples: Path | None) -> list[Base]:
    bases = []
    dyn = folder / "dynamic.vhdx"
    with vhdkit.create(dyn, 8 * MiB, block_size=MiB) as disk:
        disk.pwrite(0, b"\x61" * MiB)
        disk.pwrite(3 * MiB + 512, b"\x62" * 4096)
        disk.pwrite(7 * MiB, b"\x63" * MiB)
    child = folder / "child.vhdx"
    with vhdkit.create(child, parent=dyn, block_size=MiB) as disk:
        disk.pwrite(2 * MiB + 4096, b"\x64" * 8192)  # a partially present block: sector bitmap too
    small4k = folder / "4k.vhdx"
    with vhdkit.create(small4k, 8 * MiB, block_size=MiB, logical_sector_size=4096) as disk:
        disk.pwrite(MiB, b"\x65" * 8192)
    for path in (dyn, child, small4k):
        data = path.read_bytes()
        bases.append(Base(path.name, "vhdx", data, vhdx_structures(data)))
    vhd = folder / "dynamic.vhd"
    with vhdkit.create(vhd, 6 * MiB, format="vhd") as disk:
        disk.pwrite(0, b"\x5a" * MiB)
        disk.pwrite(4 * MiB + 512, b"\x6b" * 4096)
    vchild = folder / "child.vhd"
    with vhdkit.create(vchild, parent=vhd, format="vhd") as disk:
        disk.pwrite(2 * MiB + 1024, b"\x7c" * 1536)
    fixed = folder / "fixed.vhd"
    with vhdkit.create(fixed, 2 * MiB, format="vhd", type="fixed") as disk:
        disk.pwrite(0, b"\x7d" * 4096)
    for path in (vhd, vchild, fixed):
        data = path.read_bytes()
        bases.append(Base(path.name, "vhd", data, vhd_structures(data)))
    dirty = samples / "discutils" / "vhdx-log-replay.vhdx.xz" if samples else None
    if dirty is not None and dirty.exists():
        data = lzma.decompress(dirty.read_bytes())
        bases.append(Base("windows-dirty-log.vhdx", "vhdx", data, vhdx_structures(data)))
    return bases


# -- mutation ----------------------------------------------------------------------------------

def interesting(size: int) -> list[int]:
    return [0, 1, 2, 7, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
            1 << 32, 1 << 40, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, size - 1, size, size + 1, size // MiB,
            size // 512, size * 2, 2047, 2048, 4096, MiB, 64 * MiB, 256 * MiB]


def mutate(base: Base, rng: random.Random, undo: list[tuple[int, bytes]]) -> tuple[str, int]:
    """Edit one structure of ``base.buf`` in place (recording undo); returns (structure, length)."""
    buf, size = base.buf, len(base.buf)
    name = rng.choice(sorted(base.structures))
    start, span = base.structures[name]
    order = "<" if base.fmt == "vhdx" else ">"

    def put(at: int, data: bytes) -> None:
        at = max(0, min(at, size - len(data)))
        undo.append((at, bytes(buf[at : at + len(data)])))
        buf[at : at + len(data)] = data

    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        at = start + rng.randrange(span)
        if kind < 0.3:
            put(at, rng.randbytes(rng.randint(1, 8)))
        elif kind < 0.5:
            put(at, bytes([buf[at] ^ (1 << rng.randrange(8))]))
        else:
            width = rng.choice((2, 4, 8))
            at -= (at - start) % width
            value = rng.choice(interesting(size)) & ((1 << (8 * width)) - 1)
            put(at, value.to_bytes(width, "little" if order == "<" else "big"))
    if rng.random() < 0.7:
        fix_checksums(base, put)
    length = size
    if rng.random() < 0.05:
        length = rng.choice((rng.randrange(size), size - 1, size - 512, max(0, size - MiB), 0x10000 + 100))
    return name, max(0, length)


def fix_checksums(base: Base, put) -> None:
    buf = base.buf
    if base.fmt == "vhdx":
        for at, length in ((0x10000, 4096), (0x20000, 4096), (0x30000, 65536), (0x40000, 65536)):
            _fix_crc(buf, at, length, put)
        log = base.structures.get("log")
        if log:
            for entry in range(log[0], log[0] + log[1], 4096):
                if buf[entry : entry + 4] == b"loge":
                    length, = struct.unpack_from("<I", buf, entry + 8)
                    if 0 < length <= 0x8000 and length % 4096 == 0 and entry + length <= len(buf):
                        _fix_crc(buf, entry, length, put)
    else:
        for at, length, field in ((0, 512, VL.FOOTER_CHECKSUM_OFFSET), (len(buf) - 512, 512, VL.FOOTER_CHECKSUM_OFFSET)):
            put(at + field, struct.pack(">I", VL.checksum(buf[at : at + length], field)))
        header = base.structures.get("dynamic header")
        if header:
            at = header[0]
            put(at + VL.DYNAMIC_HEADER_CHECKSUM_OFFSET,
                struct.pack(">I", VL.checksum(buf[at : at + 1024], VL.DYNAMIC_HEADER_CHECKSUM_OFFSET)))


def _fix_crc(buf: bytearray, at: int, length: int, put) -> None:
    part = bytearray(buf[at : at + length])
    part[4:8] = b"\0\0\0\0"
    put(at + 4, struct.pack("<I", crc32c(bytes(part))))


# -- running a mutant ------------------------------------------------------------------------

def exercise(base: Base, length: int, outcomes: dict[str, int]) -> None:
    """Open, describe, walk and read a little of the mutant; then check it. Only VhdkitError may escape."""
    store = BytesStore(base.buf, length)
    opened = "refused"
    try:
        cls = formats.get(base.fmt).disk_class()
        disk = cls(store, tolerate_checksum=True) if base.fmt == "vhd" else cls(store)
        disk.info()
        for i, ext in enumerate(disk.extents(through_parents=False)):
            if i >= MAX_EXTENTS:
                break
            if ext.state.name == "DATA":
                disk.pread(ext.offset, min(ext.length, READ_PER_EXTENT))
        opened = "opened and read"
    except VhdkitError:
        pass
    report = check(store)
    assert report.verdict in ("clean", "leaks", "corrupt", "not checked"), report.verdict
    for key in (opened, f"check: {report.verdict}"):
        outcomes[key] = outcomes.get(key, 0) + 1


def peak_rss_kib() -> int:
    """This process's own peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux carries that across
    exec, so a child of a big process (pytest after the image tests) reports its parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Hang(Exception):
    pass


def _alarm(signum, frame):  # noqa: ANN001
    raise Hang(f"a mutant took longer than {ALARM_SECONDS} s")


def run(count: int, seed: int, samples: Path | None) -> dict[str, object]:
    rng = random.Random(seed)
    escaped: list[dict[str, str]] = []
    per_structure: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    signal.signal(signal.SIGALRM, _alarm)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vhdkit-mutants-") as tmp:
        bases = make_bases(Path(tmp), samples)
    for n in range(count):
        base = bases[n % len(bases)]
        undo: list[tuple[int, bytes]] = []
        state = rng.getstate()
        try:
            name, length = mutate(base, rng, undo)
            per_structure[f"{base.fmt} {name}"] = per_structure.get(f"{base.fmt} {name}", 0) + 1
            signal.alarm(ALARM_SECONDS)
            try:
                exercise(base, length, outcomes)
            finally:
                signal.alarm(0)
        except Exception as e:  # noqa: BLE001 - the contract is broken: record it with how to replay it
            if len(escaped) < 20:
                escaped.append({"mutant": str(n), "base": base.name, "error": f"{type(e).__name__}: {e}",
                                "where": traceback.format_exc(limit=-3), "rng_state_hash": str(hash(state))})
        finally:
            for at, data in reversed(undo):
                base.buf[at : at + len(data)] = data
    return {"mutants": count, "seed": seed, "seconds": round(time.perf_counter() - start, 1),
            "bases": [b.name for b in bases], "by_structure": dict(sorted(per_structure.items())),
            "outcomes": dict(sorted(outcomes.items())), "escaped": escaped, "max_rss_kib": peak_rss_kib()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--samples", type=Path, default=Path(os.environ.get(
        "VHDKIT_SAMPLES", Path(__file__).resolve().parents[2].parent / "shared" / "samples")))
    args = ap.parse_args()
    result = run(args.count, args.seed, args.samples if args.samples.exists() else None)
    print(json.dumps(result))
    return 1 if result["escaped"] else 0


if __name__ == "__main__":
    sys.exit(main())
