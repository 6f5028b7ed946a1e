"""``vhdkit.vm.load(path)``: a VM from its configuration file or its folder (Export-VM's layout and
Hyper-V's on a share: ``Virtual Machines``, ``Virtual Hard Disks``, ``Snapshots``), with every
disk found inside that folder and its differencing chain (checkpoints) followed. Nothing is
written. A configuration naming a file outside the VM's folder is refused: the paths are the
configuration's word, as a disk's parent locator is an image's."""

from __future__ import annotations

import json
import os

from ..errors import VhdkitError, VmConfigError
from .model import VmConfig, VmDisk

CONFIG_FOLDER = "Virtual Machines"
SUFFIXES = (".xml", ".vmcx", ".vhdkit.json")
MAX_CONFIG = 64 * 1024 * 1024  # read no more: each format's reader bounds itself lower (XML 16, VMCX 64 MiB)


def load(path: str | os.PathLike[str], *, follow_chains: bool = True) -> VmConfig:
    """The VM whose configuration is ``path``, or that a VM folder holds."""
    where = os.fspath(path)
    config_file = _config_in(where) if os.path.isdir(where) else where
    folder = _vm_folder(config_file)
    try:
        with open(config_file, "rb") as f:
            data = f.read(MAX_CONFIG + 1)
    except OSError as e:
        raise VmConfigError(f"{config_file}: cannot read it: {e.strerror}") from None
    lower = config_file.lower()
    if lower.endswith(".vmcx"):
        from .vmcx import read as read_vmcx

        config = read_vmcx(data, config_file)
    elif lower.endswith(".vhdkit.json"):
        config = _read_vhdkit(data, config_file)
    else:
        from .xmlconfig import read as read_xml

        config = read_xml(data, config_file)
    config.folder = folder
    for disk in config.disks:
        _find(disk, folder, follow_chains)
    return config



def _config_in(folder: str) -> str:
    inside = os.path.join(folder, CONFIG_FOLDER)
    candidates = []
    for base in (inside, folder):
        if os.path.isdir(base):
            candidates += [os.path.join(base, n) for n in sorted(os.listdir(base)) if n.lower().endswith(SUFFIXES)]
        if candidates:
            break
    if not candidates:
        raise VmConfigError(f"{folder}: no VM configuration (.xml, .vmcx or .vhdkit.json) in it or in its "
                            f"'{CONFIG_FOLDER}' folder")
    if len(candidates) > 1:
        raise VmConfigError(f"{folder}: {len(candidates)} configurations ({', '.join(map(os.path.basename, candidates))}):"
                            " name the one to read")
    return candidates[0]


def vm_folder(path: str | os.PathLike[str]) -> str:
    """The VM's folder for ``path`` (the folder itself, or a configuration file in it), existing or not."""
    where = os.fspath(path)
    return os.path.realpath(where) if os.path.isdir(where) or not where.lower().endswith(SUFFIXES) \
        else _vm_folder(where)


def _vm_folder(config_file: str) -> str:
    """The VM's folder: the one above ``Virtual Machines``, else the configuration's own."""
    parent = os.path.dirname(os.path.abspath(config_file))
    if os.path.basename(parent).lower() == CONFIG_FOLDER.lower():
        parent = os.path.dirname(parent)
    return os.path.realpath(parent)


def _find(disk: VmDisk, folder: str, follow_chains: bool) -> None:
    """Where the disk the configuration names is, inside ``folder``; then its chain."""
    parts = [p for p in disk.path.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise VmConfigError(f"disk {disk.path!r} ({disk.controller}:{disk.location}) climbs out of its folder ('..'):"
                            " refused")
    if disk.path.startswith("/"):
        candidates = [os.path.normpath(disk.path)]
    else:
        if parts and len(parts[0]) == 2 and parts[0][1] == ":":  # a drive letter: the host's, not ours
            parts = parts[1:]
        candidates = [os.path.join(folder, *parts[i:]) for i in range(len(parts))]
    for candidate in candidates:
        real = os.path.realpath(candidate)
        if not _inside(real, folder):
            if os.path.exists(candidate):
                raise VmConfigError(f"disk {disk.path!r} ({disk.controller}:{disk.location}) is outside the VM's "
                                    f"folder {folder}: refused")
            continue
        if os.path.isfile(real):
            disk.local = real
            break
    if disk.local is None:
        disk.problem = f"not found in {folder}"
        return
    if follow_chains:
        from ..ops.open import open_image

        try:
            with open_image(disk.local, allowed_parent_dirs=[folder], force_share=True) as opened:
                layer = opened
                while layer is not None:
                    disk.chain.append(os.path.realpath(layer.name))
                    layer = getattr(layer, "parent", None)
        except VhdkitError as e:
            disk.problem = str(e)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _read_vhdkit(data: bytes, name: str) -> VmConfig:
    """vhdkit's own description (placement writes ``Virtual Machines/<vm>.vhdkit.json``)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise VmConfigError(f"{name}: not JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise VmConfigError(f"{name}: not a vhdkit VM description (no name)")
    disks = doc.get("disks", [])
    if not isinstance(disks, list) or len(disks) > 256:
        raise VmConfigError(f"{name}: disks must be a list of at most 256")
    config = VmConfig(name=doc["name"], id="", generation=2, memory_mb=None, processors=None,
                      processor_compatibility=False, config_path=name, config_format="vhdkit")
    for i, disk in enumerate(disks):
        if not isinstance(disk, dict) or not isinstance(disk.get("name"), str):
            raise VmConfigError(f"{name}: disks[{i}] has no name")
        config.disks.append(VmDisk(controller="SCSI 0", location=i, path=f"Virtual Hard Disks/{disk['name']}"))
    return config
