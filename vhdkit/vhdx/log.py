"""The VHDX log ([MS-VHDX] 2.3): reading entries, finding the active sequence, replaying it.

A log is a ring buffer of entries. Each entry is a run of 4 KiB sectors: descriptor sectors (the
first starts with the 64-byte entry header), then one data sector per data descriptor. Replay
finds the newest valid and complete sequence (2.3.3), writes its descriptors tail to head, then
makes the file at least LastFileOffset long.

``replay_log`` writes to whatever store it is given: the image file itself for a read-write open,
or an OverlayStore for a read-only open, which leaves the file untouched.
"""

from __future__ import annotations


from ..errors import CorruptImageError
from ..guid import Guid
from ..runtime_types import NamedTuple
from ..storage import Store
from ..units import ceil_div
from . import layout as L
from .checksum import crc32c_with_zeroed_field, parse, stored_checksum, with_checksum
from .headers import VhdxHeader

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator

# A file offset beyond this in a log entry is nonsense: the largest VHDX (64 TiB of payload plus
# its BAT and bitmaps) fits well below it.
MAX_FILE_OFFSET = 1 << 47
# A sound log is scanned in about one pass; entries overlapping at every 4 KiB (only a crafted
# file has them) would make the scan quadratic in the log's size. Stop at this many passes.
SCAN_BUDGET_PASSES = 16


class LogDescriptor(NamedTuple):
    """One update: a 4 KiB data sector or a run of zeros.

    ``data`` holds the full 4 KiB sector only for entries read for replay; the scan for the
    active sequence keeps just the offsets, so scanning costs no memory per entry.
    """

    file_offset: int
    length: int
    is_zero: bool
    data: bytes | None = None


class LogEntry(L.LogEntryHeader):
    """An entry's header (layout.LogEntryHeader), where the entry lies in the log, and its updates."""

    position: int  # offset of the entry inside the log
    descriptors: tuple[LogDescriptor, ...]
    _extras = ("position", "descriptors")


class LogSequence:
    def __init__(self, entries: list[LogEntry]) -> None:
        self.entries = entries

    @property
    def head(self) -> LogEntry:
        return self.entries[-1]

    @property
    def tail(self) -> LogEntry:
        return self.entries[0]


class LogReplay(NamedTuple):
    """What a replay did, for ``vhdkit info`` and for tests."""

    state: str  # "empty", "replayed" (on disk) or "replayed_in_memory"
    entries: int = 0
    descriptors: int = 0
    tail_position: int | None = None
    head_position: int | None = None
    first_sequence: int | None = None
    last_sequence: int | None = None
    written_ranges: tuple[tuple[int, int], ...] = ()


def _descriptor_sectors(count: int) -> int:
    """Sectors that hold ``count`` descriptors: 126 in the first, 128 in each after (2.3.1)."""
    return ceil_div(count + 2, L.DESCRIPTORS_PER_SECTOR)


class LogReader:
    """Reads entries out of the ring buffer, validating every field the spec constrains."""

    def __init__(self, store: Store, header: VhdxHeader) -> None:
        self.store = store
        self.header = header
        self.offset = header.log_offset
        self.length = header.log_length
        if self.length == 0 or self.length % L.LOG_SECTOR_SIZE:
            raise CorruptImageError("the log is not empty but has no valid length",
                                    structure=f"VHDX header {header.slot}", offset=header.offset,
                                    field="LogLength", found=self.length)
        if self.offset + self.length > store.size():
            raise CorruptImageError("the log extends past the end of the file", structure="log",
                                    offset=self.offset, expected=f"end <= {store.size():#x}",
                                    found=self.offset + self.length)
        self._cache: dict[int, LogEntry | None] = {}
        self.rejections: dict[int, str] = {}
        self._bytes_parsed = 0

    def _read(self, position: int, n: int) -> bytes:
        """``n`` bytes from log position ``position``, wrapping at the end of the ring."""
        out = bytearray()
        while len(out) < n:
            pos = (position + len(out)) % self.length
            take = min(n - len(out), self.length - pos)
            chunk = self.store.pread(self.offset + pos, take)
            if len(chunk) != take:
                raise CorruptImageError("log is truncated", structure="log", offset=self.offset + pos)
            out += chunk
        return bytes(out)

    def entry_at(self, position: int) -> LogEntry | None:
        """The valid entry at ``position`` (without sector data), or None."""
        if position not in self._cache:
            entry, reason = self._parse_entry(position, with_data=False)
            self._cache[position] = entry
            if reason:
                self.rejections[position] = reason
        return self._cache[position]

    def with_data(self, entry: LogEntry) -> LogEntry:
        """The same entry re-read with its data sectors, for replay."""
        full, reason = self._parse_entry(entry.position, with_data=True)
        if full is None or full.sequence_number != entry.sequence_number:
            raise CorruptImageError(f"log entry changed while being read ({reason})", structure="log entry",
                                    offset=self.offset + entry.position)
        return full

    def _parse_entry(self, position: int, with_data: bool) -> tuple[LogEntry | None, str | None]:
        """Parse and validate the entry at ``position``: (entry, None) or (None, why not)."""
        first = self._read(position, L.LOG_SECTOR_SIZE)
        where = self.offset + position
        h = parse(LogEntry, first, "log entry", where)
        if h.signature != L.LOG_ENTRY_SIGNATURE:
            return None, "no entry signature"
        if h.entry_length == 0 or h.entry_length % L.LOG_SECTOR_SIZE or h.entry_length > self.length:
            return None, f"bad EntryLength {h.entry_length:#x}"
        if h.tail % L.LOG_SECTOR_SIZE or h.tail >= self.length:
            return None, f"bad Tail {h.tail:#x}"
        if h.sequence_number == 0:
            return None, "SequenceNumber is zero"
        if h.log_guid != self.header.log_guid:
            return None, "LogGuid does not match the header"
        for name, value in (("FlushedFileOffset", h.flushed_file_offset), ("LastFileOffset", h.last_file_offset)):
            if value % L.ALIGNMENT or value > MAX_FILE_OFFSET:
                return None, f"bad {name} {value:#x}"
        seq = h.sequence_number
        desc_sectors = _descriptor_sectors(h.descriptor_count)
        if desc_sectors * L.LOG_SECTOR_SIZE > h.entry_length:
            return None, f"DescriptorCount {h.descriptor_count} does not fit in the entry"
        self._bytes_parsed += h.entry_length
        if self._bytes_parsed > SCAN_BUDGET_PASSES * self.length + h.entry_length:
            raise CorruptImageError("log entries overlap so much that scanning the log would not end "
                                    "in reasonable time; the log is damaged or crafted",
                                    structure="log", offset=self.offset)
        raw = first + self._read(position + L.LOG_SECTOR_SIZE, h.entry_length - L.LOG_SECTOR_SIZE)
        if crc32c_with_zeroed_field(raw) != stored_checksum(raw):
            return None, "checksum mismatch"
        descriptors = []
        data_at = desc_sectors * L.LOG_SECTOR_SIZE
        for i in range(h.descriptor_count):
            at = (i + 2) * L.DESCRIPTOR_SIZE  # slots 0-1 hold the entry header
            sig = raw[at : at + 4]
            if sig == L.ZERO_DESCRIPTOR_SIGNATURE:
                z = parse(L.ZeroDescriptor, raw[at : at + L.DESCRIPTOR_SIZE], "zero descriptor", where + at)
                if z.sequence_number != seq or z.file_offset % L.LOG_SECTOR_SIZE or z.zero_length % L.LOG_SECTOR_SIZE:
                    return None, f"bad zero descriptor {i}"
                descriptors.append(LogDescriptor(z.file_offset, z.zero_length, is_zero=True))
            elif sig == L.DATA_DESCRIPTOR_SIGNATURE:
                d = parse(L.DataDescriptor, raw[at : at + L.DESCRIPTOR_SIZE], "data descriptor", where + at)
                if d.sequence_number != seq or d.file_offset % L.LOG_SECTOR_SIZE:
                    return None, f"bad data descriptor {i}"
                if data_at + L.LOG_SECTOR_SIZE > h.entry_length:
                    return None, "more data descriptors than data sectors"
                sector = parse(L.DataSector, raw[data_at : data_at + L.LOG_SECTOR_SIZE], "data sector", where + data_at)
                if sector.signature != L.DATA_SECTOR_SIGNATURE or (
                    sector.sequence_high << 32 | sector.sequence_low
                ) != seq:
                    return None, f"bad data sector for descriptor {i}"
                data = d.leading_bytes + sector.data + d.trailing_bytes if with_data else None
                descriptors.append(LogDescriptor(d.file_offset, L.LOG_SECTOR_SIZE, is_zero=False, data=data))
                data_at += L.LOG_SECTOR_SIZE
            else:
                return None, f"descriptor {i} has no valid signature"
        entry = h.replace(position=position, descriptors=tuple(descriptors))
        return entry, None

    def find_active_sequence(self) -> LogSequence:
        """The newest valid and complete sequence, by the procedure of 2.3.3.

        Raises CorruptImageError when there is none (the header says the log is not empty).
        """
        candidate: LogSequence | None = None
        current_tail = old_tail = 0
        while True:
            entries: list[LogEntry] = []
            head = current_tail
            used = 0
            while True:
                entry = self.entry_at(head)
                if entry is None:
                    break
                if entries and entry.sequence_number != entries[-1].sequence_number + 1:
                    break
                if used + entry.entry_length > self.length:  # would lap itself
                    break
                entries.append(entry)
                used += entry.entry_length
                head = (head + entry.entry_length) % self.length
            valid = False
            if entries:
                positions = [e.position for e in entries]
                if entries[-1].tail in positions:
                    valid = True
                    start = positions.index(entries[-1].tail)
                    if candidate is None or entries[-1].sequence_number > candidate.head.sequence_number:
                        candidate = LogSequence(entries[start:])
            if valid:
                current_tail = head
            else:
                current_tail = (current_tail + L.LOG_SECTOR_SIZE) % self.length
            if current_tail <= old_tail:
                break
            old_tail = current_tail
        if candidate is None:
            reasons = "; ".join(f"{pos:#x}: {why}" for pos, why in list(self.rejections.items())[:4])
            raise CorruptImageError(
                "the header says the log must be replayed, but the log holds no valid sequence"
                + (f" ({reasons})" if reasons else ""),
                structure="log", offset=self.offset,
            )
        return candidate


def _protected_ranges(header: VhdxHeader) -> Iterator[tuple[int, int, str]]:
    """Ranges a log entry may never write: the headers (updated only directly) and the log."""
    yield (0, L.REGION_TABLE_OFFSETS[0], "the file identifier and headers")
    yield (header.log_offset, header.log_offset + header.log_length, "the log itself")


def replay_sequence(store: Store, reader: LogReader, sequence: LogSequence) -> list[tuple[int, int]]:
    """Apply every descriptor tail to head, then extend to LastFileOffset (2.3.3). The caller has
    run validate_sequence first (before any other write), and flushes after.

    Returns the (offset, length) ranges written.
    """
    written = []
    for entry in sequence.entries:
        for d in reader.with_data(entry).descriptors:
            if d.is_zero:
                _zero(store, d.file_offset, d.length)
            else:
                assert d.data is not None
                store.pwrite(d.file_offset, d.data)
            written.append((d.file_offset, d.length))
    if store.size() < sequence.head.last_file_offset:
        store.truncate(sequence.head.last_file_offset)
    return written


def validate_sequence(store: Store, reader: LogReader, sequence: LogSequence) -> None:
    """Everything that can be known wrong about a replay before it writes a byte: a truncated file,
    and a descriptor (or LastFileOffset) past the file's limits or over the headers or the log."""
    header = reader.header
    head = sequence.head
    size = store.size()
    if size < head.flushed_file_offset:
        raise CorruptImageError(
            "the file is shorter than the log says it was, so it has been truncated",
            structure="log entry", offset=header.log_offset + head.position,
            field="FlushedFileOffset", expected=f">= {head.flushed_file_offset:#x}", found=size,
        )
    limit = max(size, head.last_file_offset)
    for entry in sequence.entries:
        for d in [None, *entry.descriptors]:  # None: the entry's own LastFileOffset
            end = entry.last_file_offset if d is None else d.file_offset + d.length
            if end > L.MAX_FILE_SIZE:  # no VHDX is that large: refuse before a byte is written
                raise CorruptImageError(
                    f"log entry {entry.sequence_number:#x} reaches {end:#x}, past the largest file a VHDX can be",
                    structure="log entry", offset=header.log_offset + entry.position,
                    field="LastFileOffset" if d is None else "FileOffset",
                    expected=f"<= {L.MAX_FILE_SIZE:#x}", found=end)
            if d is None:
                continue
            where = dict(structure="log descriptor", offset=header.log_offset + entry.position)
            if end > limit:
                raise CorruptImageError("a log descriptor writes past LastFileOffset",
                                        field="FileOffset", expected=f"end <= {limit:#x}", found=end,
                                        **where)  # type: ignore[arg-type]
            for lo, hi, what in _protected_ranges(header):
                if d.file_offset < hi and end > lo and d.length:
                    raise CorruptImageError(f"a log descriptor writes over {what}",
                                            field="FileOffset", found=d.file_offset, **where)  # type: ignore[arg-type]


def _zero(store: Store, offset: int, length: int) -> None:
    """Zeros at [offset, offset + length): written inside the file, but past its end the file is
    only extended (sparse; it reads zeros), so an entry zeroing far past the end fills no disk."""
    end = offset + length
    size = store.size()
    if offset < size:
        store.write_zeros(offset, min(end, size) - offset)
    if end > size:
        store.truncate(end)


def replay_in_memory(store: Store, header: VhdxHeader) -> tuple[Store, LogSequence, list[tuple[int, int]]]:
    """The file as the log's replay would leave it, in memory (``store`` is not written):
    (that view, the sequence replayed, the ranges written). CorruptImageError if it cannot be."""
    from ..storage import OverlayStore

    reader = LogReader(store, header)
    sequence = reader.find_active_sequence()
    validate_sequence(store, reader, sequence)
    overlay = OverlayStore(store)
    return overlay, sequence, replay_sequence(overlay, reader, sequence)


def describe(sequence: LogSequence, state: str, written: list[tuple[int, int]]) -> LogReplay:
    return LogReplay(
        state=state,
        entries=len(sequence.entries),
        descriptors=sum(len(e.descriptors) for e in sequence.entries),
        tail_position=sequence.tail.position,
        head_position=sequence.head.position,
        first_sequence=sequence.tail.sequence_number,
        last_sequence=sequence.head.sequence_number,
        written_ranges=tuple(written),
    )


class LogWriter:
    """Metadata updates through the log (2.3): write the entry, flush, apply, flush.

    Each entry is a whole transaction and its own sequence (Tail = its own position): it is
    applied and flushed before the next is written, so no older entry is ever needed again and a
    crash leaves at most the newest entry to replay. Entries follow each other round the ring
    with consecutive sequence numbers, which is also what qemu's replay expects.
    """

    def __init__(self, store: Store, header: VhdxHeader, log_guid: Guid, first_sequence: int) -> None:
        if not header.log_is_empty:
            raise ValueError("a log that may need replaying must be replayed before it is written")
        if header.log_length < L.ALIGNMENT:
            raise CorruptImageError("the image has no room for a log", structure=f"VHDX header {header.slot}",
                                    offset=header.offset, field="LogLength", found=header.log_length)
        self.store = store
        self.log_guid = log_guid
        self.offset = header.log_offset
        self.length = header.log_length
        self.position = 0
        self.sequence = first_sequence
        self.applied_unflushed = False  # the last entry's in-place writes may not be durable yet
        # An entry never takes more than a third of the ring, so the entry that starts again at
        # the beginning cannot overwrite the one before it: if it is torn, that one still stands.
        self.max_entry_sectors = self.length // L.LOG_SECTOR_SIZE // 3

    def start(self) -> None:
        """Write the first, empty entry, before the header names this LogGuid.

        Until the header carries the GUID the entry is ignored; once it does, the log always holds
        a valid sequence, so a crash at any later point never leaves a log with nothing to replay
        (which 2.3.3 calls corrupt). Windows begins its logs the same way.
        """
        self.commit({})

    def capacity(self) -> int:
        """The most 4 KiB updates one entry can carry."""
        data = self.max_entry_sectors - 1
        while data > 0 and _descriptor_sectors(data) + data > self.max_entry_sectors:
            data -= 1
        return data

    def commit(self, updates: dict[int, bytes], zeros: list[tuple[int, int]] = ()) -> None:  # type: ignore[assignment]
        """Make ``updates`` (4 KiB-aligned file offset -> 4 KiB) and ``zeros`` durable, atomically."""
        length = (_descriptor_sectors(len(updates) + len(zeros)) + len(updates)) * L.LOG_SECTOR_SIZE
        if self.position + length > self.length:
            self.position = 0  # start again at the beginning rather than wrap one entry round
        if self.applied_unflushed:
            # The last entry's in-place writes become durable before this entry can overwrite it
            # (and before the file size this entry records as flushed is read).
            self.store.flush()
        entry = self._build_entry(updates, list(zeros))
        self.store.pwrite(self.offset + self.position, entry)
        self.store.flush()
        for offset in sorted(updates):
            self.store.pwrite(offset, updates[offset])
        for offset, length in zeros:
            self.store.write_zeros(offset, length)
        # No flush here: the entry is durable, so a crash replays these writes (2.3.3); the next
        # flush of the file (the next entry's, the writer's next payload flush, a clean close)
        # makes them durable in place. One fsync fewer per metadata change.
        self.applied_unflushed = True
        self.position = (self.position + len(entry)) % self.length
        self.sequence += 1

    def flushed(self) -> None:
        """The file was flushed since the last entry was applied: its in-place writes are durable."""
        self.applied_unflushed = False

    def _build_entry(self, updates: dict[int, bytes], zeros: list[tuple[int, int]]) -> bytes:
        count = len(updates) + len(zeros)
        if _descriptor_sectors(count) + len(updates) > self.max_entry_sectors:
            raise ValueError(f"{len(updates)} sector updates do not fit in one {self.length}-byte log entry")
        desc_sectors = _descriptor_sectors(count)
        length = (desc_sectors + len(updates)) * L.LOG_SECTOR_SIZE
        size = self.store.size()  # durable: callers flush before committing
        buf = bytearray(length)
        header = L.LogEntryHeader.build(dict(
            signature=L.LOG_ENTRY_SIGNATURE, checksum=0, entry_length=length, tail=self.position,
            sequence_number=self.sequence, descriptor_count=count, reserved=0, log_guid=self.log_guid,
            flushed_file_offset=size, last_file_offset=size,
        ))
        buf[: len(header)] = header
        slot = 2
        data_at = desc_sectors * L.LOG_SECTOR_SIZE
        for offset in sorted(updates):
            sector = updates[offset]
            if offset % L.LOG_SECTOR_SIZE or len(sector) != L.LOG_SECTOR_SIZE:
                raise ValueError("log updates are whole, aligned 4 KiB sectors")
            buf[slot * 32 : slot * 32 + 32] = L.DataDescriptor.build(dict(
                signature=L.DATA_DESCRIPTOR_SIGNATURE, trailing_bytes=sector[-4:], leading_bytes=sector[:8],
                file_offset=offset, sequence_number=self.sequence,
            ))
            buf[data_at : data_at + L.LOG_SECTOR_SIZE] = L.DataSector.build(dict(
                signature=L.DATA_SECTOR_SIGNATURE, sequence_high=self.sequence >> 32, data=sector[8:-4],
                sequence_low=self.sequence & 0xFFFFFFFF,
            ))
            slot += 1
            data_at += L.LOG_SECTOR_SIZE
        for offset, zlen in zeros:
            buf[slot * 32 : slot * 32 + 32] = L.ZeroDescriptor.build(dict(
                signature=L.ZERO_DESCRIPTOR_SIGNATURE, reserved=0, zero_length=zlen, file_offset=offset,
                sequence_number=self.sequence,
            ))
            slot += 1
        return with_checksum(buf)
