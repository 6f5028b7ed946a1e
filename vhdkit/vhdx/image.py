"""VhdxDisk: a VHDX image opened as a VirtualDisk.

Opening follows [MS-VHDX] 2.3.3: read the identifier and headers, replay the log if it is not
empty (to the file for a read-write open, into memory for a read-only one), and only then read
the region table, metadata and BAT.
"""

from __future__ import annotations

import _thread

from ..bitmaps import bitmap_runs, set_bits
from ..disk import DiskInfo, Extent, ExtentState, VirtualDisk, fill_zeros
from ..errors import CorruptImageError, ReadOnlyError, RefusedError
from ..formats import VHDX
from ..guid import Guid
from ..storage import Store
from ..units import align_up
from . import layout as L
from .bat import BatGeometry, BlockAllocationTable
from .headers import HeaderSelection, VhdxHeader, read_creator, select_current_header, write_updated_header
from .log import LogReader, LogReplay, describe, replay_in_memory, replay_sequence, validate_sequence
from .metadata import Metadata, ParentLocator, build_parent_locator, read_metadata
from .regions import RegionTableSelection, read_region_tables
from .session import Transaction, UnpublishedSession, WriteSession

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Iterator

    # Given the child, returns its opened parent; raises ParentNotFoundError / ParentMismatchError.
    ParentResolver = Callable[["VhdxDisk"], VirtualDisk]


_ZERO_STATES = (L.PayloadBlockState.ZERO, L.PayloadBlockState.UNMAPPED, L.PayloadBlockState.UNMAPPED_V095,
                L.PayloadBlockState.UNDEFINED)


class VhdxDisk(VirtualDisk):
    format_name = VHDX.name

    def __init__(self, store: Store, *, writable: bool = False, parent_resolver: ParentResolver | None = None,
                 tolerate_checksum: bool = False, unpublished: bool = False) -> None:
        """``unpublished``: the file is being built under a name nobody uses yet, so writes skip
        the log and per-step flushes (UnpublishedSession); the builder flushes once at the end.
        ``tolerate_checksum`` is VHD's (whose footer has a copy to fall back on); a VHDX's damaged
        structure is read from its other copy, or refused."""
        self.file_store = store
        self.creator = read_creator(store)
        selection = select_current_header(store)
        self.header_selection: HeaderSelection = selection
        self.header: VhdxHeader = selection.current
        self.log_replay = LogReplay(state="empty")
        view: Store = store
        if not self.header.log_is_empty:
            view = self._replay(store, writable)
        self.regions: RegionTableSelection = read_region_tables(view)
        bat_region = self.regions.current.find(L.BAT_REGION_GUID)
        self.metadata: Metadata = read_metadata(view, self.regions.current.find(L.METADATA_REGION_GUID))
        md = self.metadata
        self.geometry = BatGeometry(md.virtual_disk_size, md.block_size, md.logical_sector_size, md.has_parent)
        self.bat = BlockAllocationTable.read(view, self.geometry, bat_region.file_offset, bat_region.length)
        super().__init__(view, size=md.virtual_disk_size, logical_sector_size=md.logical_sector_size,
                         physical_sector_size=md.physical_sector_size, writable=writable)
        self._bitmap_cache: dict[int, bytearray] = {}
        self._bitmap_lock = _thread.allocate_lock()
        self._write_lock = _thread.RLock()
        self._session = (UnpublishedSession(self) if unpublished else WriteSession(self)) if writable else None
        self._unpublished = unpublished
        # A merge writes a child's own data into this parent: the chain reads the same throughout,
        # so the child must keep accepting its parent until the merge is done (ops/merge.py).
        self.keep_data_write_guid = False
        self._broken: BaseException | None = None
        if md.has_parent:
            if parent_resolver is None:
                self.parent = None
            else:
                self.parent = parent_resolver(self)

    def publish(self) -> None:
        if self._unpublished and self._session is not None:
            with self._write_lock:
                self._session = WriteSession(self)  # headers and log on the first write after this
                self._unpublished = False

    # -- opening -------------------------------------------------------------------------------
    def _replay(self, store: Store, writable: bool) -> Store:
        if not writable:
            overlay, sequence, written = replay_in_memory(store, self.header)
            self.log_replay = describe(sequence, "replayed_in_memory", written)
            return overlay
        reader = LogReader(store, self.header)
        sequence = reader.find_active_sequence()
        validate_sequence(store, reader, sequence)  # a log that cannot be replayed changes nothing
        # 2.2.2.1: a new FileWriteGuid before the first modification (the replay itself);
        # LogGuid stays until the replay is durable, so a crash here replays again.
        self.header = write_updated_header(store, self.header, file_write_guid=Guid.random())
        written = replay_sequence(store, reader, sequence)
        store.flush()
        self.header = write_updated_header(store, self.header, log_guid=L.NULL_GUID)
        self.log_replay = describe(sequence, "replayed", written)
        return store

    # -- what the disk is ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.file_store.url

    @property
    def disk_type(self) -> str:
        if self.metadata.has_parent:
            return "differencing"
        return "fixed" if self.metadata.leave_block_allocated else "dynamic"

    @property
    def block_size(self) -> int:
        return self.metadata.block_size

    @property
    def disk_id(self) -> Guid:
        return self.metadata.virtual_disk_id

    @property
    def parent_locator(self) -> ParentLocator | None:
        return self.metadata.parent_locator

    def parent_paths(self) -> list[tuple[str, str]]:
        """(key, path) to try for the parent, in the order of 2.6.2.6.3."""
        return self.metadata.parent_locator.paths() if self.metadata.parent_locator else []

    def accepts_parent(self, parent: VirtualDisk) -> str | None:
        """None if ``parent`` is this disk's parent (DataWriteGuid = parent_linkage), else why not."""
        locator = self.metadata.parent_locator
        assert locator is not None
        if not isinstance(parent, VhdxDisk):
            return f"{parent.name} is a {parent.format_name} image; a VHDX's parent is a VHDX"
        linkages = {x.lower().strip("{}") for x in (locator.parent_linkage, locator.parent_linkage2) if x}
        if str(parent.header.data_write_guid).lower() not in linkages:
            return (f"{parent.name} is not the parent of {self.name}: its DataWriteGuid is "
                    f"{parent.header.data_write_guid}, the child expects {locator.parent_linkage} "
                    "(the parent changed after the child was made)")
        return None

    # -- reading -------------------------------------------------------------------------------
    def _block_runs(self, offset: int, length: int) -> Iterator[tuple[int, int, int, int, int]]:
        """(virtual offset, length, block, state, file offset of the block) for the range."""
        bs = self.geometry.block_size
        pos, end = offset, offset + length
        while pos < end:
            block = pos // bs
            stop = min(end, (block + 1) * bs)
            state, file_offset = self.bat.payload(block)
            yield pos, stop - pos, block, state, file_offset
            pos = stop

    def _read_aligned(self, offset: int, buf: memoryview) -> None:
        self._check_open()
        bs = self.geometry.block_size
        for pos, n, block, state, file_offset in self._block_runs(offset, len(buf)):
            view = buf[pos - offset : pos - offset + n]
            if state == L.PayloadBlockState.FULLY_PRESENT:
                self._read_payload(block, file_offset + pos % bs, view)
            elif state == L.PayloadBlockState.NOT_PRESENT:
                if self.metadata.has_parent:
                    self._read_parent(pos, view)
                else:
                    fill_zeros(view)
            elif state in _ZERO_STATES:
                fill_zeros(view)
            elif state == L.PayloadBlockState.PARTIALLY_PRESENT and self.metadata.has_parent:
                for run_pos, run_len, present in self._sector_runs(pos, n):
                    part = view[run_pos - pos : run_pos - pos + run_len]
                    if present:
                        self._read_payload(block, file_offset + run_pos % bs, part)
                    else:
                        self._read_parent(run_pos, part)
            else:
                raise self._bad_state(block, state)

    def _read_payload(self, block: int, file_offset: int, view: memoryview) -> None:
        if file_offset < L.HEADER_SECTION_SIZE:
            raise CorruptImageError("payload block inside the header section",
                                    structure=f"BAT entry for block {block}",
                                    offset=self.bat.region_offset + self.geometry.payload_index(block) * 8,
                                    field="FileOffsetMB", found=file_offset)
        end = self.store.size()
        got = self.store.preadinto(file_offset, view) if file_offset + len(view) <= end else -1
        if got != len(view):
            raise CorruptImageError("payload block extends past the end of the file",
                                    structure=f"payload block {block}", offset=file_offset,
                                    expected=f"end <= {end:#x}", found=file_offset + len(view))

    def _bad_state(self, block: int, state: int) -> CorruptImageError:
        return CorruptImageError(
            f"payload block state {state} is not valid in a {self.disk_type} disk",
            structure=f"BAT entry for block {block}",
            offset=self.bat.region_offset + self.geometry.payload_index(block) * L.BAT_ENTRY_SIZE,
            field="State", found=state,
        )

    def _sector_bitmap(self, chunk: int) -> bytearray:
        """The 1 MiB sector bitmap block of ``chunk`` (LSB-first, 1 = sector is in this file)."""
        cached = self._bitmap_cache.get(chunk)
        if cached is not None:
            return cached
        state, file_offset = self.bat.bitmap(chunk)
        where = dict(structure=f"BAT sector bitmap entry for chunk {chunk}",
                     offset=self.bat.region_offset + self.geometry.bitmap_index(chunk) * L.BAT_ENTRY_SIZE)
        if state != L.SectorBitmapState.PRESENT:
            raise CorruptImageError("a partially present block's sector bitmap is not present",
                                    field="State", expected=L.SectorBitmapState.PRESENT, found=state, **where)  # type: ignore[arg-type]
        if file_offset < L.HEADER_SECTION_SIZE:
            raise CorruptImageError("sector bitmap block inside the header section", field="FileOffsetMB",
                                    found=file_offset, **where)  # type: ignore[arg-type]
        data = bytearray(self.store.pread(file_offset, L.SECTOR_BITMAP_BLOCK_SIZE) if file_offset < self.store.size() else b"")
        if len(data) != L.SECTOR_BITMAP_BLOCK_SIZE:
            raise CorruptImageError("sector bitmap block extends past the end of the file",
                                    field="FileOffsetMB", found=file_offset, **where)  # type: ignore[arg-type]
        self._cache_bitmap(chunk, data)
        return data

    def _cache_bitmap(self, chunk: int, data: bytearray) -> None:
        with self._bitmap_lock:
            if chunk not in self._bitmap_cache and len(self._bitmap_cache) >= 16:
                self._bitmap_cache.pop(next(iter(self._bitmap_cache)))
            self._bitmap_cache[chunk] = data

    def _sector_runs(self, offset: int, length: int, bitmap: bytearray | None = None) -> Iterator[tuple[int, int, bool]]:
        """(virtual offset, length, present in this file) by the sector bitmap, within one block."""
        g = self.geometry
        lss = g.logical_sector_size
        chunk = offset // g.chunk_size
        if bitmap is None:
            bitmap = self._sector_bitmap(chunk)
        first = (offset - chunk * g.chunk_size) // lss
        count = length // lss
        for start, n, present in bitmap_runs(bitmap, first, count):
            yield chunk * g.chunk_size + start * lss, n * lss, present

    def _own_extents(self, offset: int, length: int) -> Iterator[Extent]:
        differencing = self.metadata.has_parent
        for pos, n, block, state, _ in self._block_runs(offset, length):
            if state == L.PayloadBlockState.FULLY_PRESENT:
                yield Extent(pos, n, ExtentState.DATA)
            elif state == L.PayloadBlockState.NOT_PRESENT:
                yield Extent(pos, n, ExtentState.PARENT if differencing else ExtentState.UNALLOCATED)
            elif state in _ZERO_STATES:
                yield Extent(pos, n, ExtentState.ZERO)
            elif state == L.PayloadBlockState.PARTIALLY_PRESENT and differencing:
                for run_pos, run_len, present in self._sector_runs(pos, n):
                    yield Extent(run_pos, run_len, ExtentState.DATA if present else ExtentState.PARENT)
            else:
                raise self._bad_state(block, state)

    # -- writing -------------------------------------------------------------------------------
    def _write_aligned(self, offset: int, data: memoryview) -> None:
        """Write sector-aligned ``data``: payload first and durable, then its metadata via the log.

        Blocks not yet in the file are appended (1 MiB aligned; the file grows by whole blocks,
        and the part of a new block not written stays a hole that reads as zeros). In a
        differencing disk a partial write to an absent block makes it PARTIALLY_PRESENT and sets
        the written sectors in the chunk's sector bitmap, so the rest still reads from the parent.
        """
        self._check_writable()
        assert self._session is not None
        with self._write_lock:
            try:
                self._session.begin(user_visible=not self.keep_data_write_guid)
                tx = Transaction()
                for pos, n, block, state, file_offset in self._block_runs(offset, len(data)):
                    piece = data[pos - offset : pos - offset + n]
                    self._write_block(tx, pos, piece, block, state, file_offset)
                if tx:
                    if not self._unpublished:
                        self.file_store.flush()  # payload durable before the BAT points at it
                        self._session.flushed()
                    self._session.commit(tx)
                    for chunk, bitmap in tx.bitmaps.items():
                        self._cache_bitmap(chunk, bitmap)
            except BaseException as e:
                self._broken = e  # memory and file may now disagree: refuse further writes
                raise

    def _write_block(self, tx: Transaction, pos: int, piece: memoryview, block: int, state: int,
                     file_offset: int) -> None:
        bs = self.geometry.block_size
        within = pos % bs
        differencing = self.metadata.has_parent
        if state == L.PayloadBlockState.FULLY_PRESENT:
            self._pwrite_payload(block, file_offset + within, piece)
        elif state == L.PayloadBlockState.PARTIALLY_PRESENT and differencing:
            self._pwrite_payload(block, file_offset + within, piece)
            self._mark_present(tx, pos, len(piece))
        elif state == L.PayloadBlockState.NOT_PRESENT and differencing and len(piece) < self._block_bytes(block):
            new = self._allocate(bs)
            self.store.pwrite(new + within, piece)
            tx.touch_bat(self.bat.set_payload(block, L.PayloadBlockState.PARTIALLY_PRESENT, new))
            self._mark_present(tx, pos, len(piece))
        elif state in _ZERO_STATES or state == L.PayloadBlockState.NOT_PRESENT:
            # A fresh block reads as zeros where it is not written: right for every state that
            # reads as zeros, and for a whole-block write over a differencing disk's parent.
            new = self._allocate(bs)
            self.store.pwrite(new + within, piece)
            tx.touch_bat(self.bat.set_payload(block, L.PayloadBlockState.FULLY_PRESENT, new))
        else:
            raise self._bad_state(block, state)

    def _block_bytes(self, block: int) -> int:
        """Bytes of the virtual disk in ``block`` (the last block may be short)."""
        bs = self.geometry.block_size
        return min(bs, self.size - block * bs)

    def _pwrite_payload(self, block: int, file_offset: int, piece: memoryview) -> None:
        """Write into a block the BAT says is present: it must lie inside the file."""
        end = self.store.size()
        if file_offset < L.HEADER_SECTION_SIZE or file_offset + len(piece) > end:
            raise CorruptImageError(
                "a present payload block lies outside the file's payload area",
                structure=f"BAT entry for block {block}",
                offset=self.bat.region_offset + self.geometry.payload_index(block) * L.BAT_ENTRY_SIZE,
                field="FileOffsetMB", expected=f"{L.HEADER_SECTION_SIZE:#x} .. {end:#x}", found=file_offset,
            )
        self.store.pwrite(file_offset, piece)

    def _allocate(self, length: int) -> int:
        """Append ``length`` bytes (a block or a bitmap) at the next 1 MiB boundary."""
        offset = align_up(self.store.size(), L.ALIGNMENT)
        self.store.truncate(offset + length)
        return offset

    def _mark_present(self, tx: Transaction, pos: int, length: int) -> None:
        """Set the bitmap bits of [pos, pos+length), allocating the chunk's bitmap block if needed."""
        g = self.geometry
        chunk = pos // g.chunk_size
        bitmap = tx.bitmaps.get(chunk)
        if bitmap is None:
            state, _ = self.bat.bitmap(chunk)
            if state == L.SectorBitmapState.PRESENT:
                bitmap = self._sector_bitmap(chunk)
            else:
                sb_offset = self._allocate(L.SECTOR_BITMAP_BLOCK_SIZE)
                tx.touch_bat(self.bat.set_bitmap(chunk, L.SectorBitmapState.PRESENT, sb_offset))
                bitmap = bytearray(L.SECTOR_BITMAP_BLOCK_SIZE)
            tx.bitmaps[chunk] = bitmap
        first = (pos - chunk * g.chunk_size) // g.logical_sector_size
        count = length // g.logical_sector_size
        set_bits(bitmap, first, count)
        bits_per_sector = L.LOG_SECTOR_SIZE * 8
        for sector in range(first // bits_per_sector, (first + count - 1) // bits_per_sector + 1):
            tx.bitmap_sectors.add((chunk, sector))

    def begin_merge(self) -> None:
        """A child's own data is about to be written into this disk: keep DataWriteGuid until
        end_merge, so the child goes on accepting this disk as its parent meanwhile."""
        self.keep_data_write_guid = True

    def end_merge(self, changed: bool) -> None:
        """The merge is over: if it changed the content, say so with a new DataWriteGuid, so
        children made against the old content are refused rather than read wrong."""
        self.keep_data_write_guid = False
        if changed:
            self._check_writable()
            with self._write_lock:
                self.header = write_updated_header(self.file_store, self.header, data_write_guid=Guid.random())
                self.file_store.flush()

    def set_disk_id(self, disk_id: Guid) -> None:
        """Change the VirtualDiskId metadata item (Set-VHD -ResetDiskIdentifier), through the log."""
        self._check_writable()
        assert self._session is not None
        with self._write_lock:
            self._session.begin(user_visible=True)
            entry = next(e for e in self.metadata.entries if e.item_id == L.VIRTUAL_DISK_ID_GUID and not e.is_user)
            tx = Transaction()
            self._patch_metadata(tx, self.metadata.region.file_offset + entry.offset, disk_id.bytes_le)
            self._session.commit(tx)
            self.metadata.virtual_disk_id = disk_id

    def set_parent_paths(self, relative_path: str, absolute_path: str | None = None) -> None:
        """Rewrite the parent locator's paths (Set-VHD -ParentPath), keeping parent_linkage, in one
        log transaction (2.6.2.6): the new item goes where the old one was if it fits, else after
        the last item, and its table entry changes with it. DataWriteGuid stays: no data changed."""
        self._check_writable()
        assert self._session is not None
        locator = self.metadata.parent_locator
        if locator is None:
            raise RefusedError(f"{self.name} is not a differencing disk: it has no parent to point at")
        pairs = {k: v for k, v in locator.entries.items()
                 if k not in ("relative_path", "absolute_win32_path", "volume_path")}
        pairs["relative_path"] = relative_path
        if absolute_path:
            pairs["absolute_win32_path"] = absolute_path
        try:
            data = build_parent_locator(pairs)
        except ValueError as e:
            raise RefusedError(f"{self.name}: {e}") from None
        entries = self.metadata.entries
        index = next(i for i, e in enumerate(entries) if e.item_id == L.PARENT_LOCATOR_GUID and not e.is_user)
        entry = entries[index]
        region = self.metadata.region
        if len(data) <= entry.length:
            offset, item = entry.offset, data + bytes(entry.length - len(data))
        else:
            offset, item = align_up(max(e.offset + e.length for e in entries), 8), data
            if offset + len(data) > region.length:
                raise RefusedError(f"{self.name}: no room in the metadata region for a {len(data)}-byte locator")
        new_entry = entry.replace(offset=offset, length=len(data))
        with self._write_lock:
            self._session.begin(user_visible=False)
            tx = Transaction()
            self._patch_metadata(tx, region.file_offset + offset, item)
            self._patch_metadata(tx, region.file_offset + L.MetadataTableHeader.sizeof()
                                 + index * L.MetadataTableEntry.sizeof(), new_entry.to_bytes())
            self._session.commit(tx)
            self.metadata = read_metadata(self.store, region)

    def _patch_metadata(self, tx: Transaction, file_offset: int, data: bytes) -> None:
        """Put ``data`` at ``file_offset`` into the transaction as whole 4 KiB sectors."""
        start = file_offset // L.LOG_SECTOR_SIZE * L.LOG_SECTOR_SIZE
        end = align_up(file_offset + len(data), L.LOG_SECTOR_SIZE)
        for sector in range(start, end, L.LOG_SECTOR_SIZE):
            if sector not in tx.sectors:
                tx.sectors[sector] = self.store.pread(sector, L.LOG_SECTOR_SIZE)
        for sector in range(start, end, L.LOG_SECTOR_SIZE):
            buf = bytearray(tx.sectors[sector])
            lo, hi = max(file_offset, sector), min(file_offset + len(data), sector + L.LOG_SECTOR_SIZE)
            buf[lo - sector : hi - sector] = data[lo - file_offset : hi - file_offset]
            tx.sectors[sector] = bytes(buf)

    def _check_writable(self) -> None:
        self._check_open()
        if not self._writable:
            raise ReadOnlyError(f"{self.name} is open read-only")
        if self._broken is not None:
            raise ReadOnlyError(f"{self.name}: an earlier write failed ({self._broken}); reopen the image")

    def flush(self) -> None:
        if self._flushable() and self._broken is None:
            self.file_store.flush()
            if self._session is not None:
                self._session.flushed()

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._session is not None and self._broken is None:
                self._session.end()
        finally:
            super().close()

    # -- reporting -----------------------------------------------------------------------------
    def info(self) -> DiskInfo:
        md, h = self.metadata, self.header
        parent = None
        if md.parent_locator is not None:
            parent = {
                "parent_linkage": md.parent_locator.parent_linkage,
                "parent_linkage2": md.parent_locator.parent_linkage2,
                "locators": dict(md.parent_locator.entries),
                "resolved": self.parent.name if self.parent is not None else None,
            }
        log = {
            "state": self.log_replay.state,
            "entries_replayed": self.log_replay.entries,
            "descriptors_replayed": self.log_replay.descriptors,
            "first_sequence": self.log_replay.first_sequence,
            "last_sequence": self.log_replay.last_sequence,
            "log_offset": h.log_offset,
            "log_length": h.log_length,
        }
        payload_states, bitmap_states = self.bat.state_counts()
        blocks = {"total": self.geometry.data_blocks, **payload_states}
        details = {
            "header": {
                "current": h.slot,
                "sequence_numbers": [x.sequence_number if x else None for x in self.header_selection.headers],
                "file_write_guid": str(h.file_write_guid),
                "data_write_guid": str(h.data_write_guid),
                "log_guid": str(h.log_guid),
            },
            "regions": [
                {"name": r.name, "guid": str(r.guid), "file_offset": r.file_offset, "length": r.length,
                 "required": r.is_required}
                for r in self.regions.current.regions
            ],
            "metadata_items": [
                {"name": e.name, "offset": e.offset, "length": e.length, "is_user": e.is_user,
                 "is_virtual_disk": e.is_virtual_disk, "is_required": e.is_required}
                for e in md.entries
            ],
            "chunk_ratio": self.geometry.chunk_ratio,
            "bat_entries": self.geometry.entry_count,
            "sector_bitmap_blocks": bitmap_states,
        }
        return DiskInfo(
            path=self.name, format=self.format_name, type=self.disk_type, virtual_size=self.size,
            file_size=self.file_store.size(), size_on_disk=self.file_store.allocated_bytes(),
            logical_sector_size=self.logical_sector_size, physical_sector_size=self.physical_sector_size,
            block_size=md.block_size, disk_id=str(md.virtual_disk_id), creator=self.creator,
            parent=parent, log=log, blocks=blocks, details=details,
        )

