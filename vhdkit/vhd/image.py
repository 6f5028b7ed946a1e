"""VhdDisk: a VHD (fixed, dynamic or differencing) opened as a VirtualDisk.

The footer at the end of the file says what the disk is; a dynamic or differencing disk also
keeps a copy at offset 0 (used when the one at the end is damaged), a dynamic header, a BAT of
big-endian sector numbers, and per block a sector bitmap (MSB-first) then the data.

VHD has no log. Writes stay crash-safe by ordering alone: a new block is appended after the
current footer's place with the footer rewritten beyond it first, the block's bitmap and data are
written and flushed, and only then its 4-byte BAT entry (one sector write) points at it.
"""

from __future__ import annotations

import _thread
import struct
import sys
from array import array

from ..bitmaps import MSB_TO_LSB, bitmap_runs, set_bits
from ..disk import DiskInfo, Extent, ExtentState, VirtualDisk, fill_zeros
from ..errors import CorruptImageError, ReadOnlyError, RefusedError, UnsupportedFeatureError
from ..formats import VHD
from ..guid import Guid
from ..runtime_types import NamedTuple
from ..storage import Store
from ..units import align_up, is_power_of_two
from . import layout as L

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Iterator

    # Given the child, returns its opened parent.
    ParentResolver = Callable[["VhdDisk"], VirtualDisk]


class ParsedFooter(NamedTuple):
    fields: L.Footer
    offset: int
    checksum_ok: bool
    raw: bytes


def parse_footer(raw: bytes, offset: int) -> ParsedFooter | None:
    if len(raw) < L.FOOTER_SIZE or raw[:8] != L.FOOTER_COOKIE:
        return None
    fields = L.Footer.parse(raw[: L.FOOTER_SIZE])
    ok = L.checksum(raw[: L.FOOTER_SIZE], L.FOOTER_CHECKSUM_OFFSET) == fields.checksum
    return ParsedFooter(fields, offset, ok, bytes(raw[: L.FOOTER_SIZE]))


class VhdDisk(VirtualDisk):
    format_name = VHD.name

    def __init__(self, store: Store, *, writable: bool = False, parent_resolver: ParentResolver | None = None,
                 tolerate_checksum: bool = False, unpublished: bool = False) -> None:
        """``unpublished``: the file is being built under a name nobody uses yet, so the flushes that
        order each allocation are skipped; the builder flushes once at the end."""
        self._ordered = not unpublished
        self.file_store = store
        self.problems: list[str] = []  # tolerated damage, for info and check
        file_size = store.size()
        if file_size < L.FOOTER_SIZE:
            raise CorruptImageError("file is shorter than a VHD footer", structure="VHD footer", offset=0,
                                    expected=L.FOOTER_SIZE, found=file_size)
        self.footer_info = self._find_footer(store, file_size, tolerate_checksum)
        f = self.footer_info.fields
        self.footer = f
        if f.disk_type not in tuple(L.DiskType):
            raise UnsupportedFeatureError(f"VHD disk type {f.disk_type} is not fixed (2), dynamic (3) or differencing (4)")
        size = f.current_size
        if size == 0 or size % L.SECTOR or size > L.MAX_SIZE:
            raise CorruptImageError("current size must be a non-zero multiple of 512, at most 2040 GiB",
                                    structure="VHD footer", offset=self.footer_info.offset, field="CurrentSize",
                                    found=size)
        self.header = None
        self.bat: array | None = None
        self.block_size = 0
        if f.disk_type == L.DiskType.FIXED:
            if file_size - L.FOOTER_SIZE < size:
                raise CorruptImageError("the fixed disk's data is shorter than its size (truncated file)",
                                        structure="VHD footer", offset=self.footer_info.offset,
                                        expected=f">= {size + L.FOOTER_SIZE}", found=file_size)
        else:
            self._read_dynamic(store, file_size, tolerate_checksum)
        super().__init__(store, size=size, logical_sector_size=L.SECTOR, physical_sector_size=L.SECTOR,
                         writable=writable)
        self._write_lock = _thread.RLock()
        if f.disk_type == L.DiskType.DIFFERENCING and parent_resolver is not None:
            self.parent = parent_resolver(self)

    # -- opening -------------------------------------------------------------------------------
    def _find_footer(self, store: Store, file_size: int, tolerate: bool) -> ParsedFooter:
        end = parse_footer(store.pread(file_size - L.FOOTER_SIZE, L.FOOTER_SIZE), file_size - L.FOOTER_SIZE)
        if end is None:  # footers made before 2004 may be 511 bytes long
            short = store.pread(file_size - 511, 511) + b"\0"
            end = parse_footer(short, file_size - 511) if file_size >= 511 else None
        copy = parse_footer(store.pread(0, L.FOOTER_SIZE), 0)
        for candidate in (end, copy):
            if candidate is not None and candidate.checksum_ok:
                if candidate is copy and end is not None:
                    self.problems.append("the footer at the end of the file is damaged; using its copy at offset 0")
                elif candidate is copy:
                    self.problems.append("no footer at the end of the file; using the copy at offset 0")
                return candidate
        found = end or copy
        if found is None:
            raise CorruptImageError("not a VHD: no footer", structure="VHD footer",
                                    offset=file_size - L.FOOTER_SIZE, field="Cookie", expected=L.FOOTER_COOKIE)
        stored = found.fields.checksum
        computed = L.checksum(found.raw, L.FOOTER_CHECKSUM_OFFSET)
        if not tolerate:
            raise CorruptImageError(
                "footer checksum mismatch (open with tolerate_checksum=True / --force to read it anyway)",
                structure="VHD footer", offset=found.offset, field="Checksum", expected=computed, found=stored)
        self.problems.append(f"footer checksum mismatch: stored {stored:#x}, computed {computed:#x}")
        return found

    def _read_dynamic(self, store: Store, file_size: int, tolerate: bool) -> None:
        f = self.footer
        at = f.data_offset
        if at < L.FOOTER_SIZE or at + L.DYNAMIC_HEADER_SIZE > file_size:
            raise CorruptImageError("dynamic header lies outside the file", structure="VHD footer",
                                    offset=self.footer_info.offset, field="DataOffset", found=at)
        raw = store.pread(at, L.DYNAMIC_HEADER_SIZE)
        h = L.DynamicHeader.parse(raw)
        where = dict(structure="VHD dynamic header", offset=at)
        if h.cookie != L.DYNAMIC_HEADER_COOKIE:
            raise CorruptImageError("bad cookie", field="Cookie", expected=L.DYNAMIC_HEADER_COOKIE, found=h.cookie,
                                    **where)  # type: ignore[arg-type]
        computed = L.checksum(raw, L.DYNAMIC_HEADER_CHECKSUM_OFFSET)
        if computed != h.checksum:
            if not tolerate:
                raise CorruptImageError(
                    "dynamic header checksum mismatch (open with tolerate_checksum=True / --force to read it anyway)",
                    field="Checksum", expected=computed, found=h.checksum, **where)  # type: ignore[arg-type]
            self.problems.append(f"dynamic header checksum mismatch: stored {h.checksum:#x}, computed {computed:#x}")
        if not is_power_of_two(h.block_size) or not L.SECTOR <= h.block_size <= 1 << 28:
            raise CorruptImageError("block size must be a power of two from 512 bytes to 256 MiB",
                                    field="BlockSize", found=h.block_size, **where)  # type: ignore[arg-type]
        needed = -(-f.current_size // h.block_size)
        if h.max_table_entries < needed or h.max_table_entries > L.MAX_TABLE_ENTRIES:
            raise CorruptImageError("the BAT has the wrong number of entries for the disk size",
                                    field="MaxTableEntries", expected=f"{needed} .. {L.MAX_TABLE_ENTRIES}",
                                    found=h.max_table_entries, **where)  # type: ignore[arg-type]
        table_bytes = h.max_table_entries * 4
        if h.table_offset < L.FOOTER_SIZE or h.table_offset + table_bytes > file_size:
            raise CorruptImageError("the BAT lies outside the file", field="TableOffset", found=h.table_offset,
                                    **where)  # type: ignore[arg-type]
        bat = array("I")
        bat.frombytes(store.pread(h.table_offset, table_bytes))
        if bat.itemsize != 4:  # pragma: no cover - every CPython platform has a 4-byte "I"
            raise UnsupportedFeatureError("this platform's array('I') is not 32 bits")
        if sys.byteorder == "little":
            bat.byteswap()
        self.header = h
        self.header_offset = at
        self.bat = bat
        self.block_size = h.block_size
        self.bitmap_bytes = L.bitmap_size(h.block_size)

    # -- what the disk is ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.file_store.url

    @property
    def disk_type(self) -> str:
        return L.DiskType(self.footer.disk_type).spec_name

    @property
    def unique_id(self) -> Guid:
        return Guid(bytes=bytes(self.footer.unique_id))

    @property
    def differencing(self) -> bool:
        return self.footer.disk_type == L.DiskType.DIFFERENCING

    @property
    def chs_size(self) -> int:
        return self.footer.cylinders * self.footer.heads * self.footer.sectors_per_track * L.SECTOR

    def parent_locators(self) -> dict[str, str]:
        """Platform code -> path, decoded (W2ku/W2ru data is UTF-16LE); damaged entries skipped."""
        out: dict[str, str] = {}
        if self.header is None:
            return out
        size = self.file_store.size()
        for entry in self.header.parent_locators:
            code = bytes(entry.platform_code)
            if code not in (L.PLATFORM_W2KU, L.PLATFORM_W2RU) or entry.platform_data_length == 0:
                continue
            if entry.platform_data_length > 65536 or entry.platform_data_offset + entry.platform_data_length > size:
                continue  # a damaged locator is no path to try (check reports it)
            raw = self.file_store.pread(entry.platform_data_offset, entry.platform_data_length)
            out[code.decode()] = raw.decode("utf-16-le", errors="replace").rstrip("\0")
        return out

    @property
    def parent_name(self) -> str | None:
        if self.header is None:
            return None
        return bytes(self.header.parent_unicode_name).decode("utf-16-be", errors="replace").rstrip("\0") or None

    @property
    def parent_unique_id(self) -> Guid | None:
        return Guid(bytes=bytes(self.header.parent_unique_id)) if self.header is not None else None

    def parent_paths(self) -> list[tuple[str, str]]:
        """(kind, path) to try for the parent: relative (W2ru) first, then absolute (W2ku)."""
        locators = self.parent_locators()
        pairs = []
        if "W2ru" in locators:
            pairs.append(("relative_path", locators["W2ru"]))
        if "W2ku" in locators:
            pairs.append(("absolute_win32_path", locators["W2ku"]))
        return pairs

    def accepts_parent(self, parent: VirtualDisk) -> str | None:
        """None if ``parent`` is this disk's parent, else why not."""
        if not isinstance(parent, VhdDisk):
            return f"{parent.name} is a {parent.format_name} image; a VHD's parent is a VHD"
        if bytes(parent.footer.unique_id) != bytes(self.header.parent_unique_id):
            return (f"{parent.name} has unique id {parent.unique_id}, the child expects {self.parent_unique_id} "
                    "(the parent changed after the child was made)")
        return None

    def set_parent_paths(self, relative_path: str, absolute_path: str | None = None) -> None:
        """Point the parent locators at the parent's new place (Set-VHD -ParentPath), by a new
        header the footers switch to (vhd/locators.py: crash-safe without a log)."""
        from .locators import rewrite_parent_locators

        self._check_open()
        if not self._writable:
            raise ReadOnlyError(f"{self.name} is open read-only")
        if not self.differencing:
            raise RefusedError(f"{self.name} is not a differencing disk: it has no parent to point at")
        if self.problems:
            raise ReadOnlyError(f"{self.name} is damaged ({self.problems[0]}); repair it first (vhdkit check --repair)")
        with self._write_lock:
            rewrite_parent_locators(self, relative_path, absolute_path)
            self.footer_info = self._find_footer(self.file_store, self.file_store.size(), False)
            self.footer = self.footer_info.fields
            self._read_dynamic(self.file_store, self.file_store.size(), False)

    # -- reading -------------------------------------------------------------------------------
    def _block_runs(self, offset: int, length: int) -> Iterator[tuple[int, int, int, int]]:
        """(virtual offset, length, block, BAT entry) over the range."""
        assert self.bat is not None
        bs = self.block_size
        pos, end = offset, offset + length
        while pos < end:
            block = pos // bs
            stop = min(end, (block + 1) * bs)
            yield pos, stop - pos, block, self.bat[block]
            pos = stop

    def _data_offset(self, block: int, entry: int) -> int:
        return entry * L.SECTOR + self.bitmap_bytes

    def _read_aligned(self, offset: int, buf: memoryview) -> None:
        self._check_open()
        if self.bat is None:  # fixed: the data is the file
            self._read_file(offset, buf, "fixed disk data")
            return
        bs = self.block_size
        for pos, n, block, entry in self._block_runs(offset, len(buf)):
            view = buf[pos - offset : pos - offset + n]
            if entry == L.BAT_UNUSED:
                if self.differencing:
                    self._read_parent(pos, view)
                else:
                    fill_zeros(view)
                continue
            data_at = self._data_offset(block, entry)
            if not self.differencing:  # a dynamic disk's bitmap is not consulted (as qemu, Windows)
                self._read_file(data_at + pos % bs, view, f"block {block}")
                continue
            bitmap = self._bitmap(block, entry)
            for run_pos, run_len, present in self._sector_runs(bitmap, pos, n):
                part = view[run_pos - pos : run_pos - pos + run_len]
                if present:
                    self._read_file(data_at + run_pos % bs, part, f"block {block}")
                else:
                    self._read_parent(run_pos, part)

    def _read_file(self, file_offset: int, view: memoryview, what: str) -> None:
        end = self.file_store.size()
        got = self.store.preadinto(file_offset, view) if file_offset + len(view) <= end else -1
        if got != len(view):
            raise CorruptImageError(f"{what} extends past the end of the file", structure="VHD BAT",
                                    offset=file_offset, expected=f"end <= {end:#x}", found=file_offset + len(view))

    def _bitmap(self, block: int, entry: int) -> bytearray:
        """The block's sector bitmap, bit-reversed into LSB-first order."""
        raw = bytearray(self.bitmap_bytes)
        self._read_file(entry * L.SECTOR, memoryview(raw), f"bitmap of block {block}")
        return bytearray(raw.translate(MSB_TO_LSB))

    def _sector_runs(self, bitmap: bytearray, pos: int, n: int) -> Iterator[tuple[int, int, bool]]:
        bs = self.block_size
        first = (pos % bs) // L.SECTOR
        base = pos - pos % bs
        for start, count, present in bitmap_runs(bitmap, first, n // L.SECTOR):
            yield base + start * L.SECTOR, count * L.SECTOR, present

    def _own_extents(self, offset: int, length: int) -> Iterator[Extent]:
        if self.bat is None:
            yield Extent(offset, length, ExtentState.DATA)
            return
        for pos, n, block, entry in self._block_runs(offset, length):
            if entry == L.BAT_UNUSED:
                yield Extent(pos, n, ExtentState.PARENT if self.differencing else ExtentState.UNALLOCATED)
            elif not self.differencing:
                yield Extent(pos, n, ExtentState.DATA)
            else:
                for run_pos, run_len, present in self._sector_runs(self._bitmap(block, entry), pos, n):
                    yield Extent(run_pos, run_len, ExtentState.DATA if present else ExtentState.PARENT)

    # -- writing -------------------------------------------------------------------------------
    def publish(self) -> None:
        with self._write_lock:
            self._ordered = True

    def _write_aligned(self, offset: int, data: memoryview) -> None:
        self._check_open()
        if not self._writable:
            raise ReadOnlyError(f"{self.name} is open read-only")
        if self.problems:
            raise ReadOnlyError(f"{self.name} is damaged ({self.problems[0]}); it is read-only until repaired")
        if self.bat is None:
            self.store.pwrite(offset, data)
            return
        bs = self.block_size
        with self._write_lock:
            for pos, n, block, entry in self._block_runs(offset, len(data)):
                piece = data[pos - offset : pos - offset + n]
                if entry == L.BAT_UNUSED:
                    self._allocate_and_write(block, pos, piece)
                    continue
                data_at = self._data_offset(block, entry)
                if data_at + bs > self.file_store.size():
                    raise CorruptImageError("block extends past the end of the file", structure="VHD BAT",
                                            offset=self.header.table_offset + block * 4, found=entry)
                self.store.pwrite(data_at + pos % bs, piece)
                if self.differencing:
                    bitmap = self._bitmap(block, entry)
                    set_bits(bitmap, (pos % bs) // L.SECTOR, n // L.SECTOR)
                    if self._ordered:
                        self.store.flush()  # data durable before the bitmap says it is there
                    self.store.pwrite(entry * L.SECTOR, bytes(bitmap.translate(MSB_TO_LSB)))

    def _allocate_and_write(self, block: int, pos: int, piece: memoryview) -> None:
        """Append a block where the footer was, footer first, BAT entry last (see module doc)."""
        bs = self.block_size
        start = align_up(self.file_store.size() - L.FOOTER_SIZE, L.SECTOR)
        new_end = start + self.bitmap_bytes + bs
        self.store.truncate(new_end + L.FOOTER_SIZE)
        self.store.pwrite(new_end, self.footer_info.raw)
        bitmap = bytearray(self.bitmap_bytes)
        if self.differencing:
            set_bits(bitmap, (pos % bs) // L.SECTOR, len(piece) // L.SECTOR)
            bitmap = bytearray(bitmap.translate(MSB_TO_LSB))
        else:
            bitmap[:] = b"\xff" * len(bitmap)  # dynamic: every sector counts as written (as qemu)
        self.store.pwrite(start, bitmap)  # also covers where the old footer was
        self.store.pwrite(start + self.bitmap_bytes + pos % bs, piece)  # the rest is new, zero space
        if self._ordered:
            self.store.flush()
        assert self.bat is not None and self.header is not None
        self.bat[block] = start // L.SECTOR
        entry_at = self.header.table_offset + block * 4
        sector_at = entry_at // L.SECTOR * L.SECTOR  # one sector write: atomic on every disk
        sector = bytearray(self.store.pread(sector_at, L.SECTOR))
        struct.pack_into(">I", sector, entry_at - sector_at, start // L.SECTOR)
        self.store.pwrite(sector_at, bytes(sector))
        if self._ordered:
            self.store.flush()

    # -- reporting -----------------------------------------------------------------------------
    def info(self) -> DiskInfo:
        f = self.footer
        creator = bytes(f.creator_application).decode("latin-1")
        version = f"{f.creator_version >> 16}.{f.creator_version & 0xFFFF}"
        details: dict[str, object] = {
            "creator_host_os": bytes(f.creator_host_os).decode("latin-1"),
            "geometry": {"cylinders": f.cylinders, "heads": f.heads, "sectors_per_track": f.sectors_per_track},
            "chs_size": self.chs_size,
            "original_size": f.original_size,
            "timestamp": f.timestamp,
            "saved_state": bool(f.saved_state),
            "problems": list(self.problems),
        }
        if self.chs_size != self.size:
            # Windows, libvhdi and dissect use CurrentSize; qemu <= 9 uses CHS for "vpc " and
            # "qemu" images, qemu >= 10 for "vpc " only: say so when they would disagree.
            details["size_note"] = (f"CHS geometry gives {self.chs_size} bytes, CurrentSize {self.size}; "
                                    "vhdkit, Windows, libvhdi and dissect use CurrentSize"
                                    + ("; Virtual PC and qemu use the CHS size" if creator in ("vpc ", "qemu") else ""))
        blocks = None
        parent = None
        if self.bat is not None:
            used = sum(1 for e in self.bat[: -(-self.size // self.block_size)] if e != L.BAT_UNUSED)
            total = -(-self.size // self.block_size)
            blocks = {"total": total, "allocated": used, "unallocated": total - used}
            details.update(table_offset=self.header.table_offset, max_table_entries=self.header.max_table_entries)
        if self.differencing:
            parent = {
                "parent_unique_id": str(self.parent_unique_id),
                "parent_name": self.parent_name,
                "locators": self.parent_locators(),
                "resolved": self.parent.name if self.parent is not None else None,
            }
        return DiskInfo(
            path=self.name, format=self.format_name, type=self.disk_type, virtual_size=self.size,
            file_size=self.file_store.size(), size_on_disk=self.file_store.allocated_bytes(),
            logical_sector_size=L.SECTOR, physical_sector_size=L.SECTOR,
            block_size=self.block_size or None, disk_id=str(self.unique_id), creator=f"{creator.strip()} {version}",
            parent=parent, log=None, blocks=blocks, details=details,
        )
