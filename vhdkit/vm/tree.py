"""A Hyper-V configuration as a tree, whichever file held it: XML up to 2012 R2, VMCX from 2016.
Both hold the same keys (specs/vm.md): ``properties``, ``settings``, ``manifest`` and one
``_<instance>_`` node per device; this module turns that tree into a VmConfig."""

from __future__ import annotations

from typing import Any

from ..errors import VmConfigError
from .model import VmConfig, VmDisk, VmNic

IDE_CLASS = "83f8638b-8dca-4152-9eda-2ca8b33039b4"  # Microsoft Emulated IDE Controller
SCSI_CLASS = "d422512d-2bf2-4752-809d-7b82b5fcb1b4"  # Synthetic SCSI Controller
NIC_CLASS = "2fc216b0-d2e2-4967-9b6d-b8a5c9ca2778"  # Synthetic Ethernet Port
VLAN_FEATURE = "Feature_952C5004-4465-451C-8CB8-FA9AB382B773"  # the switch port's VLAN settings (specs/vm.md)
VERSIONS = {256: "1.0", 512: "2.0", 768: "3.0", 1024: "4.0", 1280: "5.0", 1536: "6.0", 1792: "7.0", 1793: "7.1",
            2048: "8.0", 2304: "9.0", 2560: "10.0", 2816: "11.0", 3072: "12.0"}


class _Tree:
    def __init__(self, root: dict[str, Any], name: str) -> None:
        self.root, self.name = root, name

    def get(self, path: str, kind: type, node: dict[str, Any] | None = None) -> Any:
        value: Any = self.root if node is None else node
        for part in path.split("/"):
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        if value is None:
            return None
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            raise VmConfigError(f"{self.name}: {path} is {type(value).__name__} {str(value)[:40]!r}, expected "
                                f"{kind.__name__}")
        return value


def config_from_tree(root: Any, name: str, config_format: str) -> VmConfig:
    """The VM in a configuration tree (``root``: the ``configuration`` node)."""
    if not isinstance(root, dict):
        raise VmConfigError(f"{name}: no <configuration> node: not a Hyper-V VM configuration")
    t = _Tree(root, name)
    if t.get("properties/type_id", str) not in (None, "Virtual Machines"):
        raise VmConfigError(f"{name}: properties/type_id is not 'Virtual Machines': not a VM configuration")
    vm_name = (t.get("properties/name", str) or "").strip()
    if not vm_name:
        raise VmConfigError(f"{name}: properties/name is missing or empty")
    version = t.get("properties/version", int)
    config = VmConfig(
        name=vm_name, id=(t.get("properties/global_id", str) or "").strip("{}").lower(),
        generation=2 if t.get("properties/subtype", int) == 1 else 1,
        memory_mb=t.get("settings/memory/bank/size", int), processors=t.get("settings/processors/count", int),
        processor_compatibility=bool(t.get("settings/processors/features/limit", bool)),
        config_path=name, config_format=config_format,
        version=VERSIONS.get(version or 0, str(version or "")))
    manifest = t.get("manifest", dict)
    if manifest is None:
        raise VmConfigError(f"{name}: no manifest: the devices cannot be told apart")
    devices = {key.strip("_").lower(): value for key, value in root.items() if key.startswith("_")}
    for key, vdev in manifest.items():
        if not key.startswith("vdev") or not isinstance(vdev, dict):
            continue
        device = (t.get("device", str, vdev) or "").strip("{}").lower()
        instance = (t.get("instance", str, vdev) or "").strip("{}").lower()
        node = devices.get(instance)
        if not isinstance(node, dict):
            continue
        if device in (IDE_CLASS, SCSI_CLASS):
            config.disks.extend(_drives(t, node, "IDE" if device == IDE_CLASS else "SCSI"))
        elif device == NIC_CLASS:
            connection = node.get("Connection")
            vlan_set = isinstance(connection, dict) and any(k.upper() == VLAN_FEATURE.upper() for k in connection)
            config.nics.append(VmNic(switch=(t.get("Connection/AltSwitchName", str, node) or "").strip() or None,
                                     mac=t.get("MacAddress", str, node) or "",
                                     name=t.get("FriendlyName", str, node) or "", vlan_set=vlan_set))
    return config


def _drives(t: _Tree, node: dict[str, Any], kind: str) -> list[VmDisk]:
    out = []
    for controller, drives in sorted(node.items()):
        if not (controller.startswith("controller") and controller[10:].isdigit() and isinstance(drives, dict)):
            continue
        for drive, settings in sorted(drives.items(), key=lambda kv: (len(kv[0]), kv[0])):
            if not (drive.startswith("drive") and drive[5:].isdigit() and isinstance(settings, dict)):
                continue
            if (t.get("type", str, settings) or "").upper() != "VHD":  # ISO, VFD, NONE: no hard disk
                continue
            path = (t.get("pathname", str, settings) or "").strip()
            if path:
                out.append(VmDisk(controller=f"{kind} {controller[10:]}", location=int(drive[5:]), path=path))
    return out
