"""Images made and filled by qemu-img/qemu-io, and the comparison of vhdkit with qemu's reading."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..conftest import run

GiB = 1 << 30
MiB = 1 << 20
CHUNK_512 = 4 * GiB  # 2**23 sectors of 512 bytes: one sector-bitmap block's reach


@dataclass(frozen=True)
class Write:
    offset: int
    length: int
    pattern: int


def pattern_writes(size: int, block_size: int) -> list[Write]:
    """Writes that land at the start, across a block boundary, across every chunk boundary
    (where the BAT interleaves a sector-bitmap slot) and at the very end, plus unaligned ones."""
    writes = [
        Write(0, 64 * 1024, 0xA5),
        Write(block_size - 4096, 8192, 0x5A),  # straddles blocks 0 and 1
        Write(3 * block_size + 1000, 3000, 0x3C),  # not sector-aligned
    ]
    pattern = 0x11
    for boundary in range(CHUNK_512, size, CHUNK_512):
        writes.append(Write(boundary - 65536, 131072, pattern))  # last block of a chunk + first of next
        pattern = (pattern + 0x22) & 0xFF or 0x01
    writes.append(Write(size // 2 + 5 * MiB + 4096, 12288, 0xC3))
    writes.append(Write(size - 1 * MiB, 1 * MiB, 0x7E))  # the last block
    ordered = sorted(writes, key=lambda w: w.offset)
    assert all(a.offset + a.length <= b.offset for a, b in zip(ordered, ordered[1:])), "writes overlap"
    return writes


def make_qemu_vhdx(path: Path, size: int, *, block_size: int | None = None, fixed: bool = False,
                   block_state_zero: bool = True, writes: list[Write] | None = None) -> list[Write]:
    opts = []
    if block_size:
        opts.append(f"block_size={block_size}")
    if fixed:
        opts.append("subformat=fixed")
    if not block_state_zero:
        opts.append("block_state_zero=off")
    args = ["qemu-img", "create", "-q", "-f", "vhdx"]
    if opts:
        args += ["-o", ",".join(opts)]
    run(*args, path, str(size))
    info = json.loads(run("qemu-img", "info", "--output=json", path).stdout)
    bs = int(info["cluster-size"])
    if writes is None:
        writes = pattern_writes(size, bs)
    if writes:
        cmds = []
        for w in writes:
            cmds += ["-c", f"write -q -P {w.pattern:#x} {w.offset} {w.length}"]
        run("qemu-io", "-f", "vhdx", *cmds, path)
    return writes


def written_blocks(writes: list[Write], block_size: int) -> list[int]:
    """The payload blocks qemu must have allocated for these writes."""
    blocks: set[int] = set()
    for w in writes:
        blocks.update(range(w.offset // block_size, (w.offset + w.length - 1) // block_size + 1))
    return sorted(blocks)


def dissect_present_blocks(path: Path) -> list[int]:
    """Blocks dissect.hypervisor's own BAT reading calls FULLY_PRESENT (state 6)."""
    from dissect.hypervisor.disk.vhdx import VHDX

    with open(path, "rb") as fh:
        d = VHDX(fh)
        count = -(-d.size // d.block_size)
        return [b for b in range(count) if d.bat.pb(b).state == 6]


def qemu_raw(path: Path, out: Path) -> Path:
    """The content oracle: ``qemu-img convert -O raw`` (sparse where qemu sees zeros)."""
    run("qemu-img", "convert", "-f", "vhdx", "-O", "raw", path, out)
    return out


def compare_ranges(disk, raw_path: Path, ranges: list[tuple[int, int]], chunk: int = 4 * MiB) -> None:
    """Assert vhdkit's bytes equal the raw oracle's on every range."""
    fd = os.open(raw_path, os.O_RDONLY)
    try:
        for offset, length in ranges:
            pos = offset
            while pos < offset + length:
                n = min(chunk, offset + length - pos)
                expected = os.pread(fd, n, pos)
                expected += bytes(n - len(expected))
                got = disk.pread(pos, n)
                if got != expected:
                    first = next(i for i in range(n) if got[i] != expected[i])
                    raise AssertionError(f"content differs at virtual offset {pos + first:#x}")
                pos += n
    finally:
        os.close(fd)
