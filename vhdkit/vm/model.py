"""A virtual machine as vhdkit sees it: what its configuration says, whatever the format (Hyper-V
2012/2012 R2 XML, Hyper-V 2016+ .vmcx, vhdkit's own description), and where its files are here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class VmDisk:
    """A virtual hard disk attached to the VM."""

    controller: str  # "IDE 0", "SCSI 0"
    location: int  # the drive's place on its controller
    path: str  # as the configuration records it (a path on the Hyper-V host)
    local: str | None = None  # the file here, found inside the VM's folder
    chain: list[str] = field(default_factory=list)  # local files, the attached disk first, then its parents
    problem: str | None = None  # why it could not be found or followed


@dataclass
class VmNic:
    switch: str | None  # the virtual switch's name (None: not connected)
    mac: str = ""
    name: str = ""
    vlan_set: bool = False  # the port carries VLAN settings (Hyper-V keeps them as a binary blob: not decoded)


@dataclass
class VmConfig:
    name: str
    id: str
    generation: int  # 1 (BIOS, IDE boot) or 2 (UEFI)
    memory_mb: int | None
    processors: int | None
    processor_compatibility: bool
    disks: list[VmDisk] = field(default_factory=list)
    nics: list[VmNic] = field(default_factory=list)
    config_path: str = ""  # the configuration file read
    config_format: str = ""  # "hyperv-xml", "vmcx", "vhdkit"
    version: str = ""  # the configuration version (5.0 is Hyper-V 2012 R2)
    folder: str = ""  # the VM's folder here (a path, or an smb:// URL): files are looked for below it, never outside
    host: str = ""  # the host it runs on, where the configuration says (vhdkit's description does)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
