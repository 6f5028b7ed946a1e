"""The region table ([MS-VHDX] 2.2.3): where the BAT and the metadata region live."""

from __future__ import annotations


from ..errors import CorruptImageError, UnsupportedFeatureError
from ..guid import Guid
from ..runtime_types import NamedTuple
from ..storage import Store
from . import layout as L
from .checksum import crc32c_with_zeroed_field, parse, stored_checksum

KNOWN_REGIONS = {L.BAT_REGION_GUID: "BAT", L.METADATA_REGION_GUID: "metadata"}


class Region(L.RegionTableEntry):
    """A region table entry (layout.RegionTableEntry), with its name and end."""

    @property
    def is_required(self) -> bool:
        return bool(self.required & 1)  # 2.2.3.2: bit 0; the other bits are reserved

    @property
    def name(self) -> str:
        return KNOWN_REGIONS.get(self.guid, str(self.guid))

    @property
    def end(self) -> int:
        return self.file_offset + self.length


class RegionTable(NamedTuple):
    """One copy of the region table: its entries, and its 64 KiB as read (for repair)."""

    copy: int  # 1 or 2
    regions: tuple[Region, ...]
    raw: bytes

    def find(self, guid: Guid) -> Region:
        for region in self.regions:
            if region.guid == guid:
                return region
        raise CorruptImageError(f"the {KNOWN_REGIONS.get(guid, guid)} region is missing",
                                structure=f"region table {self.copy}",
                                offset=L.REGION_TABLE_OFFSETS[self.copy - 1])

    def __repr__(self) -> str:  # without the raw bytes
        fields = ", ".join(f"{k}={v!r}" for k, v in zip(self._fields, self) if k != "raw")
        return f"{type(self).__name__}({fields})"


def parse_region_table(raw: bytes, copy: int) -> RegionTable:
    """Parse one 64 KiB region table; CorruptImageError for any rule of 2.2.3 broken."""
    name = f"region table {copy}"
    offset = L.REGION_TABLE_OFFSETS[copy - 1]
    if len(raw) < L.REGION_TABLE_SIZE:
        raise CorruptImageError("region table is truncated", structure=name, offset=offset,
                                expected=L.REGION_TABLE_SIZE, found=len(raw))
    head = parse(L.RegionTableHeader, raw, name, offset)
    if head.signature != L.REGION_TABLE_SIGNATURE:
        raise CorruptImageError("bad signature", structure=name, offset=offset, field="Signature",
                                expected=L.REGION_TABLE_SIGNATURE, found=head.signature)
    crc = crc32c_with_zeroed_field(raw[: L.REGION_TABLE_SIZE])
    if crc != stored_checksum(raw):
        raise CorruptImageError("checksum mismatch", structure=name, offset=offset,
                                field="Checksum", expected=crc, found=stored_checksum(raw))
    if head.entry_count > L.REGION_TABLE_MAX_ENTRIES:
        raise CorruptImageError("too many entries", structure=name, offset=offset,
                                field="EntryCount", expected=f"<= {L.REGION_TABLE_MAX_ENTRIES}",
                                found=head.entry_count)
    regions = []
    seen: set[Guid] = set()
    entry_size = L.RegionTableEntry.sizeof()
    for i in range(head.entry_count):
        at = L.RegionTableHeader.sizeof() + i * entry_size
        e = parse(Region, raw[at : at + entry_size], name, offset + at)
        where = dict(structure=f"{name} entry {i}", offset=offset + at)
        if e.guid in seen:
            raise CorruptImageError("duplicate region GUID", field="Guid", found=str(e.guid), **where)  # type: ignore[arg-type]
        seen.add(e.guid)
        if e.file_offset < L.HEADER_SECTION_SIZE or e.file_offset % L.ALIGNMENT:
            raise CorruptImageError("region offset must be a multiple of 1 MiB and at least 1 MiB",
                                    field="FileOffset", found=e.file_offset, **where)  # type: ignore[arg-type]
        if e.length == 0 or e.length % L.ALIGNMENT:
            raise CorruptImageError("region length must be a non-zero multiple of 1 MiB",
                                    field="Length", found=e.length, **where)  # type: ignore[arg-type]
        regions.append(e)
    _check_no_overlap(regions, name, offset)
    for region in regions:
        if region.is_required and region.guid not in KNOWN_REGIONS:
            raise UnsupportedFeatureError(
                f"the image has a required region vhdkit does not know ({region.guid}); "
                "refusing to open it ([MS-VHDX] 2.2.3.2)"
            )
    table = RegionTable(copy, tuple(regions), bytes(raw[: L.REGION_TABLE_SIZE]))
    table.find(L.BAT_REGION_GUID)
    table.find(L.METADATA_REGION_GUID)
    return table


def _check_no_overlap(regions: list[Region], name: str, offset: int) -> None:
    ordered = sorted(regions, key=lambda r: r.file_offset)
    for a, b in zip(ordered, ordered[1:]):
        if b.file_offset < a.end:
            raise CorruptImageError(f"regions {a.name} and {b.name} overlap", structure=name,
                                    offset=offset)


class RegionTableSelection(NamedTuple):
    current: RegionTable
    tables: tuple[RegionTable | None, RegionTable | None]
    errors: tuple[Exception | None, Exception | None]


def read_region_tables(store: Store) -> RegionTableSelection:
    """Read both copies; use the first valid one. Both bad is a CorruptImageError."""
    tables: list[RegionTable | None] = []
    errors: list[Exception | None] = []
    for copy in (1, 2):
        raw = store.pread(L.REGION_TABLE_OFFSETS[copy - 1], L.REGION_TABLE_SIZE)
        try:
            tables.append(parse_region_table(raw, copy))
            errors.append(None)
        except UnsupportedFeatureError:
            raise
        except CorruptImageError as e:
            tables.append(None)
            errors.append(e)
    current = tables[0] or tables[1]
    if current is None:
        raise CorruptImageError(
            f"no valid region table: table 1: {errors[0]}; table 2: {errors[1]}",
            structure="region tables", offset=L.REGION_TABLE_OFFSETS[0],
        )
    return RegionTableSelection(current, (tables[0], tables[1]), (errors[0], errors[1]))
