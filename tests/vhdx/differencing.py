"""Build a differencing VHDX for tests out of two qemu-made images (qemu cannot make one).

The child gets HasParent, a parent locator item, an allocated sector-bitmap block and a chosen
state per payload block; ``expected_content`` says what a correct reader returns, block by block
and sector by sector, from the parent's and child's raw bytes.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..interop.qemu_images import MiB, Write, make_qemu_vhdx
from .patching import (
    FILE_PARAMETERS_GUID,
    HEADER_OFFSETS,
    PARENT_LOCATOR_GUID,
    VHDX_LOCATOR_TYPE,
    Image,
    METADATA_GUID,
    current_header,
    regions,
)

BLOCK = 1 * MiB
SECTORS_PER_BLOCK = BLOCK // 512
CHUNK_RATIO = (1 << 23) * 512 // BLOCK  # 4096
NOT_PRESENT, ZERO, FULLY_PRESENT, PARTIALLY_PRESENT = 0, 2, 6, 7


def data_write_guid(path: Path) -> uuid.UUID:
    data = path.read_bytes()[: 0x30000]
    at = HEADER_OFFSETS[current_header(data)]
    return uuid.UUID(bytes_le=data[at + 32 : at + 48])


def locator_item(pairs: dict[str, str]) -> bytes:
    """[MS-VHDX] 2.6.2.6: header, 12-byte entries, then UTF-16LE keys and values."""
    header = VHDX_LOCATOR_TYPE.bytes_le + struct.pack("<HH", 0, len(pairs))
    strings = b""
    entries = b""
    base = 20 + 12 * len(pairs)
    for key, value in pairs.items():
        k, v = key.encode("utf-16-le"), value.encode("utf-16-le")
        entries += struct.pack("<IIHH", base + len(strings), base + len(strings) + len(k), len(k), len(v))
        strings += k + v
    return header + entries + strings


@dataclass
class Chain:
    parent: Path
    child: Path
    size: int
    states: dict[int, int]  # block -> state in the child
    present_sectors: dict[int, list[int]] = field(default_factory=dict)  # partial block -> sectors here

    def expected_content(self) -> bytes:
        # qemu-img's raw conversions, made before the child was patched into a differencing disk
        parent = self.parent.with_suffix(".raw").read_bytes()
        child = self.child.with_suffix(".raw").read_bytes()
        out = bytearray(parent)
        for block, state in self.states.items():
            lo, hi = block * BLOCK, (block + 1) * BLOCK
            if state == FULLY_PRESENT:
                out[lo:hi] = child[lo:hi]
            elif state == ZERO:
                out[lo:hi] = bytes(BLOCK)
            elif state == PARTIALLY_PRESENT:
                for s in self.present_sectors[block]:
                    a = lo + s * 512
                    out[a : a + 512] = child[a : a + 512]
        return bytes(out)


def make_chain(tmp: Path, *, relative_path: str | None = ".\\parent.vhdx",
               absolute_path: str | None = "C:\\Hyper-V\\Disks\\parent.vhdx",
               linkage: uuid.UUID | None = None, size: int = 16 * MiB) -> Chain:
    from ..conftest import run

    parent = tmp / "parent.vhdx"
    child = tmp / "child.vhdx"
    make_qemu_vhdx(parent, size, block_size=BLOCK,
                   writes=[Write(b * BLOCK, BLOCK, 0x10 + b) for b in range(size // BLOCK)])
    # Child data in blocks 1..5; blocks 6.. stay unwritten.
    make_qemu_vhdx(child, size, block_size=BLOCK,
                   writes=[Write(b * BLOCK, BLOCK, 0xC0 + b) for b in range(1, 6)])
    run("qemu-img", "convert", "-f", "vhdx", "-O", "raw", parent, parent.with_suffix(".raw"))
    run("qemu-img", "convert", "-f", "vhdx", "-O", "raw", child, child.with_suffix(".raw"))

    states = {b: NOT_PRESENT for b in range(size // BLOCK)}
    states.update({1: FULLY_PRESENT, 2: PARTIALLY_PRESENT, 3: PARTIALLY_PRESENT, 4: ZERO, 5: PARTIALLY_PRESENT})
    present = {
        2: list(range(0, SECTORS_PER_BLOCK, 2)),  # every other sector: worst case for runs
        3: list(range(100, 1500)),
        5: [],  # partially present with no sector here: all parent
    }
    img = Image(child)
    # File parameters: HasParent.
    fp = img.item(FILE_PARAMETERS_GUID)
    img.u32(fp + 4, struct.unpack_from("<I", img.data, fp + 4)[0] | 0x2)
    # Parent locator item after the last item, with its table entry.
    pairs = {"parent_linkage": "{" + str(linkage or data_write_guid(parent)) + "}"}
    if relative_path is not None:
        pairs["relative_path"] = relative_path
    if absolute_path is not None:
        pairs["absolute_win32_path"] = absolute_path
    item = locator_item(pairs)
    base, _ = regions(bytes(img.data))[METADATA_GUID]
    count = struct.unpack_from("<H", img.data, base + 10)[0]
    ends = [sum(struct.unpack_from("<II", img.data, base + 32 + 32 * i + 16)) for i in range(count)]
    item_offset = -(-max(ends) // 4096) * 4096
    img.data[base + item_offset : base + item_offset + len(item)] = item
    entry = base + 32 + 32 * count
    img.data[entry : entry + 16] = PARENT_LOCATOR_GUID.bytes_le
    struct.pack_into("<IIII", img.data, entry + 16, item_offset, len(item), 0x4, 0)
    struct.pack_into("<H", img.data, base + 10, count + 1)
    # Sector bitmap block for chunk 0, appended at the end of the file (1 MiB aligned).
    bitmap_offset = -(-len(img.data) // MiB) * MiB
    bitmap = bytearray(MiB)
    for block, sectors in present.items():
        for s in sectors:
            bit = block * SECTORS_PER_BLOCK + s
            bitmap[bit >> 3] |= 1 << (bit & 7)
    img.data += bytes(bitmap_offset - len(img.data)) + bitmap
    # BAT: differencing layout has SBBlocks * (ChunkRatio + 1) entries; chunk 0's bitmap at 4096.
    old = img.bat_entries(size // BLOCK)
    entries = [0] * (CHUNK_RATIO + 1)
    for block, state in states.items():
        offset_mb = old[block] >> 20
        entries[block] = (offset_mb << 20 | state) if state in (FULLY_PRESENT, PARTIALLY_PRESENT) else state
    entries[CHUNK_RATIO] = (bitmap_offset // MiB) << 20 | 6
    img.set_bat_entries(entries, MiB)
    img.save()
    return Chain(parent, child, size, states, present)
