"""The metadata region ([MS-VHDX] 2.6): its table and every known item, parsed by GUID.

Writers order items differently (Hyper-V: parameters, size, logical, physical, id; qemu:
parameters, size, id, logical, physical), so nothing here depends on order.
"""

from __future__ import annotations


from ..errors import CorruptImageError, UnsupportedFeatureError
from ..guid import Guid
from ..runtime_types import NamedTuple
from ..storage import Store
from ..units import is_power_of_two
from . import layout as L
from .checksum import parse
from .regions import Region


class MetadataEntry(L.MetadataTableEntry):
    """A metadata table entry (layout.MetadataTableEntry: ``offset`` is relative to the region),
    with its flags as booleans and its item's name."""

    @property
    def is_user(self) -> bool:
        return bool(self.flags & L.MetadataFlags.IS_USER)

    @property
    def is_virtual_disk(self) -> bool:
        return bool(self.flags & L.MetadataFlags.IS_VIRTUAL_DISK)

    @property
    def is_required(self) -> bool:
        return bool(self.flags & L.MetadataFlags.IS_REQUIRED)

    @property
    def name(self) -> str:
        return L.KNOWN_METADATA_ITEMS.get(self.item_id, str(self.item_id))


class ParentLocator(NamedTuple):
    """The VHDX parent locator (2.6.2.6.3): key/value pairs, UTF-16LE on disk."""

    locator_type: Guid
    entries: dict[str, str]

    @property
    def parent_linkage(self) -> str | None:
        return self.entries.get("parent_linkage")

    @property
    def parent_linkage2(self) -> str | None:
        return self.entries.get("parent_linkage2")

    def paths(self) -> list[tuple[str, str]]:
        """(key, path) in the order a reader should try them."""
        return [(k, self.entries[k]) for k in L.PARENT_PATH_KEYS if self.entries.get(k)]


class Metadata:
    """The metadata region as read (2.6); ``virtual_disk_id`` changes when a writer sets it."""

    def __init__(self, region: Region, entries: list[MetadataEntry], block_size: int, leave_block_allocated: bool,
                 has_parent: bool, virtual_disk_size: int, virtual_disk_id: Guid, logical_sector_size: int,
                 physical_sector_size: int, parent_locator: ParentLocator | None,
                 unknown_items: list[MetadataEntry] | None = None) -> None:
        self.region, self.entries = region, entries
        self.block_size, self.leave_block_allocated, self.has_parent = block_size, leave_block_allocated, has_parent
        self.virtual_disk_size, self.virtual_disk_id = virtual_disk_size, virtual_disk_id
        self.logical_sector_size, self.physical_sector_size = logical_sector_size, physical_sector_size
        self.parent_locator = parent_locator
        self.unknown_items = unknown_items if unknown_items is not None else []


def read_metadata(store: Store, region: Region) -> Metadata:
    if region.end > store.size():
        raise CorruptImageError("the metadata region extends past the end of the file",
                                structure="metadata region", offset=region.file_offset,
                                expected=f"end <= {store.size():#x}", found=region.end)
    table_raw = store.pread(region.file_offset, L.METADATA_TABLE_SIZE)
    entries = parse_metadata_table(table_raw, region)
    # Only the known system items are read: an image may list 2047 items of up to 1 MiB each,
    # all over the same bytes, and reading them all would cost memory the file does not justify.
    items: dict[Guid, bytes] = {}
    for e in entries:
        if e.length and not e.is_user and e.item_id in L.KNOWN_METADATA_ITEMS:
            items[e.item_id] = store.pread(region.file_offset + e.offset, e.length)
    return interpret_metadata(region, entries, items)


def parse_metadata_table(raw: bytes, region: Region) -> list[MetadataEntry]:
    name = "metadata table"
    at0 = region.file_offset
    head = parse(L.MetadataTableHeader, raw, name, at0)
    if head.signature != L.METADATA_TABLE_SIGNATURE:
        raise CorruptImageError("bad signature", structure=name, offset=at0, field="Signature",
                                expected=L.METADATA_TABLE_SIGNATURE, found=head.signature)
    if head.entry_count > L.METADATA_TABLE_MAX_ENTRIES:
        raise CorruptImageError("too many entries", structure=name, offset=at0, field="EntryCount",
                                expected=f"<= {L.METADATA_TABLE_MAX_ENTRIES}", found=head.entry_count)
    size = L.MetadataTableEntry.sizeof()
    entries: list[MetadataEntry] = []
    seen: set[tuple[Guid, bool]] = set()
    for i in range(head.entry_count):
        at = L.MetadataTableHeader.sizeof() + i * size
        e = entry = parse(MetadataEntry, raw[at : at + size], name, at0 + at)
        where = dict(structure=f"metadata table entry {i}", offset=at0 + at)
        key = (entry.item_id, entry.is_user)  # 2.6.1.2: unique per (ItemId, IsUser)
        if key in seen:
            raise CorruptImageError("duplicate metadata item", field="ItemId", found=str(e.item_id), **where)  # type: ignore[arg-type]
        seen.add(key)
        if e.length > L.METADATA_ITEM_MAX_LENGTH:
            raise CorruptImageError("metadata item longer than 1 MiB", field="Length", found=e.length, **where)  # type: ignore[arg-type]
        if e.length == 0 and e.offset != 0:
            raise CorruptImageError("an empty metadata item must have offset 0", field="Offset", found=e.offset, **where)  # type: ignore[arg-type]
        if e.length and (e.offset < L.METADATA_TABLE_SIZE or e.offset + e.length > region.length):
            raise CorruptImageError("metadata item lies outside the metadata region", field="Offset",
                                    expected=f"{L.METADATA_TABLE_SIZE:#x} .. {region.length:#x}",
                                    found=e.offset, **where)  # type: ignore[arg-type]
        entries.append(entry)
    return entries


def _item(items: dict[Guid, bytes], entries: list[MetadataEntry], guid: Guid, length: int,
          region: Region) -> bytes:
    entry = next((e for e in entries if e.item_id == guid and not e.is_user), None)
    name = L.KNOWN_METADATA_ITEMS[guid]
    if entry is None:
        raise CorruptImageError(f"required metadata item {name} is missing", structure="metadata table",
                                offset=region.file_offset)
    data = items.get(guid, b"")
    if entry.length < length or len(data) < length:
        raise CorruptImageError(f"metadata item {name} is too short", structure=f"metadata item {name}",
                                offset=region.file_offset + entry.offset, field="Length",
                                expected=length, found=min(entry.length, len(data)))
    return data[:length]


def interpret_metadata(region: Region, entries: list[MetadataEntry], items: dict[Guid, bytes]) -> Metadata:
    """Check and decode the known items (2.6.2); refuse unknown required system items."""
    unknown = [e for e in entries if e.item_id not in L.KNOWN_METADATA_ITEMS or e.is_user]
    for e in unknown:
        if e.is_required and not e.is_user:
            raise UnsupportedFeatureError(
                f"the image has a required metadata item vhdkit does not know ({e.item_id}); "
                "refusing to open it ([MS-VHDX] 2.6.1.2)"
            )

    def at(guid: Guid) -> int:
        entry = next(e for e in entries if e.item_id == guid and not e.is_user)
        return region.file_offset + entry.offset

    fp = parse(L.FileParameters, _item(items, entries, L.FILE_PARAMETERS_GUID, 8, region),
               "file parameters", at(L.FILE_PARAMETERS_GUID))
    if not is_power_of_two(fp.block_size) or not L.MIN_BLOCK_SIZE <= fp.block_size <= L.MAX_BLOCK_SIZE:
        raise CorruptImageError("block size must be a power of two from 1 MiB to 256 MiB",
                                structure="metadata item file_parameters", offset=at(L.FILE_PARAMETERS_GUID),
                                field="BlockSize", found=fp.block_size)
    logical = L.LogicalSectorSize.parse(_item(items, entries, L.LOGICAL_SECTOR_SIZE_GUID, 4, region))
    physical = L.PhysicalSectorSize.parse(_item(items, entries, L.PHYSICAL_SECTOR_SIZE_GUID, 4, region))
    for guid, value, fname in ((L.LOGICAL_SECTOR_SIZE_GUID, logical, "LogicalSectorSize"),
                               (L.PHYSICAL_SECTOR_SIZE_GUID, physical, "PhysicalSectorSize")):
        if value not in L.VALID_SECTOR_SIZES:
            raise CorruptImageError("sector size must be 512 or 4096", structure=f"metadata item {L.KNOWN_METADATA_ITEMS[guid]}",
                                    offset=at(guid), field=fname, found=value)
    size = L.VirtualDiskSize.parse(_item(items, entries, L.VIRTUAL_DISK_SIZE_GUID, 8, region))
    if size == 0 or size % logical or size > L.MAX_VIRTUAL_DISK_SIZE:
        raise CorruptImageError("virtual disk size must be a non-zero multiple of the logical sector size, at most 64 TiB",
                                structure="metadata item virtual_disk_size", offset=at(L.VIRTUAL_DISK_SIZE_GUID),
                                field="VirtualDiskSize", found=size)
    disk_id = L.VirtualDiskId.parse(_item(items, entries, L.VIRTUAL_DISK_ID_GUID, 16, region))
    has_parent = bool(fp.flags & L.FileParametersFlags.HAS_PARENT)
    locator = None
    if has_parent:
        entry = next((e for e in entries if e.item_id == L.PARENT_LOCATOR_GUID and not e.is_user), None)
        if entry is None:
            raise CorruptImageError("a differencing disk must have a parent locator",
                                    structure="metadata table", offset=region.file_offset)
        locator = parse_parent_locator(items.get(L.PARENT_LOCATOR_GUID, b""), region.file_offset + entry.offset)
    return Metadata(
        region=region, entries=entries, block_size=fp.block_size,
        leave_block_allocated=bool(fp.flags & L.FileParametersFlags.LEAVE_BLOCK_ALLOCATED),
        has_parent=has_parent, virtual_disk_size=size, virtual_disk_id=disk_id,
        logical_sector_size=logical, physical_sector_size=physical, parent_locator=locator,
        unknown_items=unknown,
    )


def parse_parent_locator(raw: bytes, offset: int) -> ParentLocator:
    """2.6.2.6: a header, then key/value entries whose offsets are relative to the item."""
    name = "parent locator"
    head = parse(L.ParentLocatorHeader, raw, name, offset)
    if head.locator_type != L.VHDX_PARENT_LOCATOR_TYPE:
        raise UnsupportedFeatureError(f"unknown parent locator type {head.locator_type}")
    entry_size = L.ParentLocatorEntry.sizeof()
    if L.ParentLocatorHeader.sizeof() + head.key_value_count * entry_size > len(raw):
        raise CorruptImageError("too many key/value entries for the item's length", structure=name,
                                offset=offset, field="KeyValueCount", found=head.key_value_count)
    pairs: dict[str, str] = {}
    for i in range(head.key_value_count):
        at = L.ParentLocatorHeader.sizeof() + i * entry_size
        e = parse(L.ParentLocatorEntry, raw[at : at + entry_size], name, offset + at)
        key = _utf16(raw, e.key_offset, e.key_length, f"{name} key {i}", offset)
        value = _utf16(raw, e.value_offset, e.value_length, f"{name} value {i}", offset)
        if key in pairs:
            raise CorruptImageError("duplicate parent locator key", structure=name, offset=offset, found=key)
        pairs[key] = value
    if "parent_linkage" not in pairs:
        raise CorruptImageError("parent locator has no parent_linkage", structure=name, offset=offset)
    return ParentLocator(head.locator_type, pairs)


def _utf16(raw: bytes, start: int, length: int, what: str, base: int) -> str:
    if length == 0 or length % 2 or start + length > len(raw):
        raise CorruptImageError("key or value lies outside the locator", structure=what,
                                offset=base + start, found=(start, length))
    try:
        return raw[start : start + length].decode("utf-16-le")
    except UnicodeDecodeError as e:
        raise CorruptImageError("not valid UTF-16", structure=what, offset=base + start) from e


def build_parent_locator(pairs: dict[str, str]) -> bytes:
    """2.6.2.6: header, 12-byte entries, then the UTF-16LE keys and values."""
    header = L.ParentLocatorHeader.build(dict(locator_type=L.VHDX_PARENT_LOCATOR_TYPE, reserved=0,
                                              key_value_count=len(pairs)))
    entries, strings = b"", b""
    base = L.ParentLocatorHeader.sizeof() + L.ParentLocatorEntry.sizeof() * len(pairs)
    for key, value in pairs.items():
        k, v = key.encode("utf-16-le"), value.encode("utf-16-le")
        if not 0 < len(v) <= 0xFFFF:
            raise ValueError(f"parent locator value for {key} is empty or too long")
        entries += L.ParentLocatorEntry.build(dict(key_offset=base + len(strings),
                                                   value_offset=base + len(strings) + len(k),
                                                   key_length=len(k), value_length=len(v)))
        strings += k + v
    return header + entries + strings
