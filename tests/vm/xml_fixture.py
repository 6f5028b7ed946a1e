"""Hyper-V 2012 R2 VM configurations (``Virtual Machines/<GUID>.xml``, version 1280 = 5.0), written
in the schema Hyper-V uses (specs/vm.md, "Hyper-V XML"): UTF-16LE with a byte order mark, CRLF,
``standalone="yes"``; every value an element with a ``type`` attribute; devices under
``_<instance>_`` elements that ``manifest/vdevNNN`` names with their device class."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

IDE = "83f8638b-8dca-4152-9eda-2ca8b33039b4"
SCSI = "d422512d-2bf2-4752-809d-7b82b5fcb1b4"
NIC = "2fc216b0-d2e2-4967-9b6d-b8a5c9ca2778"
VLAN_FEATURE = "952C5004-4465-451C-8CB8-FA9AB382B773"  # Msvm_EthernetSwitchPortVlanSettingData's feature id


def _value(parent: ET.Element, tag: str, kind: str, text: Any) -> ET.Element:
    element = ET.SubElement(parent, tag, type=kind)
    element.text = "" if text is None else ("True" if text is True else "False" if text is False else str(text))
    return element


def configuration(name: str, *, vm_id: str | None = None, generation: int = 1, memory_mb: int = 2048,
                  processors: int = 2, compatibility: bool = False, ide: list[str] = (),
                  scsi: list[str] = (), nics: list[tuple] = ()) -> ET.Element:
    """``ide``/``scsi``: disk paths as the host records them; ``nics``: (switch name, MAC), or
    (switch name, MAC, True) for a port with VLAN settings (a feature node as the .vmcx sample
    keeps its offload feature: ``Feature_<id>/Setting_<id>/Data``, an opaque blob)."""
    vm_id = vm_id or str(uuid.uuid4()).upper()
    root = ET.Element("configuration")
    manifest_entries: list[tuple[str, str, str]] = []
    ide_element = ET.SubElement(root, f"_{IDE}_")
    _value(ide_element, "VDEVVersion", "integer", 1280)
    for c in range(2):
        controller = ET.SubElement(ide_element, f"controller{c}")
        for d in range(2):
            drive = ET.SubElement(controller, f"drive{d}")
            path = ide[c * 2 + d] if c * 2 + d < len(ide) else None
            _value(drive, "pathname", "string", path or "")
            _value(drive, "type", "string", "VHD" if path else ("ISO" if (c, d) == (1, 0) else "NONE"))
    manifest_entries.append((IDE, IDE.upper(), "Microsoft Emulated IDE Controller"))
    if scsi:
        instance = str(uuid.uuid4())
        scsi_element = ET.SubElement(root, f"_{instance}_")
        _value(scsi_element, "ChannelInstanceGuid", "string", "{" + str(uuid.uuid4()) + "}")
        controller = ET.SubElement(scsi_element, "controller0")
        for d, path in enumerate(scsi):
            drive = ET.SubElement(controller, f"drive{d}")
            _value(drive, "pathname", "string", path)
            _value(drive, "type", "string", "VHD")
        _value(scsi_element, "VDEVVersion", "integer", 256)
        manifest_entries.append((SCSI, instance.upper(), "Synthetic SCSI Controller"))
    for switch, mac, *vlan in nics:
        instance = str(uuid.uuid4())
        port = ET.SubElement(root, f"_{instance}_")
        _value(port, "ChannelInstanceGuid", "string", "{" + str(uuid.uuid4()) + "}")
        connection = ET.SubElement(port, "Connection")
        _value(connection, "AltPortName", "string", "Dynamic Ethernet Switch Port")
        _value(connection, "AltSwitchName", "string", switch)
        _value(connection, "PreventIPSpoofing", "bool", False)
        if vlan and vlan[0]:
            _value(ET.SubElement(connection, "Features"), "Id", "string", VLAN_FEATURE)
            feature = ET.SubElement(connection, f"Feature_{VLAN_FEATURE}")
            _value(feature, "Flags", "integer", 0)
            setting = str(uuid.uuid4()).upper()
            _value(ET.SubElement(feature, "Settings"), "Id", "string", setting)
            blob = ET.SubElement(feature, f"Setting_{setting}")
            _value(blob, "Version", "integer", 1024)
            _value(blob, "Data", "bytes", "AAEAAAoAAAA=")
        _value(port, "FriendlyName", "string", "Network Adapter")
        _value(port, "IsConnected", "bool", True)
        _value(port, "MacAddress", "string", mac)
        _value(port, "MacAddressIsStatic", "bool", False)
        _value(port, "SwitchName", "string", str(uuid.uuid4()).upper())
        _value(port, "VDEVVersion", "integer", 256)
        manifest_entries.append((NIC, instance.upper(), "Synthetic Ethernet Port"))
    manifest = ET.SubElement(root, "manifest")
    _value(manifest, "size", "integer", len(manifest_entries))
    for i, (device, instance, label) in enumerate(manifest_entries, 1):
        vdev = ET.SubElement(manifest, f"vdev{i:03d}")
        _value(vdev, "device", "string", device)
        _value(vdev, "flags", "integer", 1)
        _value(vdev, "instance", "string", instance)
        _value(vdev, "name", "string", label)
    _value(manifest, "version", "integer", 260)
    props = ET.SubElement(root, "properties")
    _value(props, "creation_time", "bytes", "AdXMcq2k0QA=\n")
    _value(props, "global_id", "string", vm_id)
    _value(props, "highly_available", "bool", False)
    _value(props, "name", "string", name)
    _value(props, "notes", "string", "")
    _value(props, "subtype", "integer", 1 if generation == 2 else 0)
    _value(props, "type_id", "string", "Virtual Machines")
    _value(props, "version", "integer", 1280)
    settings = ET.SubElement(root, "settings")
    _value(ET.SubElement(settings, "global"), "logical_id", "string", vm_id)
    bank = ET.SubElement(ET.SubElement(settings, "memory"), "bank")
    _value(bank, "dynamic_memory_enabled", "bool", False)
    _value(bank, "size", "integer", memory_mb)
    cpus = ET.SubElement(settings, "processors")
    _value(cpus, "count", "integer", processors)
    _value(ET.SubElement(cpus, "features"), "limit", "bool", compatibility)
    _value(cpus, "limit_cpuid", "bool", False)
    return root


def write(path: Path, root: ET.Element) -> Path:
    """As Hyper-V writes it: UTF-16LE with a BOM, CRLF line ends, standalone."""
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    text = '<?xml version="1.0" encoding="UTF-16" standalone="yes"?>\n' + body + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xfe" + text.replace("\n", "\r\n").encode("utf-16-le"))
    return path
