"""``vhdkit.vm.load(path)``: a VM from its configuration file or its folder (Export-VM's layout and
Hyper-V's on a share: ``Virtual Machines``, ``Virtual Hard Disks``, ``Snapshots``), with every
disk found inside that folder and its differencing chain (checkpoints) followed. Nothing is
written. A configuration naming a file outside the VM's folder is refused: the paths are the
configuration's word, as a disk's parent locator is an image's."""

from __future__ import annotations

import json
import os
import posixpath

from ..errors import VhdkitError, VmConfigError
from ..placement.planner import checkpoint_file
from ..storage import is_url, redact
from .model import VmConfig, VmDisk

CONFIG_FOLDER = "Virtual Machines"
SUFFIXES = (".xml", ".vmcx", ".vhdkit.json")
MAX_CONFIG = 64 * 1024 * 1024  # read no more: each format's reader bounds itself lower (XML 16, VMCX 64 MiB)


def load(path: str | os.PathLike[str], *, follow_chains: bool = True) -> VmConfig:
    """The VM whose configuration is ``path``, or that a VM folder holds: a local path, or an
    smb:// URL (a VM on a share, read through SMB as its host reads it)."""
    where = os.fspath(path)
    place = _Place(where)
    config_file = _config_in(place, where) if place.kind(where) == "dir" else where
    folder = _vm_folder(config_file)
    try:
        data = place.read(config_file, MAX_CONFIG + 1)
    except OSError as e:
        raise VmConfigError(f"{redact(config_file)}: cannot read it: {e.strerror or e}") from None
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
        _find(place, disk, folder, follow_chains)
    return config


class _Place:
    """Files asked about the one way for a local folder and for a share (placement's Folders)."""

    def __init__(self, where: str) -> None:
        self.url = is_url(where)
        self.fs = None
        if self.url:
            from ..placement.folders import Folders
            from ..placement.locations import Location

            self.fs = Folders(Location(where))

    def kind(self, path: str) -> str | None:
        if self.fs is not None:
            return self.fs.kind(path)
        return "dir" if os.path.isdir(path) else "file" if os.path.isfile(path) else None if not \
            os.path.lexists(path) else "other"

    def names(self, path: str) -> list[str]:
        return self.fs.names(path) if self.fs is not None else sorted(os.listdir(path))

    def read(self, path: str, limit: int) -> bytes:
        if self.fs is not None:
            return self.fs.read(path, limit)
        with open(path, "rb") as f:
            return f.read(limit)

    def join(self, base: str, *names: str) -> str:
        return posixpath.join(base, *names) if self.url else os.path.join(base, *names)

    def real(self, path: str) -> str:
        """The path with its symbolic links resolved (a share's server resolves its own)."""
        if not self.url:
            return os.path.realpath(path)
        scheme, _, rest = path.partition("://")
        authority, _, tail = rest.partition("/")
        return f"{scheme}://{authority}" + posixpath.normpath("/" + tail).rstrip("/")


def _config_in(place: _Place, folder: str) -> str:
    inside = place.join(folder, CONFIG_FOLDER)
    candidates = []
    for base in (inside, folder):
        if place.kind(base) == "dir":
            candidates += [place.join(base, n) for n in place.names(base) if n.lower().endswith(SUFFIXES)]
        if candidates:
            break
    if not candidates:
        raise VmConfigError(f"{redact(folder)}: no VM configuration (.xml, .vmcx or .vhdkit.json) in it or in its "
                            f"'{CONFIG_FOLDER}' folder")
    if len(candidates) > 1:
        names = ", ".join(c.rsplit("/", 1)[-1].rsplit(os.sep, 1)[-1] for c in candidates)
        raise VmConfigError(f"{redact(folder)}: {len(candidates)} configurations ({names}): name the one to read")
    return candidates[0]


def vm_folder(path: str | os.PathLike[str]) -> str:
    """The VM's folder for ``path`` (the folder itself, or a configuration file in it), existing or not."""
    where = os.fspath(path)
    if where.lower().endswith(SUFFIXES):
        return _vm_folder(where)
    return where.rstrip("/") if is_url(where) else os.path.realpath(where)


def _vm_folder(config_file: str) -> str:
    """The VM's folder: the one above ``Virtual Machines``, else the configuration's own."""
    if is_url(config_file):
        parent = posixpath.dirname(config_file)
        if posixpath.basename(parent).lower() == CONFIG_FOLDER.lower():
            parent = posixpath.dirname(parent)
        return parent
    parent = os.path.dirname(os.path.abspath(config_file))
    if os.path.basename(parent).lower() == CONFIG_FOLDER.lower():
        parent = os.path.dirname(parent)
    return os.path.realpath(parent)


def _find(place: _Place, disk: VmDisk, folder: str, follow_chains: bool) -> None:
    """Where the disk the configuration names is, inside ``folder``; then its chain."""
    parts = [p for p in disk.path.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise VmConfigError(f"disk {disk.path!r} ({disk.controller}:{disk.location}) climbs out of its folder ('..'):"
                            " refused")
    if disk.path.startswith("/") and not place.url:
        candidates = [os.path.normpath(disk.path)]
    else:
        if parts and len(parts[0]) == 2 and parts[0][1] == ":":  # a drive letter: the host's, not ours
            parts = parts[1:]
        candidates = [place.join(folder, *parts[i:]) for i in range(len(parts))]
    for candidate in candidates:
        real = place.real(candidate)
        if not _inside(real, folder, place.url):
            if place.kind(candidate) is not None:
                raise VmConfigError(f"disk {disk.path!r} ({disk.controller}:{disk.location}) is outside the VM's "
                                    f"folder {redact(folder)}: refused")
            continue
        if place.kind(real) == "file":
            disk.local = real
            break
    if disk.local is None:
        disk.problem = f"not found in {redact(folder)}"
        return
    if follow_chains:
        from ..ops.open import open_image

        try:
            with open_image(disk.local, allowed_parent_dirs=[folder], force_share=True) as opened:
                layer = opened
                while layer is not None:
                    disk.chain.append(place.real(layer.name))
                    layer = getattr(layer, "parent", None)
        except VhdkitError as e:
            disk.problem = str(e)


def _inside(path: str, folder: str, url: bool = False) -> bool:
    sep = "/" if url else os.sep
    return path == folder or path.startswith(folder.rstrip(sep) + sep)


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
                      processor_compatibility=False, config_path=name, config_format="vhdkit",
                      host=doc["host"] if isinstance(doc.get("host"), str) else "")
    checkpoints = doc.get("checkpoints", [])
    if not isinstance(checkpoints, list) or len(checkpoints) > 256:
        raise VmConfigError(f"{name}: checkpoints must be a list of at most 256")
    top: dict[str, str] = {}  # each disk's newest checkpoint: what its guest writes (placement's names)
    for i, checkpoint in enumerate(checkpoints):
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("disk"), str):
            raise VmConfigError(f"{name}: checkpoints[{i}] names no disk")
        top[checkpoint["disk"]] = checkpoint_file(checkpoint["disk"], i + 1)
    for i, disk in enumerate(disks):
        if not isinstance(disk, dict) or not isinstance(disk.get("name"), str):
            raise VmConfigError(f"{name}: disks[{i}] has no name")
        config.disks.append(VmDisk(controller="SCSI 0", location=i,
                                   path=f"Virtual Hard Disks/{top.get(disk['name'], disk['name'])}"))
    return config
