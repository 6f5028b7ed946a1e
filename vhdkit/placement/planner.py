"""Where a VM's files should go, and putting them there (placement on SMB 3 shares).

A VM is described by what it will store: its configuration, its virtual disks (fixed disks take
their virtual size; dynamic ones their current size, or their virtual size with
``reserve_full``), checkpoints (differencing disks beside their parent) and saved state. The
planner measures every candidate location and keeps those that fit with headroom, that every host
which must run the VM reaches with write access (both hosts of a live-migratable VM), that speak
SMB 3.0 or later, and that encrypt when the VM asks for it; it ranks them by the room they keep,
and says for every location it rejects why. ``place`` lays out Hyper-V's folders on the chosen
location (``<vm>/Virtual Machines``, ``<vm>/Virtual Hard Disks``, ``<vm>/Snapshots``), creates the
disks and files, checks them, and removes everything it made if any of it fails.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

from .. import formats
from ..errors import PlacementError, VhdkitError
from ..formats import VHDX, Format
from ..ops.check import check
from ..ops.create import create
from ..units import MiB, format_size, parse_size
from .folders import Folders
from .locations import Capacity, Host, Location, Reach

CONFIG_BYTES = 1 * MiB  # a .vmcx/.vmrs pair is well under this


class DiskSpec(NamedTuple):
    name: str  # file name, e.g. "os.vhdx"
    virtual_size: int
    type: str = "dynamic"
    current_size: int | None = None  # bytes the file holds now; None: a new disk

    @property
    def format(self) -> Format:
        """What the file name says (a name without a disk extension is a VHDX, Hyper-V's default)."""
        return formats.by_extension(self.name) or VHDX

    def file_bytes(self, full: bool = False) -> int:
        """Space the file takes: a fixed disk its whole file as created (VHDX: whole 32 MiB
        blocks, so a 20 MiB fixed disk takes 36 MiB), a dynamic one what it holds now, or with
        ``full`` what it may grow to."""
        if self.type == "fixed" or self.current_size is None:
            new = self.format.new_file_bytes(self.virtual_size, self.type)
            if self.type == "fixed":
                return new
        else:
            new = self.current_size
        return max(self.virtual_size, new) if full else new


def checkpoint_file(disk_name: str, number: int) -> str:
    """The differencing disk ``place`` makes for the ``number``-th checkpoint (from 1), beside its disk."""
    return f"{disk_name.rsplit('.', 1)[0]}_checkpoint{number}.avhdx"


class VmSpec(NamedTuple):
    name: str
    hosts: tuple[str, ...]  # the hosts that must run it (two for a live-migratable VM)
    disks: tuple[DiskSpec, ...] = ()
    checkpoints: tuple[tuple[str, int], ...] = ()  # (disk name, bytes the differencing disk holds)
    saved_state: int = 0
    require_encryption: bool = False
    reserve_full: bool = False  # count dynamic disks at their virtual size
    headroom: float = 0.10  # of the location's total, left free after placing

    def needed(self) -> int:
        disks = sum(d.file_bytes(self.reserve_full) for d in self.disks)
        return CONFIG_BYTES + disks + sum(size for _, size in self.checkpoints) + self.saved_state

    def to_dict(self) -> dict[str, Any]:
        """What ``from_dict`` reads back (the VM's configuration file holds this)."""
        return dict(self._asdict(), hosts=list(self.hosts), disks=[d._asdict() for d in self.disks],
                    checkpoints=[{"disk": disk, "size": size} for disk, size in self.checkpoints])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VmSpec":
        """From JSON/TOML: sizes as bytes or "60G"; unknown keys refused (a typo is not ignored)."""
        known = {"name", "hosts", "disks", "checkpoints", "saved_state", "require_encryption", "reserve_full",
                 "headroom"}
        extra = set(data) - known
        if extra:
            raise PlacementError(f"unknown VM spec keys: {', '.join(sorted(extra))}")
        try:
            disks = tuple(DiskSpec(d["name"], _size(d["virtual_size"]), d.get("type", "dynamic"),
                                   _size(d["current_size"]) if d.get("current_size") is not None else None)
                          for d in data.get("disks", ()))
            return cls(str(data["name"]), tuple(data["hosts"]), disks,
                       tuple((c["disk"], _size(c["size"])) for c in data.get("checkpoints", ())),
                       _size(data.get("saved_state", 0)), bool(data.get("require_encryption", False)),
                       bool(data.get("reserve_full", False)), float(data.get("headroom", 0.10)))
        except (KeyError, TypeError, ValueError) as e:
            raise PlacementError(f"bad VM spec: {e!r}") from None


class Rating(NamedTuple):
    location: Location
    capacity: Capacity | None
    reaches: tuple[Reach, ...]
    rejected: tuple[str, ...]  # every reason, in sentences; empty when the location is suitable
    room_after: int  # free bytes left after placing (negative: does not fit)

    @property
    def suitable(self) -> bool:
        return not self.rejected


def rate(vm: VmSpec, locations: Sequence[Location], hosts: Sequence[Host]) -> list[Rating]:
    """Every location rated for ``vm``: suitable ones first, most room left first."""
    by_name = {h.name: h for h in hosts}
    missing = [name for name in vm.hosts if name not in by_name]
    if missing:
        raise PlacementError(f"the VM must run on hosts nobody described: {', '.join(missing)}")
    needed = vm.needed()
    ratings = []
    for location in locations:
        if vm.require_encryption:  # a share that can encrypt will be asked to
            location = location.sealed()
        reasons: list[str] = []
        try:
            capacity: Capacity | None = location.measure()
        except VhdkitError as e:
            capacity = None
            reasons.append(f"cannot be measured: {e}")
        room = -1
        if capacity is not None:
            headroom = int(capacity.total * vm.headroom)
            room = capacity.free - needed
            if room < headroom:
                reasons.append(f"too small: the VM needs {format_size(needed)} and {format_size(headroom)} must stay "
                               f"free, {format_size(capacity.free)} of {format_size(capacity.total)} is free")
            if location.is_smb and capacity.dialect is not None and capacity.dialect < "3.0":
                reasons.append(f"speaks SMB {capacity.dialect}; Hyper-V needs SMB 3.0 or later")
            if vm.require_encryption and location.is_smb and not capacity.encrypted:
                reasons.append("does not encrypt, and the VM requires encryption")
        elif vm.require_encryption and location.is_smb and "encryption" in reasons[-1]:
            reasons[-1] = "does not offer SMB 3 encryption, and the VM requires it"
        reaches = tuple(location.reach(by_name[name]) for name in vm.hosts)
        for r in reaches:
            if not r.reachable or not r.writable:
                reasons.append(r.why or f"{r.host} cannot write there")
        ratings.append(Rating(location, capacity, reaches, tuple(reasons), room))
    ratings.sort(key=lambda r: (not r.suitable, -r.room_after))
    return ratings


def choose(vm: VmSpec, locations: Sequence[Location], hosts: Sequence[Host]) -> Rating:
    """The best suitable location; PlacementError listing every location and why when none is."""
    ratings = rate(vm, locations, hosts)
    if ratings and ratings[0].suitable:
        return ratings[0]
    lines = [f"no location suits VM {vm.name} ({format_size(vm.needed())}, hosts {', '.join(vm.hosts)}):"]
    lines += [f"  {r.location.where}: {'; '.join(r.rejected)}" for r in ratings]
    raise PlacementError("\n".join(lines))


def _size(value: Any) -> int:
    return value if isinstance(value, int) else parse_size(str(value))




class Placement(NamedTuple):
    vm: str
    where: str  # the VM's folder
    files: tuple[str, ...]  # every file made, as paths or URLs


FOLDERS = ("Virtual Machines", "Virtual Hard Disks", "Snapshots")  # Hyper-V's layout under <vm>


def place(vm: VmSpec, location: Location) -> Placement:
    """Lay out the VM's folders on ``location``, create its disks (and checkpoint differencing
    disks beside them), write its description, check every disk; on any failure remove what this
    call made and raise PlacementError naming the file that failed."""
    if vm.require_encryption:
        location = location.sealed()
    with location.policy():  # the disks made by URL below go encrypted when the location is
        return _place(vm, location)


def _place(vm: VmSpec, location: Location) -> Placement:
    import json

    fs = Folders(location)
    root = fs.join(location.where, vm.name)
    made_files: list[str] = []
    current = root
    try:
        for folder in (root, *(fs.join(root, f) for f in FOLDERS)):
            current = folder
            fs.mkdir(folder)
        disks = fs.join(root, "Virtual Hard Disks")
        for disk in vm.disks:
            current = fs.join(disks, disk.name)
            create(current, disk.virtual_size, format=disk.format, type=disk.type).close()
            made_files.append(current)
        for i, (disk_name, _) in enumerate(vm.checkpoints):
            parent = fs.join(disks, disk_name)
            current = fs.join(disks, checkpoint_file(disk_name, i + 1))
            create(current, format=VHDX, parent=parent).close()
            made_files.append(current)
        current = fs.join(fs.join(root, "Virtual Machines"), f"{vm.name}.vhdkit.json")
        fs.write(current, json.dumps(vm.to_dict(), indent=2).encode())
        made_files.append(current)
        for path in made_files[:-1]:
            current = path
            report = check(path)
            if report.verdict != "clean":
                raise PlacementError(f"{path} does not check clean: {report.findings}")
    except (VhdkitError, OSError, ValueError) as e:
        fs.undo()
        raise PlacementError(f"placing {vm.name} on {location.where} failed at {current}: {e} "
                             "(everything this placement made was removed)") from None
    return Placement(vm.name, root, tuple(made_files))


__all__ = ["CONFIG_BYTES", "FOLDERS", "DiskSpec", "Placement", "Rating", "VmSpec", "choose", "place", "rate"]
