"""The block allocation table ([MS-VHDX] 2.4, 2.5): geometry, interleave, entries.

Payload and sector-bitmap entries are interleaved: after every ``chunk_ratio`` payload entries
comes the sector-bitmap entry of that chunk, in dynamic and fixed files too (where it is never
allocated). Payload block i is at index i + i // chunk_ratio; the bitmap entry of chunk k is at
(k + 1) * (chunk_ratio + 1) - 1. Code that forgets this reads every image smaller than one chunk
correctly and larger ones wrongly, so the tests use images that cross chunks.
"""

from __future__ import annotations

import _thread
import sys
from _weakref import ref as weak_ref  # weakref's own type, without the weakref module's imports

from ..errors import CorruptImageError
from ..runtime_types import NamedTuple
from ..storage import Store
from ..units import MiB, ceil_div
from . import layout as L

TYPE_CHECKING = False
if TYPE_CHECKING:
    from array import array
    from typing import Iterator, Union

    Entries = Union[array, memoryview]  # a page of entries: ints, indexable and assignable


class BatGeometry(NamedTuple):
    """The numbers of 2.4/2.5 for one disk."""

    virtual_size: int
    block_size: int
    logical_sector_size: int
    has_parent: bool

    @property
    def chunk_ratio(self) -> int:
        return (L.SECTORS_PER_BITMAP_BLOCK * self.logical_sector_size) // self.block_size

    @property
    def chunk_size(self) -> int:
        """Virtual bytes described by one sector bitmap block."""
        return L.SECTORS_PER_BITMAP_BLOCK * self.logical_sector_size

    @property
    def data_blocks(self) -> int:
        return ceil_div(self.virtual_size, self.block_size)

    @property
    def bitmap_blocks(self) -> int:
        return ceil_div(self.data_blocks, self.chunk_ratio)

    @property
    def entry_count(self) -> int:
        if self.has_parent:
            return self.bitmap_blocks * (self.chunk_ratio + 1)
        return self.data_blocks + (self.data_blocks - 1) // self.chunk_ratio

    def payload_index(self, block: int) -> int:
        return block + block // self.chunk_ratio

    def bitmap_index(self, chunk: int) -> int:
        return (chunk + 1) * (self.chunk_ratio + 1) - 1


# Entries are held in pages of 1 MiB (131072 entries), read when first needed. A 64 TiB disk with
# 1 MiB blocks has a 512 MiB BAT; reading it whole cost that much memory per chain level (and a
# copy more to summarise it). Pages of zeros (most of a sparse disk's) are remembered as such,
# not stored. Pages read but never changed still match the file (nothing writes the BAT but the
# table's owner): past _MAX_CLEAN_PAGES of them, counted over every table in the process (a chain
# may be 256 deep), the oldest are dropped, to be read again when needed. Changed pages stay.
PAGE_ENTRIES = 1 << 17
_PAGE_BYTES = PAGE_ENTRIES * L.BAT_ENTRY_SIZE
_MAX_CLEAN_PAGES = 128
_ZERO_PAGE_BYTES = bytes(_PAGE_BYTES)
_pages_mutex = _thread.allocate_lock()  # every table's page bookkeeping, and the shared clean list
_clean_pages: dict[tuple[int, int], weak_ref[BlockAllocationTable]] = {}  # oldest first


def is_zero(raw: bytes | bytearray) -> bool:
    """Whether BAT bytes are all zero: a whole page is compared with one constant, allocating nothing."""
    return raw == _ZERO_PAGE_BYTES if len(raw) == _PAGE_BYTES else raw.count(0) == len(raw)


def _remember_clean(table: BlockAllocationTable, page: int) -> None:
    """Called with _pages_mutex held: ``page`` of ``table`` was read; drop the oldest clean pages."""
    _clean_pages[(id(table), page)] = weak_ref(table)
    while len(_clean_pages) > _MAX_CLEAN_PAGES:
        oldest = next(iter(_clean_pages))
        _, old_page = oldest
        ref = _clean_pages.pop(oldest)
        owner = ref()
        if owner is not None and old_page not in owner._dirty:  # noqa: SLF001
            owner._pages.pop(old_page, None)  # noqa: SLF001


class BlockAllocationTable:
    """The BAT entries (u64), paged in from ``source`` as they are used; state and offset decoded
    on access. ``table[index]`` reads an entry and ``table[index] = value`` sets one (in memory:
    the caller's write session puts the changed sectors in the file)."""

    def __init__(self, geometry: BatGeometry, entries: Entries | None, region_offset: int,
                 source: Store | None = None) -> None:
        self.geometry = geometry
        self.region_offset = region_offset
        self._count = geometry.entry_count
        self._source = source
        self._pages: dict[int, Entries | None] = {}  # loaded pages; None: all zero
        self._dirty: set[int] = set()  # changed pages: kept for good
        if entries is not None:  # a whole table built in memory: every page is its own
            if len(entries) != self._count:
                raise ValueError(f"{len(entries)} entries for a BAT of {self._count}")
            for first in range(0, self._count, PAGE_ENTRIES):
                self._pages[first // PAGE_ENTRIES] = entries[first : first + PAGE_ENTRIES]
                self._dirty.add(first // PAGE_ENTRIES)
        elif source is None:
            raise ValueError("a BAT needs its entries or a store to read them from")

    @classmethod
    def read(cls, store: Store, geometry: BatGeometry, region_offset: int, region_length: int) -> "BlockAllocationTable":
        """The table of the BAT region at ``region_offset`` in ``store`` (which must stay open:
        entries are read when first used)."""
        count = geometry.entry_count
        needed = count * L.BAT_ENTRY_SIZE
        if needed > region_length:
            raise CorruptImageError("the BAT region is too small for the virtual disk size",
                                    structure="BAT region", offset=region_offset, field="Length",
                                    expected=f">= {needed:#x}", found=region_length)
        if region_offset + needed > store.size():
            raise CorruptImageError("the BAT extends past the end of the file", structure="BAT region",
                                    offset=region_offset, expected=f"end <= {store.size():#x}",
                                    found=region_offset + needed)
        return cls(geometry, None, region_offset, source=store)

    def __len__(self) -> int:
        return self._count

    # -- pages ---------------------------------------------------------------------------------
    def _page_length(self, page: int) -> int:
        return min(PAGE_ENTRIES, self._count - page * PAGE_ENTRIES)

    def _read_page_bytes(self, page: int) -> bytes | bytearray:
        """Page ``page``'s bytes as the file holds them (little-endian)."""
        assert self._source is not None
        n = self._page_length(page) * L.BAT_ENTRY_SIZE
        buf = bytearray(n)
        got = self._source.preadinto(self.region_offset + page * _PAGE_BYTES, memoryview(buf))
        if got != n:
            raise CorruptImageError("the BAT is truncated", structure="BAT region",
                                    offset=self.region_offset + page * _PAGE_BYTES + got)
        return buf

    def _load(self, page: int) -> Entries | None:
        """The page's entries (None: all zero), read and remembered if not yet."""
        try:
            return self._pages[page]
        except KeyError:
            pass
        raw = self._read_page_bytes(page)
        entries = None if is_zero(raw) else _entries_of(raw)
        with _pages_mutex:
            if page in self._pages:  # another thread was first
                return self._pages[page]
            self._pages[page] = entries
            if entries is not None:
                _remember_clean(self, page)
        return entries

    def page_bytes(self) -> Iterator[tuple[int, bytes]]:
        """(first index, little-endian bytes) of each page in order: the whole table streamed,
        pages not yet loaded read without being kept."""
        for page in range((self._count + PAGE_ENTRIES - 1) // PAGE_ENTRIES):
            first = page * PAGE_ENTRIES
            if page in self._pages:
                entries = self._pages.get(page)
                if entries is None:
                    yield first, _ZERO_PAGE_BYTES[: self._page_length(page) * L.BAT_ENTRY_SIZE]
                else:
                    yield first, _bytes_of(entries)
            else:
                yield first, bytes(self._read_page_bytes(page))

    def nonzero(self) -> Iterator[tuple[int, int]]:
        """(index, value) of every entry that is not 0, in order."""
        for first, raw in self.page_bytes():
            if is_zero(raw):
                continue
            for i, value in enumerate(_entries_of(raw)):
                if value:
                    yield first + i, value

    # -- entries -------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> int:
        if not 0 <= index < self._count:
            raise IndexError(f"BAT entry {index} of {self._count}")
        entries = self._load(index // PAGE_ENTRIES)
        return 0 if entries is None else entries[index % PAGE_ENTRIES]

    def __setitem__(self, index: int, value: int) -> None:
        if not 0 <= index < self._count:
            raise IndexError(f"BAT entry {index} of {self._count}")
        page = index // PAGE_ENTRIES
        self._load(page)
        with _pages_mutex:
            entries = self._pages.get(page)
            if entries is None:  # all zero, or dropped since: read it again (it is unchanged)
                if page in self._pages or self._source is None:
                    entries = new_entries(self._page_length(page))
                else:
                    entries = _entries_of(self._read_page_bytes(page))
                self._pages[page] = entries
            self._dirty.add(page)
            _clean_pages.pop((id(self), page), None)
            entries[index % PAGE_ENTRIES] = value

    def payload(self, block: int) -> tuple[int, int]:
        """(state, file offset in bytes) of payload block ``block``."""
        return decode_entry(self[self.geometry.payload_index(block)])

    def bitmap(self, chunk: int) -> tuple[int, int]:
        """(state, file offset in bytes) of the sector bitmap block of ``chunk``."""
        return decode_entry(self[self.geometry.bitmap_index(chunk)])

    def set_payload(self, block: int, state: int, file_offset: int = 0) -> int:
        """Set payload block ``block``'s entry; returns its index (for the dirty sector)."""
        index = self.geometry.payload_index(block)
        self[index] = encode_entry(state, file_offset)
        return index

    def set_bitmap(self, chunk: int, state: int, file_offset: int = 0) -> int:
        index = self.geometry.bitmap_index(chunk)
        self[index] = encode_entry(state, file_offset)
        return index

    def sector_bytes(self, sector: int) -> bytes:
        """The on-disk bytes of 4 KiB BAT sector ``sector`` (zeros past the last entry)."""
        per = L.LOG_SECTOR_SIZE // L.BAT_ENTRY_SIZE
        first = sector * per
        entries = self._load(first // PAGE_ENTRIES) if first < self._count else None
        if entries is None:
            return bytes(L.LOG_SECTOR_SIZE)
        at = first % PAGE_ENTRIES  # a sector never straddles pages: PAGE_ENTRIES is a multiple of per
        raw = _bytes_of(entries[at : at + per])
        return raw + bytes(L.LOG_SECTOR_SIZE - len(raw))

    def to_array(self) -> array:
        """Every entry, in one array (memory: 8 bytes per entry)."""
        from array import array

        whole = array("Q")
        for _, raw in self.page_bytes():
            whole.extend(_entries_of(raw))
        return whole

    def to_bytes(self) -> bytes:
        return b"".join(raw for _, raw in self.page_bytes())

    # -- summaries -----------------------------------------------------------------------------
    def state_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """How many payload blocks, and how many sector bitmap blocks, are in each state (by spec
        name): one pass over the table, page by page, a few byte-string operations per page."""
        g = self.geometry
        step = g.chunk_ratio + 1
        table = bytes(L.BatEntry.state.of(i) for i in range(256))  # the state is in the low byte
        payload, bitmaps = [0] * 8, [0] * 8
        for first, raw in self.page_bytes():
            states = raw[0 :: L.BAT_ENTRY_SIZE].translate(table)
            # The interleaved sector-bitmap slots (every (chunk_ratio + 1)-th entry) go apart,
            # and the payload slots past the last block are dropped.
            slot = (first // step + 1) * step - 1 - first  # the first bitmap slot in this page
            chunk = (first + slot) // step
            in_bitmaps = states[slot::step][: max(0, g.bitmap_blocks - chunk)]
            kept = bytearray()
            pos = 0
            while slot < len(states):
                kept += states[pos:slot]
                pos = slot + 1
                slot += step
            kept += states[pos:]
            payload_first = first - first // step  # payload blocks before this page
            del kept[max(0, g.data_blocks - payload_first) :]
            for counts, part in ((payload, kept), (bitmaps, in_bitmaps)):
                zeros = part.count(0)
                counts[0] += zeros
                if zeros != len(part):  # (most pages of a sparse disk are all NOT_PRESENT)
                    for value in range(1, 8):
                        counts[value] += part.count(value)
        return ({state_name(L.PayloadBlockState, v): n for v, n in enumerate(payload) if n},
                {state_name(L.SectorBitmapState, v): n for v, n in enumerate(bitmaps) if n})

    def payload_state_counts(self) -> dict[str, int]:
        return self.state_counts()[0]

    def bitmap_state_counts(self) -> dict[str, int]:
        return self.state_counts()[1]


# Entries are u64 little-endian in the file. On a little-endian machine a page is the file's bytes
# seen as native u64s (memoryview.cast): no conversion, and no array module, whose import brings
# collections (array registers with collections.abc): ~1.5 ms of every command that reads a VHDX.
# A big-endian machine byte-swaps into an array.
def new_entries(count: int) -> Entries:
    """``count`` entries of 0."""
    return _entries_of(bytearray(count * L.BAT_ENTRY_SIZE))


def _entries_of(raw: bytes | bytearray) -> Entries:
    """Little-endian entry bytes as indexable, assignable ints (in this machine's order); a
    bytearray is taken over, not copied."""
    if sys.byteorder == "little":
        return memoryview(raw if isinstance(raw, bytearray) else bytearray(raw)).cast("Q")
    from array import array

    entries = array("Q")
    entries.frombytes(raw)
    entries.byteswap()
    return entries


def _bytes_of(entries: Entries) -> bytes:
    """Entries as the file holds them (little-endian)."""
    if sys.byteorder == "big":
        from array import array

        entries = array("Q", entries)
        entries.byteswap()
    return entries.tobytes()


def decode_entry(value: int) -> tuple[int, int]:
    """(state, file offset in bytes) of a BAT entry (2.5.1)."""
    return L.BatEntry.state.of(value), L.BatEntry.file_offset_mb.of(value) * MiB


def encode_entry(state: int, file_offset: int) -> int:
    """A BAT entry (2.5.1) for a block in ``state`` at ``file_offset`` (a whole number of MiB)."""
    if file_offset % MiB:
        raise ValueError(f"block offset {file_offset:#x} is not 1 MiB aligned")
    return L.BatEntry.pack(state=state, file_offset_mb=file_offset // MiB)


def state_name(states: type[L.PayloadBlockState] | type[L.SectorBitmapState], value: int) -> str:
    """A state as reports name it ("fully_present"), or "invalid_N"."""
    try:
        member = states(value)
    except ValueError:
        return f"invalid_{value}"
    return member.spec_name if isinstance(member, L.PayloadBlockState) else member.name.lower()
