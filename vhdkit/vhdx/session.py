"""A read-write session on a VHDX file: the header protocol and metadata transactions.

[MS-VHDX] 2.2.2.1: before the first change of a session the headers get a new FileWriteGuid;
before the first user-visible change, a new DataWriteGuid; before the log is written, a new
LogGuid (so entries of earlier sessions are invalid). All three are set in one header update when
the first change is user-visible, which is the common case. Closing cleanly clears LogGuid again,
so the file has an empty log at rest.

The log is started (an empty first entry) before the header names its LogGuid; see
LogWriter.start for why.

A Transaction gathers the 4 KiB metadata sectors one operation changes (BAT sectors, sector bitmap
sectors, metadata item sectors) and commits them as one log entry: atomic, durable.
"""

from __future__ import annotations

import os

from ..guid import Guid
from ..runtime_types import Protocol
from ..storage import Store
from . import layout as L
from .bat import BlockAllocationTable
from .headers import VhdxHeader, write_updated_header
from .log import LogWriter


class SessionDisk(Protocol):
    """What a session needs of the disk it writes (a VhdxDisk): the file, its current header
    (which the session replaces as it updates it) and its BAT."""

    file_store: Store
    header: VhdxHeader
    bat: BlockAllocationTable

BAT_ENTRIES_PER_SECTOR = L.LOG_SECTOR_SIZE // L.BAT_ENTRY_SIZE


class Transaction:
    def __init__(self) -> None:
        self.bat_sectors: set[int] = set()  # sector index inside the BAT region
        self.bitmaps: dict[int, bytearray] = {}  # chunk -> its whole 1 MiB bitmap
        self.bitmap_sectors: set[tuple[int, int]] = set()  # (chunk, sector in its block)
        self.sectors: dict[int, bytes] = {}  # any other 4 KiB metadata sector

    def __bool__(self) -> bool:
        return bool(self.bat_sectors or self.bitmap_sectors or self.sectors)

    def touch_bat(self, index: int) -> None:
        self.bat_sectors.add(index // BAT_ENTRIES_PER_SECTOR)


class WriteSession:
    def __init__(self, disk: SessionDisk) -> None:
        self.disk = disk
        self.log: LogWriter | None = None
        self.data_write_guid_changed = False


    @property
    def store(self) -> Store:
        return self.disk.file_store

    def begin(self, *, user_visible: bool) -> None:
        """Update the headers as 2.2.2.1 asks, once per session (and once more for DataWriteGuid)."""
        disk = self.disk
        if self.log is None:
            log_guid = Guid.random()
            # Windows starts at a random 64-bit sequence number; stay far from wrapping.
            log = LogWriter(self.store, disk.header, log_guid, first_sequence=_random_sequence_start())
            log.start()
            changes: dict[str, Guid] = {"file_write_guid": Guid.random(), "log_guid": log_guid}
            if user_visible:
                changes["data_write_guid"] = Guid.random()
                self.data_write_guid_changed = True
            disk.header = write_updated_header(self.store, disk.header, **changes)
            self.log = log
        elif user_visible and not self.data_write_guid_changed:
            disk.header = write_updated_header(self.store, disk.header, data_write_guid=Guid.random())
            self.data_write_guid_changed = True

    def flushed(self) -> None:
        """The file was just flushed (the writer's payload flush, or a flush asked for)."""
        if self.log is not None:
            self.log.flushed()

    def end(self) -> VhdxHeader:
        """Flush and mark the log empty (clean close)."""
        disk = self.disk
        if self.log is not None:
            self.store.flush()
            disk.header = write_updated_header(self.store, disk.header, log_guid=L.NULL_GUID)
            self.log = None
        return disk.header

    def commit(self, tx: Transaction) -> None:
        """Write ``tx`` through the log. The caller has made the payload it refers to durable."""
        if not tx:
            return
        assert self.log is not None, "begin() first"
        disk = self.disk
        updates: list[tuple[int, bytes]] = []
        # Order matters only if a transaction must be split: bitmaps before the BAT entries that
        # point at them, so no prefix of the entries ever references an unwritten bitmap.
        for chunk, sector in sorted(tx.bitmap_sectors):
            _, sb_offset = disk.bat.bitmap(chunk)
            data = tx.bitmaps[chunk][sector * L.LOG_SECTOR_SIZE : (sector + 1) * L.LOG_SECTOR_SIZE]
            updates.append((sb_offset + sector * L.LOG_SECTOR_SIZE, bytes(data)))
        updates.extend(sorted(tx.sectors.items()))
        for sector in sorted(tx.bat_sectors):
            updates.append((disk.bat.region_offset + sector * L.LOG_SECTOR_SIZE, disk.bat.sector_bytes(sector)))
        capacity = self.log.capacity()
        for start in range(0, len(updates), capacity):
            self.log.commit(dict(updates[start : start + capacity]))


class UnpublishedSession(WriteSession):
    """Writing a file nobody else can see yet (being built under a temporary name).

    No reader can meet it half-made, and a crash leaves only a temporary file to delete, so the
    log and the flushes that order each step are not needed: metadata sectors are written in
    place, and the builder flushes once before giving the file its name.
    """

    def begin(self, *, user_visible: bool) -> None:
        pass

    def end(self) -> VhdxHeader:
        return self.disk.header

    def commit(self, tx: Transaction) -> None:
        disk = self.disk
        for chunk, sector in tx.bitmap_sectors:
            _, sb_offset = disk.bat.bitmap(chunk)
            data = tx.bitmaps[chunk][sector * L.LOG_SECTOR_SIZE : (sector + 1) * L.LOG_SECTOR_SIZE]
            self.store.pwrite(sb_offset + sector * L.LOG_SECTOR_SIZE, bytes(data))
        for offset, data in tx.sectors.items():
            self.store.pwrite(offset, data)
        for sector in tx.bat_sectors:
            self.store.pwrite(disk.bat.region_offset + sector * L.LOG_SECTOR_SIZE, disk.bat.sector_bytes(sector))


def _random_sequence_start() -> int:
    """A log's first sequence number: random in [1, 2**62) (any non-zero start is valid, 2.3.1.1;
    random, as Hyper-V's are, so an old entry never continues a new log's sequence)."""
    return int.from_bytes(os.urandom(8), "little") % ((1 << 62) - 1) + 1
