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
import time
import uuid
from typing import Any, Callable, Mapping, NamedTuple

from ..errors import RefusedError, VhdkitError
from ..guest import GuestDisk
from ..ops.open import open_image
from ..ops.reparent import set_parent
from ..placement.folders import Folders, copy_file
from ..placement.locations import Host, Location
from ..storage import is_url, redact
from ..units import format_size
from .loader import MAX_CONFIG
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


Events = Callable[[str, dict[str, Any]], None]


def move_vm(vm: VmConfig, kind: str, *, to: str | None = None, source_host: Host,
            destination_host: Host | None = None, guests: Mapping[str, GuestDisk] | None = None,
            delete_source: bool = False, shares: Mapping[str, str] | None = None,
            on_event: Events | None = None, on_jobs: Callable[[list[Any]], None] | None = None,
            **job_options: Any) -> MoveReport:
    """Move ``vm``; returns what was done. Refused (RefusedError, nothing made) when a
    precondition fails. ``on_event(event, fields)`` hears the steps: "copying" (per file, with
    bytes so far and the total to copy), "mirroring" (per disk: copied, remaining, total),
    "switched" (pause_ms), "relinked", "written", "done". ``on_jobs`` receives the mirror jobs
    once started (a caller may cancel them until the switch-over; the move then fails and the
    guests stay on the source)."""
    emit: Events = on_event or (lambda event, fields: None)
    if kind == "live":
        return _live(vm, source_host, destination_host, shares, emit)
    if vm.config_format == "vmcx":
        raise RefusedError(f"{vm.config_path}: a .vmcx configuration cannot be rewritten safely (no public "
                           "specification of its checksums and log); export the VM, or move it with Hyper-V")
    assert to is not None, "Live Storage and Live VSM need a destination"
    fs = Folders(Location(to))
    dest = fs.join(to, os.path.basename(vm.folder))
    journal = _read_journal(fs, dest)
    if journal is not None and journal.get("phase") == "written":
        return _finish(kind, fs, dest, journal, delete_source, resumed=True)
    plan = plan_move(vm, kind, source_host=source_host, destination_host=destination_host, to=to, shares=shares)
    if not plan.allowed:
        raise RefusedError(f"{kind} move of {vm.name} refused: " + "; ".join(plan.refusals))
    if journal is not None:  # killed before the destination was complete: start it afresh
        fs.remove_tree(dest)
    elif fs.exists(dest):
        raise RefusedError(f"{kind} move of {vm.name} refused: {redact(dest)} exists already")
    missing = [d.path for d in vm.disks if d.local is None or d.problem]
    if missing:
        raise RefusedError(f"{vm.name}: these disks cannot be read here, so they cannot move: {', '.join(missing)}")
    source_fs = Folders(Location(vm.folder))
    files = {rel: _allocated(source_fs.join(vm.folder, *rel.split("/"))) for rel in source_fs.walk(vm.folder)}
    needed = sum(files.values())
    try:
        free = Location(to).measure().free
    except VhdkitError as e:
        raise RefusedError(f"{kind} move of {vm.name} refused: {redact(to)} cannot be measured: {e}") from None
    if free < needed:
        raise RefusedError(f"{kind} move of {vm.name} refused: {redact(to)} is too small: the VM's files take "
                           f"{format_size(needed)}, {format_size(free)} is free")
    guests = dict(guests or {})
    before = {key: guest.active for key, guest in guests.items()}
    # The destination appears with its journal in it, in one step: a folder made beside it first.
    staging = fs.join(to, f".{os.path.basename(vm.folder)}.vhdkit-new")
    if fs.exists(staging):
        fs.remove_tree(staging)  # left by a run killed right here
    fs.mkdir(staging)
    _write_journal(fs, staging, {"phase": "copying", "vm": vm.name, "source": redact(vm.folder), "host": plan.host})
    fs.rename(staging, dest)
    try:
        with Location(to).policy():  # an encrypted destination gets every byte encrypted
            copied_files, copied, pause = _copy(vm, source_fs, files, fs, dest, guests, job_options, emit, on_jobs)
            _relink_chains(vm, fs, dest, {_real(k) for k in guests})
            emit("relinked", {"disks": len(vm.disks)})
            _write_config(vm, source_fs, fs, dest, plan.host)
        _write_journal(fs, dest, {"phase": "written", "vm": vm.name, "source": redact(vm.folder), "host": plan.host,
                                  "files": copied_files, "bytes": copied, "pause_ms": pause})
        emit("written", {"destination": dest})
    except BaseException:
        if all(guest.active is before[key] for key, guest in guests.items()):  # nobody runs from dest yet
            try:
                fs.remove_tree(dest)
            except OSError:
                pass
        raise
    report = _finish(kind, fs, dest, _read_journal(fs, dest) or {}, delete_source, resumed=False)
    emit("done", report._asdict())
    return report


def _live(vm: VmConfig, source_host: Host, destination_host: Host | None, shares: Mapping[str, str] | None,
          emit: Events) -> MoveReport:
    """Live: nothing is copied; vhdkit's description is told the new host (Hyper-V's own
    configurations record none)."""
    plan = plan_move(vm, "live", source_host=source_host, destination_host=destination_host, shares=shares)
    if not plan.allowed:
        raise RefusedError(f"Live migration of {vm.name} refused: " + "; ".join(plan.refusals))
    if vm.config_format == "vhdkit":
        source_fs = Folders(Location(vm.folder))
        _replace_file(source_fs, vm.config_path, _with_host(source_fs.read(vm.config_path, MAX_CONFIG), plan.host))
        emit("written", {"destination": redact(vm.folder)})
    report = MoveReport("live", vm.name, redact(vm.folder), redact(vm.folder), plan.host, 0, 0, None, False, False)
    emit("done", report._asdict())
    return report


def resume_move(kind: str, to: str, name: str, *, delete_source: bool = False) -> MoveReport | None:
    """Finish a move of the VM folder ``name`` into ``to`` killed after its destination was
    complete (the source may already be gone); None when there is no such move."""
    fs = Folders(Location(to))
    dest = fs.join(to, name)
    journal = _read_journal(fs, dest)
    if journal is None or journal.get("phase") != "written":
        return None
    return _finish(kind, fs, dest, journal, delete_source, resumed=True)


def _copy(vm: VmConfig, source_fs: Folders, files: dict[str, int], fs: Folders, dest: str,
          guests: Mapping[str, GuestDisk], job_options: dict[str, Any], emit: Events,
          on_jobs: Callable[[list[Any]], None] | None) -> tuple[int, int, float | None]:
    """Copy ``files`` (relative to the VM's folder -> allocated bytes) to ``dest``, but mirror
    those a guest writes; switch all the mirrored disks in one pause. Returns (files, bytes,
    pause in ms)."""
    from ..migration.mirror import MirrorJob
    from ..migration.switchover import complete_together

    running = {_real(k): g for k, g in guests.items()}
    copied_files = copied = 0
    sources = {rel: _real(source_fs.join(vm.folder, *rel.split("/"))) for rel in sorted(files)}
    to_copy = [rel for rel, source in sources.items() if rel.rsplit("/", 1)[-1] != JOURNAL and source not in running]
    total = sum(files[rel] for rel in to_copy)
    # Every file's folder, the mirrored disks' too (a disk alone in its folder is one of them):
    # each made once, parents first (one request each on a share).
    for folder in sorted({"/".join(rel.split("/")[:i]) for rel in sources for i in range(1, rel.count("/") + 1)}):
        fs.mkdir(fs.join(dest, *folder.split("/")))
    for rel in to_copy:
        copied += copy_file(sources[rel], fs.join(dest, *rel.split("/")))
        copied_files += 1
        last = rel == to_copy[-1]  # (allocated blocks may hold a little less data than they count)
        emit("copying", {"file": rel, "bytes": copied, "total": copied if last else max(total, copied)})
    jobs: list[MirrorJob] = []
    try:
        for source, guest in running.items():  # the guests' disks: mirrored while they write
            jobs.append(_start_job(guest, fs, _there(fs, dest, vm.folder, source), job_options))
            copied_files += 1
        if not jobs:
            return copied_files, copied, None
        if on_jobs is not None:
            on_jobs(jobs)
        while not all(job.state.value in ("ready", "failed", "cancelled") for job in jobs):
            for job in jobs:
                status = job.status()
                emit("mirroring", {"disk": job.target.name, "copied": status["copied"],
                                   "remaining": status["remaining"], "total": status["total"]})
            time.sleep(0.1)
        pause = complete_together(jobs) * 1000
    except BaseException as e:
        _abandon(jobs, e)
        raise
    emit("switched", {"pause_ms": pause})
    for job in jobs:
        try:
            job.verify()
        finally:
            job.end_verification()
        copied += job.copied + job.mirrored
        job.source.close()  # the guest runs on the target now; a share refuses to delete a folder with open files
    return copied_files, copied, pause


def _start_job(guest: GuestDisk, fs: Folders, target_path: str, options: dict[str, Any]) -> Any:
    """A mirror job of ``guest``'s disk into a new image at ``target_path`` of the same kind and
    identity (the disk id Hyper-V and the disk's children know it by); the top of a chain becomes
    a new child of its copied parent (beside it, as at the source) and is mirrored shallowly."""
    from ..migration.mirror import MirrorJob
    from ..migration.service import create_target

    top = guest.active
    info = top.info()
    disk_id = uuid.UUID(info.disk_id) if info.disk_id else None
    if top.parent is not None:
        parent_name = top.parent.name.replace("\\", "/").rsplit("/", 1)[-1]
        parent = fs.join(fs.split(target_path)[0], parent_name)
        target = create_target(target_path, format=info.format, parent=parent, disk_id=disk_id)
        shallow = True
    else:
        extra = {"block_size": info.block_size} if info.block_size else {}
        target = create_target(target_path, top.size, format=info.format,
                               type="fixed" if info.type == "fixed" else "dynamic", disk_id=disk_id, **extra)
        shallow = False
    try:
        return MirrorJob(guest, target, shallow=shallow, **options).start()
    except BaseException:
        target.close()
        raise


def _abandon(jobs: list[Any], why: BaseException) -> None:
    """The move failed before its switch-over: end the jobs, the guests stay on their sources."""
    for job in jobs:
        try:
            job.cancel(f"the move failed: {why}")
            job.ranges.wait_idle()
            if job.guest.active is not job.source:
                continue  # switched already: the target is the guest's disk now
            job.target.close()
        except (VhdkitError, OSError, ValueError):
            pass


def _real(path: str) -> str:
    """A local path with its links resolved; a URL as it is (its server resolves its own)."""
    return path if is_url(path) else os.path.realpath(path)


def _allocated(path: str) -> int:
    from ..storage import open_store

    store = open_store(path)
    try:
        return store.allocated_bytes() or store.size()
    finally:
        store.close()


def _there(fs: Folders, dest: str, folder: str, path: str) -> str:
    """Where ``path`` (a file under the VM's ``folder``) is at the destination."""
    if is_url(folder):
        rel = path[len(folder.rstrip("/")) + 1:]
        return fs.join(dest, *rel.split("/"))
    return fs.join(dest, *os.path.relpath(path, folder).split(os.sep))


def _relink_chains(vm: VmConfig, fs: Folders, dest: str, mirrored: set[str]) -> None:
    """Point every copied differencing disk at its copied parent, then open each chain to prove
    it. A mirrored top is not reopened: its guest is writing it (a second reader would see a log
    in flight), and it was opened on its new parent when it was made, which is the proof."""
    for disk in vm.disks:
        layers = [_there(fs, dest, vm.folder, layer) for layer in disk.chain]
        for source, child, parent in zip(disk.chain, layers, layers[1:]):
            if _real(source) not in mirrored:
                set_parent(child, parent, allowed_parent_dirs=[dest])
        if disk.chain and _real(disk.chain[0]) in mirrored:
            layers = layers[1:]
        if layers:
            with open_image(layers[0], allowed_parent_dirs=[dest], force_share=True) as opened:
                depth, layer = 0, opened
                while layer is not None:
                    depth += 1
                    layer = getattr(layer, "parent", None)
            if depth != len(layers):
                raise VhdkitError(f"{layers[0]}: its chain at the destination has {depth} layers, not {len(layers)}")


def _write_config(vm: VmConfig, source_fs: Folders, fs: Folders, dest: str, host: str) -> None:
    """The configuration at the destination, each disk's recorded path replaced by its new one
    (a share's files as the UNC path Hyper-V records, ``\\\\server\\share\\...``); vhdkit's
    description also says the host the VM runs on now."""
    data = source_fs.read(vm.config_path, MAX_CONFIG)
    for disk in vm.disks:
        new = _recorded(_there(fs, dest, vm.folder, disk.chain[0] if disk.chain else disk.local or ""))
        data = _replace_path(data, disk.path, new, vm.config_format, vm.config_path)
    if vm.config_format == "vhdkit":
        data = _with_host(data, host)
    _replace_file(fs, _there(fs, dest, vm.folder, vm.config_path), data)


def _replace_file(fs: Folders, target: str, data: bytes) -> None:
    """``target`` holds ``data``, old or new whole: written beside it, then renamed over it."""
    temp = target + ".vhdkit-tmp"
    fs.write(temp, data, replace=True)
    fs.rename(temp, target)


def _with_host(data: bytes, host: str) -> bytes:
    """vhdkit's description with ``host`` (where the VM runs) set, as placement writes it."""
    doc = json.loads(data)
    doc.update(host=host, moved_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return json.dumps(doc, indent=2).encode()


def _recorded(location: str) -> str:
    if not location.startswith("smb://"):
        return location
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(location)
    return "\\\\" + (parts.hostname or "") + unquote(parts.path).replace("/", "\\")


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


def _finish(kind: str, fs: Folders, dest: str, journal: dict[str, Any], delete_source: bool,
            resumed: bool) -> MoveReport:
    """The destination is complete (journal "written": every chain there was opened and proved
    before it was written): delete the source if asked, end the journal. The source is first
    renamed out of the way in one step, so it is whole or gone, never half."""
    deleted = False
    source = str(journal.get("source", ""))
    if delete_source and source:
        source_fs = Folders(Location(source))
        parent, name = source_fs.split(source)
        tombstone = source_fs.join(parent, f".{name}.vhdkit-deleting")
        if source_fs.kind(source) == "dir":
            source_fs.rename(source, tombstone)
        if source_fs.kind(tombstone) == "dir":
            source_fs.remove_tree(tombstone)
            deleted = True
    fs.remove(fs.join(dest, JOURNAL))
    return MoveReport(kind, str(journal.get("vm", "")), source, redact(dest), str(journal.get("host", "")),
                      int(journal.get("files", 0)), int(journal.get("bytes", 0)), journal.get("pause_ms"), deleted,
                      resumed)


def _read_journal(fs: Folders, dest: str) -> dict[str, Any] | None:
    path = fs.join(dest, JOURNAL)
    if not fs.exists(path):
        return None
    try:
        doc = json.loads(fs.read(path))
    except (OSError, ValueError):
        return {"phase": "copying"}  # unreadable: a journal is written whole, so this one never was
    return doc if isinstance(doc, dict) else {"phase": "copying"}


def _write_journal(fs: Folders, dest: str, doc: dict[str, Any]) -> None:
    """Written under another name, flushed, then renamed over the journal: it is old or new."""
    path = fs.join(dest, JOURNAL)
    temp = path + ".tmp"
    if fs.location.is_smb:
        fs.write(temp, json.dumps(dict(doc, at=time.time())).encode(), replace=True)
    else:
        with open(temp, "w") as f:
            json.dump(dict(doc, at=time.time()), f)
            f.flush()
            os.fsync(f.fileno())
    fs.rename(temp, path)
    if not fs.location.is_smb:
        fd = os.open(dest, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


__all__ = ["JOURNAL", "MoveReport", "move_vm", "resume_move"]
