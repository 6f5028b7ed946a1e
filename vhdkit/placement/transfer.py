"""Moving a running VM, with the transfer types VMM names (specs/migration.md, "Transfer types").

- **Live Storage**: same host, the storage moves: every file under the VM's folder (configuration,
  disks, checkpoint chains, saved state) to another location, while the VM keeps running.
- **Live VSM**: storage and the VM to another host and location.
- **Live**: the VM to another host, its files staying where they are: allowed only when they sit
  on a share both hosts can reach with write access.

A running VM here is its folder as ``place`` lays it out, plus a GuestDisk per virtual disk (the
top of each chain: the newest checkpoint, or the disk itself), which is what its guest writes
through. Files nothing writes (parents under a checkpoint, the configuration, saved state) are
copied as bytes, sparse; each running layer is moved by a mirror job (a chain's top shallowly, as
a new child of the copied parent, keeping its disk id) and all of a VM's disks switch over at the
same instant. Every precondition is checked before anything is made, and each one that fails is
named. The source is deleted only after a verified switch-over, and only if asked; a failure
leaves the VM running on its source and removes what the move made.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any, NamedTuple, Sequence

from ..guest import GuestDisk
from ..migration.mirror import MirrorJob
from ..migration.service import create_target
from ..migration.switchover import complete_together
from ..errors import PlacementError, VhdkitError
from ..ops.open import open_image
from ..units import format_size
from .folders import Folders, copy_file
from .locations import Host, Location
from .planner import VmSpec

CONFIG_FOLDER = "Virtual Machines"
DISK_FOLDER = "Virtual Hard Disks"


class TransferReport(NamedTuple):
    kind: str  # "live-storage", "live-vsm", "live"
    vm: str
    source: str  # the VM's folder before
    destination: str  # and after
    host: str  # the host running it after
    files_copied: int
    bytes_copied: int  # static files' bytes plus what the mirror jobs wrote
    pause_ms: float | None  # the guest's pause at the switch-over (all disks at once)
    verified_bytes: int
    source_deleted: bool


class RunningVm:
    """A VM running on ``host`` from ``folder`` (``<location>/<vm name>``) on ``location``."""

    def __init__(self, location: Location, name: str, host: str) -> None:
        self.location = location
        self.name = name
        self.host = host
        self.fs = Folders(location)
        self.folder = self.fs.join(location.where, name)
        self.config_path = self.fs.join(self.folder, CONFIG_FOLDER, f"{name}.vhdkit.json")
        try:
            self.config: dict[str, Any] = json.loads(self.fs.read(self.config_path))
        except (OSError, ValueError) as e:
            raise PlacementError(f"{self.config_path} is not a VM this toolkit placed: {e}") from None
        self.spec = VmSpec.from_dict({k: v for k, v in self.config.items() if k in VmSpec._fields})
        self.guests: dict[str, GuestDisk] = {}  # running layer's file name -> the guest's handle
        try:
            for layer in self.running_layers():
                self.guests[layer] = GuestDisk(open_image(self.fs.join(self.folder, DISK_FOLDER, layer), "r+"))
        except BaseException:
            self.close()
            raise

    def running_layers(self) -> list[str]:
        """The file each disk's guest writes: its newest checkpoint, or the disk itself."""
        top = {d.name: d.name for d in self.spec.disks}
        for i, (disk, _) in enumerate(self.spec.checkpoints):
            top[disk] = f"{disk.rsplit('.', 1)[0]}_checkpoint{i + 1}.avhdx"
        return list(top.values())

    def close(self) -> None:
        for guest in self.guests.values():
            guest.close()
        self.guests.clear()


def live_storage(vm: RunningVm, to: Location, hosts: Sequence[Host], *, delete_source: bool = False,
                 **job_options: Any) -> TransferReport:
    """Move every file of ``vm`` to ``to``; it keeps running on its host."""
    return _move(vm, to, _host(hosts, vm.host), "live-storage", delete_source, job_options)


def live_vsm(vm: RunningVm, to: Location, new_host: str, hosts: Sequence[Host], *, delete_source: bool = False,
             **job_options: Any) -> TransferReport:
    """Move ``vm``'s files to ``to`` and the VM to ``new_host``."""
    _host(hosts, vm.host)
    return _move(vm, to, _host(hosts, new_host), "live-vsm", delete_source, job_options)


def live(vm: RunningVm, new_host: str, hosts: Sequence[Host]) -> TransferReport:
    """Move ``vm`` to ``new_host``, its files staying: both hosts must reach where they are."""
    target = _host(hosts, new_host)
    problems = []
    if not vm.location.is_smb:
        problems.append(f"its files are in {vm.location.where}, a folder on {vm.host}, which {new_host} cannot "
                        "reach (use Live VSM to move them too)")
    else:
        for host in (_host(hosts, vm.host), target):
            reach = vm.location.reach(host)
            if not reach.writable:
                problems.append(reach.why or f"{host.name} cannot write to {vm.location.where}")
    if problems:
        raise PlacementError(f"Live migration of {vm.name} to {new_host} refused: " + "; ".join(problems))
    _write_config(vm.fs, vm.config_path, vm.config, new_host)
    vm.host = new_host
    return TransferReport("live", vm.name, vm.folder, vm.folder, new_host, 0, 0, None, 0, False)


# -- inside --------------------------------------------------------------------------------------
def _host(hosts: Sequence[Host], name: str) -> Host:
    for host in hosts:
        if host.name == name:
            return host
    raise PlacementError(f"no host named {name!r} was described")


def _move(vm: RunningVm, to: Location, runs_on: Host, kind: str, delete_source: bool,
          job_options: dict[str, Any]) -> TransferReport:
    label = {"live-storage": "Live Storage", "live-vsm": "Live VSM"}[kind]
    files = list(vm.fs.walk(vm.folder))
    running = {f"{DISK_FOLDER}/{layer}" for layer in vm.guests}
    needed = sum(_allocated(vm.fs.join(vm.folder, *f.split("/"))) for f in files)
    dest_fs = Folders(to)
    dest = dest_fs.join(to.where, vm.name)
    problems = _preconditions(vm, to, runs_on, needed, dest_fs, dest)
    if problems:
        raise PlacementError(f"{label} migration of {vm.name} to {to.where} refused: " + "; ".join(problems))
    jobs: list[MirrorJob] = []
    copied = 0
    try:
        with to.policy():  # an encrypted destination gets every byte encrypted
            for folder in (dest, *(dest_fs.join(dest, f) for f in (CONFIG_FOLDER, DISK_FOLDER, "Snapshots"))):
                dest_fs.mkdir(folder)
            for rel in sorted(files):  # parents and the rest: nothing writes them while the VM runs
                if rel in running or rel == f"{CONFIG_FOLDER}/{vm.name}.vhdkit.json":
                    continue
                parts = rel.split("/")
                for i in range(1, len(parts)):
                    dest_fs.mkdir(dest_fs.join(dest, *parts[:i]))
                copied += copy_file(vm.fs.join(vm.folder, *parts), dest_fs.join(dest, *parts))
            for layer, guest in vm.guests.items():
                jobs.append(_start_job(guest, dest_fs.join(dest, DISK_FOLDER, layer), job_options))
            pause = complete_together(jobs)
        verified = 0
        for job in jobs:
            try:
                verified += job.verify()
            finally:
                job.end_verification()
        _write_config(dest_fs, dest_fs.join(dest, CONFIG_FOLDER, f"{vm.name}.vhdkit.json"), vm.config, runs_on.name)
    except (VhdkitError, OSError, ValueError) as e:
        for job in jobs:
            job.cancel(f"the move failed: {e}")
            job.ranges.wait_idle()
            if job.guest.active is not job.source:  # switched already: back to the source it cannot go
                continue
            try:
                job.target.close()
            except (VhdkitError, OSError, ValueError):
                pass
        if not any(job.guest.active is job.target for job in jobs):
            dest_fs.undo()
        raise PlacementError(f"{label} migration of {vm.name} failed, it runs on from {vm.folder}: {e}") from None
    for job in jobs:
        job.source.close()
        copied += job.copied + job.mirrored
    source_fs, source_folder = vm.fs, vm.folder
    vm.location, vm.fs, vm.folder, vm.host = to, dest_fs, dest, runs_on.name
    vm.config_path = dest_fs.join(dest, CONFIG_FOLDER, f"{vm.name}.vhdkit.json")
    deleted = False
    if delete_source:  # only now: switched over, verified, the sources closed
        source_fs.remove_tree(source_folder)
        deleted = True
    return TransferReport(kind, vm.name, source_folder, dest, runs_on.name, len(files), copied,
                          round(pause * 1000, 3), verified, deleted)


def _preconditions(vm: RunningVm, to: Location, runs_on: Host, needed: int, dest_fs: Folders, dest: str) -> list[str]:
    problems = []
    if dest.rstrip("/") == vm.folder.rstrip("/"):
        problems.append("the destination is where the VM already is")
    try:
        capacity = to.measure()
        if capacity.free < needed:
            problems.append(f"too small: the VM's files take {format_size(needed)}, {format_size(capacity.free)} is free")
    except VhdkitError as e:
        problems.append(f"cannot be measured: {e}")
    reach = to.reach(runs_on)
    if not reach.writable:
        problems.append(reach.why or f"{runs_on.name} cannot write there")
    elif dest_fs.exists(dest):
        problems.append(f"{dest} exists already")
    return problems


def _start_job(guest: GuestDisk, target_path: str, options: dict[str, Any]) -> MirrorJob:
    source = guest.active
    info = source.info()
    fmt = info.format
    disk_id = uuid.UUID(info.disk_id) if info.disk_id else None
    if source.parent is not None:  # the top of a chain: a new child of the copied parent
        parent_name = _file_name(source.parent.name)
        parent = (target_path.rsplit("/", 1)[0] + "/" + parent_name if "://" in target_path
                  else os.path.join(os.path.dirname(target_path), parent_name))
        target = create_target(target_path, format=fmt, parent=parent, disk_id=disk_id)
        shallow = True
    else:
        kind = "fixed" if info.type == "fixed" else "dynamic"
        extra = {"block_size": info.block_size} if info.block_size else {}
        target = create_target(target_path, source.size, format=fmt, type=kind, disk_id=disk_id, **extra)
        shallow = False
    try:
        return MirrorJob(guest, target, shallow=shallow, **options).start()
    except BaseException:
        target.close()
        raise


def _file_name(path_or_url: str) -> str:
    return path_or_url.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _allocated(path: str) -> int:
    from ..storage import open_store

    store = open_store(path)
    try:
        return store.allocated_bytes() or store.size()
    finally:
        store.close()


def _write_config(fs: Folders, path: str, config: dict[str, Any], host: str) -> None:
    config = dict(config, host=host, moved_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    fs.write(path, json.dumps(config, indent=2).encode(), replace=True)


__all__ = ["RunningVm", "TransferReport", "live", "live_storage", "live_vsm"]
