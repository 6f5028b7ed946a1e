"""Hyper-V 2012 / 2012 R2 virtual machine configurations: ``Virtual Machines/<GUID>.xml``
(specs/vm.md, "Hyper-V XML"). UTF-16 with a byte order mark, one ``<configuration>`` element; every
value is an element with a ``type`` attribute (string, integer, bool, bytes). Devices hang off
elements named ``_<instance guid>_``; ``manifest/vdevNNN`` says which device class each instance is.

Reading is bounded: the file's size, the nesting depth, the number of elements; a DOCTYPE or an
entity declaration (XML's way to make a small file expand without limit) is refused before parsing.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ..errors import VmConfigError
from .model import VmConfig, VmDisk, VmNic

MAX_FILE = 16 * 1024 * 1024
MAX_ELEMENTS = 200_000
MAX_DEPTH = 32

IDE_CLASS = "83f8638b-8dca-4152-9eda-2ca8b33039b4"  # Microsoft Emulated IDE Controller
SCSI_CLASS = "d422512d-2bf2-4752-809d-7b82b5fcb1b4"  # Synthetic SCSI Controller
NIC_CLASS = "2fc216b0-d2e2-4967-9b6d-b8a5c9ca2778"  # Synthetic Ethernet Port
LEGACY_NIC_CLASS = "8e3a359f-559a-4b6a-98a9-1690a6100ed7"  # emulated ports (COM); no switch name there
VERSIONS = {256: "1.0", 512: "2.0", 768: "3.0", 1024: "4.0", 1280: "5.0"}


def read(data: bytes, name: str) -> VmConfig:
    """The VM in an XML configuration's bytes (``name``: the file, for messages)."""
    root = _parse(data, name)
    if root.tag != "configuration":
        raise VmConfigError(f"{name}: the root element is <{root.tag[:40]}>, not <configuration>: not a Hyper-V "
                            "VM configuration")
    props = root.find("properties")
    if props is None or _text(props, "type_id", name) not in ("Virtual Machines", ""):
        raise VmConfigError(f"{name}: no <properties> of a virtual machine (type_id 'Virtual Machines')")
    vm_name = _text(props, "name", name)
    if not vm_name:
        raise VmConfigError(f"{name}: properties/name is missing or empty")
    version = _int(props, "version", name)
    config = VmConfig(
        name=vm_name, id=_text(props, "global_id", name).strip("{}").lower(),
        generation=2 if _int(props, "subtype", name) == 1 else 1,
        memory_mb=_int(root, "settings/memory/bank/size", name),
        processors=_int(root, "settings/processors/count", name),
        processor_compatibility=_bool(root, "settings/processors/features/limit", name),
        config_path=name, config_format="hyperv-xml",
        version=VERSIONS.get(version or 0, str(version or "")))
    for index, (device, instance) in enumerate(_manifest(root, name)):
        element = _instance(root, instance)
        if element is None:
            continue
        if device in (IDE_CLASS, SCSI_CLASS):
            kind = "IDE" if device == IDE_CLASS else "SCSI"
            config.disks.extend(_drives(element, kind, name))
        elif device == NIC_CLASS:
            config.nics.append(VmNic(switch=_text(element, "Connection/AltSwitchName", name) or None,
                                     mac=_text(element, "MacAddress", name),
                                     name=_text(element, "FriendlyName", name)))
    return config


def _parse(data: bytes, name: str) -> ET.Element:
    if len(data) > MAX_FILE:
        raise VmConfigError(f"{name}: larger than {MAX_FILE // 2**20} MiB: not a VM configuration")
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            text = data.decode("utf-16")
        else:
            text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise VmConfigError(f"{name}: not valid {e.encoding.upper()} text ({e.reason} at byte {e.start})") from None
    head = text[:4096].lower()
    if "<!doctype" in text.lower() or "<!entity" in head:
        raise VmConfigError(f"{name}: a DOCTYPE or entity declaration: Hyper-V writes none, and it could expand "
                            "without limit; refused")
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)  # the declaration names UTF-16; the text is decoded already
    parser = ET.XMLPullParser(events=("start", "end"))
    depth = count = 0
    root: ET.Element | None = None
    try:
        for start in range(0, len(text), 1 << 16):
            parser.feed(text[start : start + (1 << 16)])
            for event, element in parser.read_events():
                if event == "start":
                    depth += 1
                    count += 1
                    root = element if root is None else root
                    if depth > MAX_DEPTH:
                        raise VmConfigError(f"{name}: nested more than {MAX_DEPTH} elements deep")
                    if count > MAX_ELEMENTS:
                        raise VmConfigError(f"{name}: more than {MAX_ELEMENTS:,} elements")
                else:
                    depth -= 1
        parser.close()
    except ET.ParseError as e:
        raise VmConfigError(f"{name}: not well-formed XML ({e})") from None
    if root is None:
        raise VmConfigError(f"{name}: empty")
    return root


def _manifest(root: ET.Element, name: str) -> list[tuple[str, str]]:
    """(device class, instance) of each vdevNNN in the manifest, lower case, braces dropped."""
    manifest = root.find("manifest")
    if manifest is None:
        raise VmConfigError(f"{name}: no <manifest>: the devices cannot be told apart")
    out = []
    for vdev in manifest:
        if not vdev.tag.startswith("vdev"):
            continue
        device = _text(vdev, "device", name).strip("{}").lower()
        instance = _text(vdev, "instance", name).strip("{}").lower()
        out.append((device, instance))
    return out


def _instance(root: ET.Element, instance: str) -> ET.Element | None:
    for element in root:
        if element.tag.lower() == f"_{instance}_":
            return element
    return None


def _drives(element: ET.Element, kind: str, name: str) -> list[VmDisk]:
    out = []
    for controller in element:
        m = re.fullmatch(r"controller(\d+)", controller.tag)
        if not m:
            continue
        for drive in controller:
            d = re.fullmatch(r"drive(\d+)", drive.tag)
            if not d:
                continue
            if _text(drive, "type", name).upper() != "VHD":  # ISO, VFD, NONE: no virtual hard disk there
                continue
            path = _text(drive, "pathname", name)
            if path:
                out.append(VmDisk(controller=f"{kind} {m.group(1)}", location=int(d.group(1)), path=path))
    return out


def _value(element: ET.Element, path: str, name: str, kind: str) -> str | None:
    found = element.find(path)
    if found is None:
        return None
    declared = found.get("type")
    if declared is not None and declared != kind:
        raise VmConfigError(f"{name}: {path} is of type {declared[:20]!r}, expected {kind!r}")
    text = found.text or ""
    if len(text) > 32768:
        raise VmConfigError(f"{name}: {path} is longer than 32 KiB")
    return text


def _text(element: ET.Element, path: str, name: str) -> str:
    return (_value(element, path, name, "string") or "").strip()


def _int(element: ET.Element, path: str, name: str) -> int | None:
    text = _value(element, path, name, "integer")
    if text is None or not text.strip():
        return None
    try:
        value = int(text.strip())
    except ValueError:
        raise VmConfigError(f"{name}: {path} is not a whole number: {text.strip()[:40]!r}") from None
    if not -(2**63) <= value < 2**64:
        raise VmConfigError(f"{name}: {path} is out of range")
    return value


def _bool(element: ET.Element, path: str, name: str) -> bool:
    text = (_value(element, path, name, "bool") or "").strip()
    if text not in ("", "True", "False"):
        raise VmConfigError(f"{name}: {path} is neither True nor False: {text[:40]!r}")
    return text == "True"


