"""Move a VM read from its configuration (specs/vm.md, "Moving a VM"): Live Storage and Live VSM
copy every file of its folder to a new one, disks with their checkpoint chains; Live moves only
the running state (nothing to copy, the preconditions say why it can).

Disks the engine's guest is writing (``guests``: the top of a chain -> its GuestDisk) are moved by
mirror jobs, all switched over in one pause; every other file (parents under checkpoints, disks of
a VM that is off, the rest of the folder) is copied as it is, sparse. Then the copied chains' parent
locators are pointed at their new places (relative and absolute) and each chain is opened to prove
it, and the configuration is written at the destination with its disk paths rewritten (XML and
vhdkit's description; a .vmcx cannot be written safely and its move is refused before anything).

A journal (``.vhdkit-move.json`` in the destination folder) makes a killed move safe to run again:
until the configuration has been written there, the destination is unfinished and a rerun starts
it afresh (the source is untouched, the VM still complete there); once it has, a rerun finishes
what is left (deleting the source, if asked). Either way the VM has one complete home.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any, Mapping, NamedTuple

from ..errors import RefusedError, VhdkitError
from ..guest import GuestDisk
from ..ops.open import open_image
from ..ops.reparent import set_parent
from ..placement.folders import copy_file
from ..placement.locations import Host
from .loader import load
from .model import VmConfig
from .plan import plan_move

JOURNAL = ".vhdkit-move.json"


class MoveReport(NamedTuple):
    kind: str
    vm: str
    source: str
    destination: str
    host: str
    files_copied: int
    bytes_copied: int
    pause_ms: float | None
    source_deleted: bool
    resumed: bool  # a journal from a killed run was found and finished


def move_vm(vm: VmConfig, kind: str, *, to: str | None = None, source_host: Host,
            destination_host: Host | None = None, guests: Mapping[str, GuestDisk] | None = None,
            delete_source: bool = False, shares: Mapping[str, str] | None = None,
            **job_options: Any) -> MoveReport:
    """Move ``vm``; returns what was done. Refused (RefusedError, nothing made) when a
    precondition fails."""
    if kind == "live":
        plan = plan_move(vm, kind, source_host=source_host, destination_host=destination_host, shares=shares)
        if not plan.allowed:
            raise RefusedError(f"Live migration of {vm.name} refused: " + "; ".join(plan.refusals))
        return MoveReport(kind, vm.name, vm.folder, vm.folder, plan.host, 0, 0, None, False, False)
    if vm.config_format == "vmcx":
        raise RefusedError(f"{vm.config_path}: a .vmcx configuration cannot be rewritten safely (no public "
                           "specification of its checksums and log); export the VM, or move it with Hyper-V")
    assert to is not None, "Live Storage and Live VSM need a destination"
    dest = os.path.join(to, os.path.basename(vm.folder))
    journal = _read_journal(dest)
    if journal is not None and journal.get("phase") == "written":
        return _finish(kind, dest, journal, delete_source, resumed=True)
    if journal is not None:  # killed before the destination was complete: start it afresh
        shutil.rmtree(dest)
    elif os.path.isdir(dest):
        raise RefusedError(f"{kind} move of {vm.name} refused: {dest} exists already")
    plan = plan_move(vm, kind, source_host=source_host, destination_host=destination_host, to=to, shares=shares)
    if not plan.allowed:
        raise RefusedError(f"{kind} move of {vm.name} refused: " + "; ".join(plan.refusals))
    missing = [d.path for d in vm.disks if d.local is None or d.problem]
    if missing:
        raise RefusedError(f"{vm.name}: these disks cannot be read here, so they cannot move: {', '.join(missing)}")
    guests = dict(guests or {})
    before = {key: guest.active for key, guest in guests.items()}
    # The destination appears with its journal in it, in one step: a folder made beside it first.
    staging = os.path.join(to, f".{os.path.basename(dest)}.vhdkit-new")
    shutil.rmtree(staging, ignore_errors=True)  # left by a run killed right here
    os.makedirs(staging)
    _write_journal(staging, {"phase": "copying", "vm": vm.name, "source": vm.folder, "host": plan.host})
    os.rename(staging, dest)
    try:
        files, copied, pause = _copy(vm, dest, guests, job_options)
        _relink_chains(vm, dest, {os.path.realpath(k) for k in guests})
        _write_config(vm, dest)
        _write_journal(dest, {"phase": "written", "vm": vm.name, "source": vm.folder, "host": plan.host,
                              "files": files, "bytes": copied, "pause_ms": pause})
    except BaseException:
        if all(guest.active is before[key] for key, guest in guests.items()):  # nobody runs from dest yet
            shutil.rmtree(dest, ignore_errors=True)
        raise
    return _finish(kind, dest, _read_journal(dest) or {}, delete_source, resumed=False)


def resume_move(kind: str, dest: str, *, delete_source: bool = False) -> MoveReport | None:
    """Finish a move killed after its destination was complete (the source may already be gone);
    None when ``dest`` holds no such move."""
    journal = _read_journal(dest)
    if journal is None or journal.get("phase") != "written":
        return None
    return _finish(kind, dest, journal, delete_source, resumed=True)


def _copy(vm: VmConfig, dest: str, guests: Mapping[str, GuestDisk],
          job_options: dict[str, Any]) -> tuple[int, int, float | None]:
    from ..migration.mirror import MirrorJob
    from ..migration.service import create_target
    from ..migration.switchover import complete_together

    running = {os.path.realpath(k): g for k, g in guests.items()}
    files = copied = 0
    jobs: list[MirrorJob] = []
    for root, _dirs, names in os.walk(vm.folder):
        rel = os.path.relpath(root, vm.folder)
        target_dir = os.path.join(dest, rel) if rel != "." else dest
        os.makedirs(target_dir, exist_ok=True)
        for name in sorted(names):
            source = os.path.realpath(os.path.join(root, name))
            if name == JOURNAL or source in running:
                continue
            copied += copy_file(source, os.path.join(target_dir, name))
            files += 1
    for source, guest in running.items():  # the guests' disks: mirrored while they write
        target_path = os.path.join(dest, os.path.relpath(source, vm.folder))
        top = guest.active
        info = top.info()
        if top.parent is not None:  # the top of a chain: a new child of its copied parent
            parent = os.path.join(os.path.dirname(target_path), os.path.basename(top.parent.name))
            target = create_target(target_path, format=info.format, parent=parent)
            shallow = True
        else:
            target = create_target(target_path, top.size, format=info.format)
            shallow = False
        jobs.append(MirrorJob(guest, target, shallow=shallow, **job_options).start())
        files += 1
    pause = None
    if jobs:
        pause = complete_together(jobs) * 1000
        for job in jobs:
            try:
                job.verify()
            finally:
                job.end_verification()
            copied += job.copied + job.mirrored
    return files, copied, pause


def _relink_chains(vm: VmConfig, dest: str, mirrored: set[str]) -> None:
    """Point every copied differencing disk at its copied parent (a mirrored top was made with
    its new parent's paths already), then open each chain to prove it."""
    for disk in vm.disks:
        layers = [os.path.join(dest, os.path.relpath(layer, vm.folder)) for layer in disk.chain]
        for source, child, parent in zip(disk.chain, layers, layers[1:]):
            if os.path.realpath(source) not in mirrored:
                set_parent(child, parent, allowed_parent_dirs=[dest])
        if layers:
            with open_image(layers[0], allowed_parent_dirs=[dest], force_share=True) as opened:
                depth, layer = 0, opened
                while layer is not None:
                    depth += 1
                    layer = getattr(layer, "parent", None)
            if depth != len(layers):
                raise VhdkitError(f"{layers[0]}: its chain at the destination has {depth} layers, not {len(layers)}")


def _write_config(vm: VmConfig, dest: str) -> None:
    """The configuration at the destination, each disk's recorded path replaced by its new one."""
    source = vm.config_path
    target = os.path.join(dest, os.path.relpath(source, vm.folder))
    with open(source, "rb") as f:
        data = f.read()
    for disk in vm.disks:
        new = os.path.join(dest, os.path.relpath(disk.chain[0] if disk.chain else disk.local or "", vm.folder))
        data = _replace_path(data, disk.path, new, vm.config_format, source)
    temp = target + ".vhdkit-tmp"
    with open(temp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, target)


def _replace_path(data: bytes, old: str, new: str, config_format: str, name: str) -> bytes:
    if config_format == "hyperv-xml":
        from xml.sax.saxutils import escape

        utf16 = data.startswith((b"\xff\xfe", b"\xfe\xff"))
        text = data.decode("utf-16" if utf16 else "utf-8-sig")
        before = f'<pathname type="string">{escape(old)}</pathname>'
        if before not in text:
            raise VhdkitError(f"{name}: the disk path {old!r} is not where it was read from")
        text = text.replace(before, f'<pathname type="string">{escape(new)}</pathname>')
        return b"\xff\xfe" + text.encode("utf-16-le") if utf16 else text.encode("utf-8")
    return data  # vhdkit's description names its disks relative to the folder: nothing to change


def _finish(kind: str, dest: str, journal: dict[str, Any], delete_source: bool, resumed: bool) -> MoveReport:
    """The destination is complete (journal "written"): delete the source if asked, end the journal.
    The source is first renamed out of the way in one step, so it is whole or gone, never half."""
    deleted = False
    source = str(journal.get("source", ""))
    tombstone = os.path.join(os.path.dirname(source), f".{os.path.basename(source)}.vhdkit-deleting")
    if delete_source and source and os.path.isdir(source) and os.path.realpath(source) != os.path.realpath(dest):
        moved = load(dest)  # the destination must hold the whole VM before the source goes
        if any(d.problem for d in moved.disks):
            raise VhdkitError(f"{dest}: not complete ({'; '.join(d.problem or '' for d in moved.disks)}); the "
                              f"source {source} is kept")
        os.replace(source, tombstone)
    if delete_source and os.path.isdir(tombstone):
        shutil.rmtree(tombstone)
        deleted = True
    os.unlink(os.path.join(dest, JOURNAL))
    return MoveReport(kind, str(journal.get("vm", "")), source, dest, str(journal.get("host", "")),
                      int(journal.get("files", 0)), int(journal.get("bytes", 0)), journal.get("pause_ms"), deleted,
                      resumed)


def _read_journal(dest: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(dest, JOURNAL)) as f:
            doc = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"phase": "copying"}  # unreadable: written only while copying began
    return doc if isinstance(doc, dict) else {"phase": "copying"}


def _write_journal(dest: str, doc: dict[str, Any]) -> None:
    path = os.path.join(dest, JOURNAL)
    temp = path + ".tmp"
    with open(temp, "w") as f:
        json.dump(dict(doc, at=time.time()), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    fd = os.open(dest, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["JOURNAL", "MoveReport", "move_vm", "resume_move"]
