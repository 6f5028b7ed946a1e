"""File type identifier and the two headers: parsing, choosing the current one, updating.

[MS-VHDX] 2.2.1 (identifier), 2.2.2 (headers), 2.2.2.1 (updating the headers).
"""

from __future__ import annotations

from ..errors import CorruptImageError, UnsupportedFeatureError
from ..runtime_types import NamedTuple
from ..storage import Store
from . import layout as L
from .checksum import crc32c_with_zeroed_field, parse, stored_checksum, with_checksum


def read_creator(store: Store) -> str:
    """Check the file type identifier and return its creator string ("" if none)."""
    raw = store.pread(L.FILE_IDENTIFIER_OFFSET, L.FileIdentifier.sizeof())
    ident = parse(L.FileIdentifier, raw, "file type identifier", 0)
    if ident.signature != L.FILE_IDENTIFIER_SIGNATURE:
        raise CorruptImageError(
            "not a VHDX file", structure="file type identifier", offset=0,
            field="Signature", expected=L.FILE_IDENTIFIER_SIGNATURE, found=ident.signature,
        )
    text = ident.creator.decode("utf-16-le", errors="replace")
    return text.split("\0", 1)[0]


class VhdxHeader(L.Header):
    """A header (layout.Header's fields) and the slot it was read from or goes to: 1 or 2."""

    slot: int
    _extras = ("slot",)

    @property
    def offset(self) -> int:
        return L.HEADER_OFFSETS[self.slot - 1]

    @property
    def log_is_empty(self) -> bool:
        return self.log_guid == L.NULL_GUID

    def sealed(self) -> bytes:
        """The 4 KiB on-disk form with its signature and checksum filled in (reserved bytes kept
        as read)."""
        return with_checksum(self.replace(signature=L.HEADER_SIGNATURE, checksum=0).to_bytes())


def parse_header(raw: bytes, slot: int) -> VhdxHeader:
    """Parse one header; raise CorruptImageError if its signature or CRC-32C is wrong."""
    name = f"VHDX header {slot}"
    offset = L.HEADER_OFFSETS[slot - 1]
    h = parse(VhdxHeader, raw, name, offset)
    if h.signature != L.HEADER_SIGNATURE:
        raise CorruptImageError("bad signature", structure=name, offset=offset,
                                field="Signature", expected=L.HEADER_SIGNATURE, found=h.signature)
    crc = crc32c_with_zeroed_field(raw[: L.HEADER_SIZE])
    if crc != stored_checksum(raw):
        raise CorruptImageError("checksum mismatch", structure=name, offset=offset,
                                field="Checksum", expected=crc, found=stored_checksum(raw))
    return h.replace(slot=slot)


class HeaderSelection(NamedTuple):
    current: VhdxHeader
    headers: tuple[VhdxHeader | None, VhdxHeader | None]
    errors: tuple[CorruptImageError | None, CorruptImageError | None]


def select_current_header(store: Store) -> HeaderSelection:
    """Read both headers and pick the current one (2.2.2).

    The current header is the only valid one, or the valid one with the larger SequenceNumber.
    Two valid headers with equal numbers have no current header by the letter of the spec, but
    Disk2VHD writes two byte-identical headers with sequence 1: identical copies are accepted (as
    qemu does), differing ones are corrupt.
    """
    found: list[VhdxHeader | None] = []
    errors: list[CorruptImageError | None] = []
    for slot in (1, 2):
        raw = store.pread(L.HEADER_OFFSETS[slot - 1], L.HEADER_SIZE)
        try:
            found.append(parse_header(raw, slot))
            errors.append(None)
        except CorruptImageError as e:
            found.append(None)
            errors.append(e)
    h1, h2 = found
    if h1 is None and h2 is None:
        raise CorruptImageError(
            f"no valid header: header 1: {errors[0]}; header 2: {errors[1]}",
            structure="VHDX headers", offset=L.HEADER_OFFSETS[0],
        )
    if h1 is None or h2 is None:
        current = h1 or h2
    elif h1.sequence_number > h2.sequence_number:
        current = h1
    elif h2.sequence_number > h1.sequence_number:
        current = h2
    elif h1 == h2:  # every field, reserved bytes too: byte-identical copies
        current = h1
    else:
        raise CorruptImageError(
            "both headers are valid with the same sequence number but differ, so neither is current",
            structure="VHDX headers", offset=L.HEADER_OFFSETS[0], field="SequenceNumber",
            found=h1.sequence_number,
        )
    assert current is not None
    validate_header(current)
    return HeaderSelection(current, (h1, h2), (errors[0], errors[1]))


def validate_header(h: VhdxHeader) -> None:
    """Field rules of 2.2.2 beyond signature and checksum."""
    name = f"VHDX header {h.slot}"
    if h.version != 1:
        raise UnsupportedFeatureError(f"VHDX version {h.version} is not supported (only version 1)")
    if h.log_version != 0 and not h.log_is_empty:
        raise UnsupportedFeatureError(f"VHDX log version {h.log_version} cannot be replayed (only version 0)")
    if h.log_offset % L.ALIGNMENT or h.log_length % L.ALIGNMENT:
        raise CorruptImageError("log offset and length must be multiples of 1 MiB", structure=name,
                                offset=h.offset, field="LogOffset/LogLength",
                                found=(h.log_offset, h.log_length))
    if h.log_length and h.log_offset < L.HEADER_SECTION_SIZE:
        raise CorruptImageError("log overlaps the header section", structure=name, offset=h.offset,
                                field="LogOffset", found=h.log_offset)


def write_updated_header(store: Store, current: VhdxHeader, **changes: object) -> VhdxHeader:
    """The update procedure of 2.2.2.1, done twice so both slots hold the new state.

    Each round writes the non-current slot with SequenceNumber + 1 and flushes; a crash between
    rounds leaves one current header with the new fields and one older valid header.
    """
    header = current
    for _ in range(2):
        slot = 2 if header.slot == 1 else 1
        new = header.replace(slot=slot, sequence_number=header.sequence_number + 1, **changes)
        raw = new.sealed()
        new = new.replace(checksum=VhdxHeader.parse(raw).checksum)
        store.pwrite(new.offset, raw)
        store.flush()
        header = new
    return header
