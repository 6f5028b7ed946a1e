"""New VHDX files, laid out as Hyper-V lays them out (specs/architecture.md; [MS-VHDX] 2.1).

    0       file type identifier (creator names vhdkit)
    64 KiB  header 1, 128 KiB header 2
    192 KiB region table 1, 256 KiB region table 2 (BAT and metadata, both Required)
    1 MiB   log (1 MiB)
    2 MiB   metadata region (1 MiB): table, then the items packed from 64 KiB
    3 MiB   BAT (whole MiBs), then payload blocks

Dynamic and differencing files start with every block NOT_PRESENT: only the structures are
written and the rest stays a hole. A fixed file has every block FULLY_PRESENT, laid end to end
after the BAT, and its space reserved with fallocate (not written: it reads as zeros).
"""

from __future__ import annotations


from .._version import CREATOR
from ..disk import VirtualDisk, child_size
from ..guid import Guid
from ..runtime_types import NamedTuple
from ..storage import Store
from ..units import MiB, align_up, is_power_of_two
from . import layout as L
from .bat import BatGeometry, BlockAllocationTable, new_entries
from .checksum import with_checksum
from .metadata import build_parent_locator

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

LOG_OFFSET = 1 * MiB
LOG_LENGTH = 1 * MiB
METADATA_OFFSET = 2 * MiB
METADATA_LENGTH = 1 * MiB
BAT_OFFSET = 3 * MiB
DEFAULT_BLOCK_SIZE = 32 * MiB  # Hyper-V's default for fixed and dynamic disks
DEFAULT_DIFFERENCING_BLOCK_SIZE = 2 * MiB  # Hyper-V's default for differencing disks
DISK_TYPES = ("dynamic", "fixed", "differencing")


class ParentLink(NamedTuple):
    """What a differencing disk records of its parent (2.6.2.6.3)."""

    data_write_guid: Guid
    relative_path: str  # Windows style, relative to the child's folder: ".\\base.vhdx"
    absolute_path: str | None = None

    def locator_pairs(self) -> dict[str, str]:
        # Braced lower-case GUID: what Windows writes, and the only form libvhdi accepts.
        pairs = {"parent_linkage": "{" + str(self.data_write_guid) + "}", "relative_path": self.relative_path}
        if self.absolute_path:
            pairs["absolute_win32_path"] = self.absolute_path
        return pairs


def check_parameters(size: int, disk_type: str, block_size: int, logical_sector_size: int,
                     physical_sector_size: int) -> None:
    """Refuse what Hyper-V refuses, with a sentence saying why (ValueError)."""
    if disk_type not in DISK_TYPES:
        raise ValueError(f"type must be one of {', '.join(DISK_TYPES)}, not {disk_type!r}")
    if logical_sector_size not in L.VALID_SECTOR_SIZES:
        raise ValueError(f"logical sector size must be 512 or 4096, not {logical_sector_size}")
    if physical_sector_size not in L.VALID_SECTOR_SIZES:
        raise ValueError(f"physical sector size must be 512 or 4096, not {physical_sector_size}")
    if logical_sector_size == 4096 and physical_sector_size == 512:
        raise ValueError("a 4096-byte logical sector cannot sit on a 512-byte physical sector "
                         "(Hyper-V refuses this combination)")
    if not is_power_of_two(block_size) or not L.MIN_BLOCK_SIZE <= block_size <= L.MAX_BLOCK_SIZE:
        raise ValueError(f"block size must be a power of two from 1 MiB to 256 MiB, not {block_size}")
    if size <= 0 or size % logical_sector_size:
        raise ValueError(f"size {size} is not a positive multiple of the {logical_sector_size}-byte logical sector")
    if size > L.MAX_VIRTUAL_DISK_SIZE:
        raise ValueError(f"size {size} is larger than the VHDX maximum of 64 TiB")


def _creator(text: str) -> bytes:
    raw = text.encode("utf-16-le")[:510]
    return raw + bytes(512 - len(raw))


def _metadata_region(size: int, disk_type: str, block_size: int, logical: int, physical: int,
                     disk_id: Guid, parent: ParentLink | None) -> bytes:
    """The metadata table and its items, Hyper-V's order, packed from 64 KiB (2.6)."""
    flags = (L.FileParametersFlags.LEAVE_BLOCK_ALLOCATED if disk_type == "fixed" else 0) | (
        L.FileParametersFlags.HAS_PARENT if parent else 0)
    required, virtual_disk = L.MetadataFlags.IS_REQUIRED, L.MetadataFlags.IS_VIRTUAL_DISK
    items = [
        (L.FILE_PARAMETERS_GUID, L.FileParameters.build(dict(block_size=block_size, flags=flags)), required),
        (L.VIRTUAL_DISK_SIZE_GUID, L.VirtualDiskSize.build(size), required | virtual_disk),
        (L.LOGICAL_SECTOR_SIZE_GUID, L.LogicalSectorSize.build(logical), required | virtual_disk),
        (L.PHYSICAL_SECTOR_SIZE_GUID, L.PhysicalSectorSize.build(physical), required | virtual_disk),
        (L.VIRTUAL_DISK_ID_GUID, L.VirtualDiskId.build(disk_id), required | virtual_disk),
    ]
    if parent is not None:
        items.append((L.PARENT_LOCATOR_GUID, build_parent_locator(parent.locator_pairs()), required))
    region = bytearray(METADATA_LENGTH)
    region[:32] = L.MetadataTableHeader.build(dict(signature=L.METADATA_TABLE_SIGNATURE, reserved=0,
                                                   entry_count=len(items), reserved2=bytes(20)))
    at = L.METADATA_TABLE_SIZE
    for i, (guid, data, item_flags) in enumerate(items):
        entry = L.MetadataTableEntry.build(dict(item_id=guid, offset=at, length=len(data), flags=item_flags,
                                                reserved2=0))
        region[32 + 32 * i : 64 + 32 * i] = entry
        region[at : at + len(data)] = data
        at += len(data)
    return bytes(region[: align_up(at, 4096)])


def _region_table(bat_length: int) -> bytes:
    table = bytearray(L.REGION_TABLE_SIZE)
    table[:16] = L.RegionTableHeader.build(dict(signature=L.REGION_TABLE_SIGNATURE, checksum=0, entry_count=2,
                                                reserved=0))
    for i, (guid, offset, length) in enumerate(((L.BAT_REGION_GUID, BAT_OFFSET, bat_length),
                                                (L.METADATA_REGION_GUID, METADATA_OFFSET, METADATA_LENGTH))):
        table[16 + 32 * i : 48 + 32 * i] = L.RegionTableEntry.build(dict(guid=guid, file_offset=offset,
                                                                         length=length, required=1))
    return with_checksum(table)


def new_file_size(size: int, disk_type: str = "dynamic", block_size: int = DEFAULT_BLOCK_SIZE,
                  logical_sector_size: int = 512) -> int:
    """Bytes of the file ``write_new_vhdx`` makes: the 1 MiB-aligned BAT after the fixed
    structures, then (fixed disks) every payload block, whole blocks even past the virtual size."""
    geometry = BatGeometry(size, block_size, logical_sector_size, disk_type == "differencing")
    payload_start = BAT_OFFSET + align_up(geometry.entry_count * L.BAT_ENTRY_SIZE, MiB)
    return payload_start + (geometry.data_blocks * block_size if disk_type == "fixed" else 0)


def write_new_vhdx(store: Store, *, size: int, disk_type: str = "dynamic", block_size: int = DEFAULT_BLOCK_SIZE,
                   logical_sector_size: int = 512, physical_sector_size: int = 4096,
                   disk_id: Guid | None = None, parent: ParentLink | None = None,
                   creator: str = "vhdkit") -> None:
    """Write a complete new VHDX into an empty ``store`` (the caller flushes)."""
    check_parameters(size, disk_type, block_size, logical_sector_size, physical_sector_size)
    if (disk_type == "differencing") != (parent is not None):
        raise ValueError("a differencing disk needs a parent, and only a differencing disk has one")
    geometry = BatGeometry(size, block_size, logical_sector_size, parent is not None)
    bat_length = align_up(geometry.entry_count * L.BAT_ENTRY_SIZE, MiB)
    payload_start = BAT_OFFSET + bat_length
    file_size = payload_start

    store.pwrite(0, L.FileIdentifier.build(dict(signature=L.FILE_IDENTIFIER_SIGNATURE, creator=_creator(creator))))
    store.pwrite(METADATA_OFFSET, _metadata_region(size, disk_type, block_size, logical_sector_size,
                                                   physical_sector_size, disk_id or Guid.random(), parent))
    if disk_type == "fixed":
        bat = BlockAllocationTable(geometry, new_entries(geometry.entry_count), BAT_OFFSET)
        for block in range(geometry.data_blocks):
            bat.set_payload(block, L.PayloadBlockState.FULLY_PRESENT, payload_start + block * block_size)
        store.pwrite(BAT_OFFSET, bat.to_bytes())
        file_size = payload_start + geometry.data_blocks * block_size
        assert file_size == new_file_size(size, disk_type, block_size, logical_sector_size)
        preallocate = getattr(store, "preallocate", None)
        if preallocate is not None:
            preallocate(payload_start, file_size - payload_start)
    for offset in L.REGION_TABLE_OFFSETS:
        store.pwrite(offset, _region_table(bat_length))
    if store.size() < file_size:
        store.truncate(file_size)
    # Headers last: until they are written, the file is not a VHDX to any reader.
    data_write_guid = Guid.random()
    file_write_guid = Guid.random()
    for slot, sequence in ((1, 1), (2, 2)):
        header = L.Header.build(dict(
            signature=L.HEADER_SIGNATURE, checksum=0, sequence_number=sequence, file_write_guid=file_write_guid,
            data_write_guid=data_write_guid, log_guid=L.NULL_GUID, log_version=0, version=1,
            log_length=LOG_LENGTH, log_offset=LOG_OFFSET, reserved=bytes(4016),
        ))
        store.pwrite(L.HEADER_OFFSETS[slot - 1], with_checksum(header))


def plan_new(target: object, size: int | None, *, disk_type: str, block_size: int | None = None,
             logical_sector_size: int | None = None, physical_sector_size: int | None = None,
             parent: VirtualDisk | None = None, parent_paths: tuple[str, str | None] | None = None,
             disk_id: Guid | None = None) -> tuple[Callable[..., None], dict[str, Any]]:
    """How ``write_new_vhdx`` will make the image the caller asks for (ValueError if it cannot).

    ``parent`` is the open parent of a differencing disk (its size and logical sector size are
    the child's) and ``parent_paths`` the (relative, absolute) paths by which the child finds it."""
    from .image import VhdxDisk

    link = None
    logical, physical = logical_sector_size, physical_sector_size
    if parent is not None:
        child_size(parent, VhdxDisk, size)
        assert isinstance(parent, VhdxDisk)
        if logical is not None and logical != parent.logical_sector_size:
            raise ValueError(f"a differencing disk has its parent's logical sector size ({parent.logical_sector_size})")
        size, logical = parent.size, parent.logical_sector_size
        physical = physical or parent.physical_sector_size
        relative, absolute = parent_paths or ("", None)
        link = ParentLink(parent.header.data_write_guid, relative, absolute)
    if size is None:
        raise ValueError("size is required (or a parent for a differencing disk)")
    return write_new_vhdx, dict(
        size=size, disk_type=disk_type,
        block_size=block_size or (DEFAULT_DIFFERENCING_BLOCK_SIZE if link else DEFAULT_BLOCK_SIZE),
        logical_sector_size=logical or 512, physical_sector_size=physical or 4096,
        disk_id=disk_id, parent=link, creator=CREATOR,
    )
