"""``vhdkit vm serve``: a VM's disks served over NBD, one export per disk (the top of each chain),
so outside programs can be its guest, and a control socket through which ``vhdkit vm move
--control`` moves the VM while they write: every disk mirrored, one switch-over for all
(specs/vm.md). The process stands in for the VM's worker process: its disks live in it.

Control requests are JSON lines, bounded and checked: ``{"cmd": "status"}``, ``{"cmd": "move",
"type": "live-storage", "to": URL, "delete_source": bool}``, ``{"cmd": "cancel"}`` (a move before
its switch-over), ``{"cmd": "stop"}``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from typing import Any

from ..errors import VhdkitError
from ..guest import GuestDisk
from ..ops.open import open_image
from ..placement.locations import Host, Identity
from .loader import load
from .model import VmConfig

MAX_REQUEST_LINE = 64 * 1024
KINDS = ("live-storage", "live-vsm")


class VmRunner:
    def __init__(self, path: str, nbd_dir: str, *, host: str | None = None) -> None:
        self.vm: VmConfig = load(path)
        self.host = host or socket.gethostname()
        self.nbd_dir = nbd_dir
        self.guests: dict[str, GuestDisk] = {}
        self.exports: dict[str, str] = {}  # disk ("IDE 0:0") -> unix socket
        self._servers: list[Any] = []
        self._control: socket.socket | None = None
        self._control_path: str | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self.last_move: dict[str, Any] | None = None
        self.step: dict[str, Any] | None = None  # the move's latest event
        self._jobs: list[Any] = []
        try:
            for disk in self.vm.disks:
                if disk.local is None or disk.problem:
                    raise VhdkitError(f"{self.vm.name}: disk {disk.path} cannot be run: {disk.problem}")
                top = disk.chain[0]
                self.guests[top] = GuestDisk(open_image(top, "r+", allowed_parent_dirs=[self.vm.folder]))
        except BaseException:
            self.stop()
            raise

    def serve_nbd(self) -> None:
        from ..nbd import NbdServer  # only a served VM loads the NBD server

        os.makedirs(self.nbd_dir, exist_ok=True)
        for disk in self.vm.disks:
            name = f"{disk.controller.replace(' ', '')}-{disk.location}"
            path = os.path.join(self.nbd_dir, f"{name}.sock")
            server = NbdServer(self.guests[disk.chain[0]], description=f"{self.vm.name} {disk.controller}:{disk.location}")
            self._servers.append(server.listen(f"unix:{path}").start())
            self.exports[f"{disk.controller}:{disk.location}"] = path

    def serve_control(self, path: str) -> None:
        from ..nbd.listen import bind_unix_private, serve_requests

        self._control, self._control_path = bind_unix_private(path, backlog=8), path
        serve_requests(self._control, self.handle, self.stop, MAX_REQUEST_LINE)

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
        self._servers.clear()
        if self._control is not None:
            self._control.close()
            self._control = None
            if self._control_path:
                try:
                    os.unlink(self._control_path)
                except FileNotFoundError:
                    pass
        for guest in self.guests.values():
            try:
                guest.close()
            except (VhdkitError, OSError, ValueError):
                pass
        self._stopped.set()

    # -- control ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {"vm": self.vm.name, "folder": self.vm.folder, "host": self.host, "exports": self.exports,
                "disks": {k: g.name for k, g in self.guests.items()}, "moving": self.step, "last_move": self.last_move}

    def cancel(self) -> dict[str, Any]:
        """Stop a move before its switch-over: the jobs end, the move fails, the destination goes."""
        jobs = list(self._jobs)
        if not jobs:
            raise VhdkitError("no move is mirroring now")
        if any(job.state.value in ("switching", "completed") for job in jobs):
            raise VhdkitError("too late: the guests are switching (or have switched) to the destination")
        for job in jobs:
            job.cancel("cancelled by vhdkit vm move --cancel")
        return {"cancelled": len(jobs)}

    def move(self, kind: str, to: str, delete_source: bool, speed: int | None = None) -> dict[str, Any]:
        from .move import move_vm

        if kind not in KINDS:
            raise ValueError(f"type must be one of {', '.join(KINDS)} here, not {kind!r}")
        if not isinstance(to, str) or not to or len(to) > 4096:
            raise ValueError("to must be a folder or smb:// URL")
        if not isinstance(delete_source, bool):
            raise ValueError("delete_source must be true or false")
        if speed is not None and (not isinstance(speed, int) or isinstance(speed, bool) or not 0 < speed <= 1 << 40):
            raise ValueError("speed must be bytes per second, from 1 to 2**40")
        identity = None
        if to.startswith("smb://"):
            from urllib.parse import urlsplit

            identity = Identity(urlsplit(to).username or "", os.environ.get("VHDKIT_SMB_PASSWORD", ""))
        with self._lock:  # one move at a time
            if self.last_move is not None:
                raise VhdkitError(f"{self.vm.name} was moved to {self.last_move['destination']}: serve it from "
                                  "there to move it again")
            try:
                report = move_vm(self.vm, kind, to=to, source_host=Host(self.host, identity, local=True),
                                 guests=self.guests, delete_source=delete_source,
                                 on_event=lambda event, fields: setattr(self, "step", {"event": event, **fields}),
                                 on_jobs=lambda jobs: setattr(self, "_jobs", list(jobs)),
                                 **({"speed": speed} if speed else {}))
            finally:
                self._jobs, self.step = [], None
            self.last_move = report._asdict()
            return self.last_move

    def handle(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                raise ValueError("a request is a JSON object with a cmd")
            unknown = set(request) - {"cmd", "type", "to", "delete_source", "speed"}
            if unknown:
                raise ValueError(f"unknown field {sorted(unknown)[0]!r}")
            cmd = request["cmd"]
            if cmd == "status":
                return {"ok": True, **self.status()}
            if cmd == "move":
                return {"ok": True, "move": self.move(request.get("type", ""), request.get("to", ""),
                                                      request.get("delete_source", False), request.get("speed"))}
            if cmd == "cancel":
                return {"ok": True, **self.cancel()}
            if cmd == "stop":
                return {"ok": True, "stopping": True}
            raise ValueError(f"unknown cmd {cmd[:40]!r}")
        except RecursionError:
            return {"ok": False, "error": "ValueError: nested too deeply"}
        except (VhdkitError, ValueError, KeyError, TypeError, OSError) as e:
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}
