"""A running disk: a guest's handle, its NBD export, and a control socket that migrates it.

``DiskService`` is what ``vhdkit serve`` runs. The control socket speaks JSON lines, one request
and one answer per line (``{"cmd": ...}`` -> ``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``):

    status                       the disk, and the migration if there is one
    migrate   to, [format, mode, speed, granularity, in_flight, buf_size, on_source_error, on_target_error]
                                 create the target and start a mirror job
    wait      [state, timeout]   until the job reaches a state ("ready" by default) or ends
    complete  [timeout, delete_source, verify]
                                 switch over, verify the copy against the source, close the source
                                 (and delete it, if asked — only after a verified switch-over)
    cancel                       stop; the guest stays on the source; the unfinished target is removed
    stop                         end the service

A failed job removes the target it made; the guest never stops, and the source is complete.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from typing import Any

from .. import formats
from ..errors import MigrationError, VhdkitError
from ..formats import RAW
from ..ops.create import create
from ..ops.open import open_image
from ..guest import GuestDisk
from .mirror import MirrorJob
from .requests import parse_request

MAX_REQUEST_LINE = 64 * 1024


def create_target(path: str, size: int | None = None, **options: Any) -> Any:
    """A new image for a mirror job to fill, opened ``unpublished``: nobody uses it until the
    switch-over, so its metadata need not go through the log (each block allocation would cost
    flushes the guest's mirrored writes wait behind); the job publishes it at the switch-over."""
    create(path, size, **options).close()
    return open_image(path, "r+", unpublished=True)


class DiskService:
    def __init__(self, image: str, *, read_only: bool = False) -> None:
        self.image = image
        self.guest = GuestDisk(open_image(image, "r" if read_only else "r+"))
        self.job: MirrorJob | None = None
        self.source_path: str | None = None
        self.target_path: str | None = None
        self.verified: int | None = None
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._nbd: Any = None
        self._control: socket.socket | None = None
        self._control_path: str | None = None
        self._stopped = threading.Event()
        self._closing: list[threading.Thread] = []

    # -- serving -------------------------------------------------------------------------------
    def serve_nbd(self, address: str, *, insecure: bool = False, **options: Any) -> None:
        """Export the disk at ``address``; ``options`` are NbdServer's (TLS, export name, caps)."""
        from ..nbd import NbdServer  # only a service that exports its disk loads the NBD server

        server = NbdServer(self.guest, description=os.path.basename(self.image), **options)
        self._nbd = server.listen(address, insecure=insecure).start()

    def serve_control(self, path: str) -> None:
        from ..nbd.listen import bind_unix_private, serve_requests

        sock = bind_unix_private(path, backlog=8)  # the control socket moves disks: its owner only
        self._control, self._control_path = sock, path
        serve_requests(sock, self.handle, self.stop, MAX_REQUEST_LINE)

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def stop(self) -> None:
        job = self.job
        if job is not None and not job.state.ended:
            self.cancel()
        if self._nbd is not None:
            self._nbd.stop()
        if self._control is not None:
            self._control.close()
            if self._control_path and os.path.exists(self._control_path):
                os.unlink(self._control_path)
        self.guest.close()
        for closing in self._closing:
            closing.join()
        self._stopped.set()

    # -- the commands --------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        job = self.job
        return {"image": self.guest.name, "size": self.guest.size,
                "job": job.status() if job is not None else None, "verified_bytes": self.verified}

    def migrate(self, to: str, *, format: str | None = None, **options: Any) -> dict[str, Any]:  # noqa: A002
        with self._lock:
            if self.job is not None and not self.job.state.ended:
                raise MigrationError(f"a migration to {self.job.target.name} is already {self.job.state}")
            fmt = formats.for_target(to, format, default=RAW)
            source = self.guest.active
            # a format that records the sector size takes the source's
            sector = {"logical_sector_size": source.logical_sector_size} if len(fmt.logical_sector_sizes) > 1 else {}
            target = create_target(to, source.size, format=fmt, **sector)
            try:
                job = MirrorJob(self.guest, target, on_event=self._event, **options)
                self.job, self.source_path, self.target_path, self.verified = job, self.image, to, None
                job.start()
            except BaseException:
                target.close()
                _remove(to)
                self.job = None
                raise
            return job.status()

    def wait(self, state: str = "ready", timeout: float | None = None) -> dict[str, Any]:
        job = self._job()
        job.wait(state, timeout)
        return job.status()

    def complete(self, timeout: float | None = None, delete_source: bool = False, verify: bool = True) -> dict[str, Any]:
        job = self._job()
        if delete_source and not verify:
            raise MigrationError("the source is deleted only after a verified switch-over")
        job.complete(timeout)
        if verify:
            try:
                self.verified = job.verify()
            finally:
                job.end_verification()
        else:
            job.end_verification()
        self.image = self.target_path or self.image
        result = job.status()
        if delete_source and self.source_path:
            job.source.close()
            _remove(self.source_path)  # only now: switched, verified, closed
            result["source_deleted"] = True
        else:  # closed behind the answer, and without fsync: everything the guest wrote is on the
            # target now, so the old file owes the guest no durability, and its fsync forced a
            # journal commit the guest's first writes to the target waited for (ext4 data=ordered;
            # bench/migrate.py: W2 p99 after the switch 0.7-0.8 ms against QEMU's 0.2-0.3, which
            # leaves its source open). A VHDX source still ends its log session, flush and all.
            job.source.flush_on_close = False
            closing = threading.Thread(target=_close_old_source, args=(job.source,), name="vhdkit-close-source",
                                       daemon=False)
            closing.start()
            self._closing.append(closing)
        return result

    def cancel(self) -> dict[str, Any]:
        job = self._job()
        job.cancel("cancelled by request")
        return job.status()

    def _job(self) -> MirrorJob:
        if self.job is None:
            raise MigrationError("no migration has been started")
        return self.job

    def _event(self, event: str, status: dict[str, Any]) -> None:
        self.events.append({"event": event, **status})
        if event in ("failed", "cancelled"):
            threading.Thread(target=self._discard_target, daemon=True).start()

    def _discard_target(self) -> None:
        """After a failed or cancelled job: close and remove the unfinished target."""
        job = self.job
        if job is None:
            return
        job.ranges.wait_idle()  # no mirrored write is still on its way to it
        try:
            job.target.close()
        except (VhdkitError, OSError, ValueError):
            pass
        if self.target_path:
            _remove(self.target_path)

    def handle(self, line: bytes) -> dict[str, Any]:
        try:
            cmd, fields = parse_request(line)  # every field checked before anything runs
            if cmd == "status":
                return {"ok": True, **self.status()}
            if cmd == "migrate":
                to = fields.pop("to")
                fmt = fields.pop("format", None)
                return {"ok": True, "job": self.migrate(to, format=fmt, **fields)}
            if cmd == "wait":
                return {"ok": True, "job": self.wait(fields.get("state", "ready"), fields.get("timeout"))}
            if cmd == "complete":
                return {"ok": True, "job": self.complete(fields.get("timeout"), fields.get("delete_source", False),
                                                         fields.get("verify", True))}
            if cmd == "cancel":
                return {"ok": True, "job": self.cancel()}
            return {"ok": True, "stopping": True}  # stop
        except (VhdkitError, ValueError, KeyError, TypeError, OSError) as e:
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}


def _close_old_source(disk: Any) -> None:
    """Close a source the guest has left. A VHDX still ends its log session with a flush: its
    dirty pages are written back first (sync_file_range starts no journal commit), so that flush
    is a short commit, not a writeback the guest's writes to the target queue behind
    (bench/migrate.py, VHDX source: guest p99 after the switch 2.0 -> 0.5 ms). Other formats
    close without a flush, and a writeback would only compete with the guest (W2: 0.3 -> 1.0 ms)."""
    if formats.of(disk) is formats.VHDX:
        try:
            disk.start_writeback(wait=True)
        except (VhdkitError, OSError, ValueError):
            pass  # a hint; close() reports what matters
    disk.close()


def _remove(path: str) -> None:
    try:
        if path.startswith("smb://"):
            import smbclient

            from ..storage.smb import SmbLocation

            loc = SmbLocation(path)
            smbclient.remove(loc.unc, **loc.options)
        elif "://" not in path or path.startswith("file://"):
            os.unlink(path.removeprefix("file://"))
    except (OSError, VhdkitError):
        pass


def request(control: str, cmd: str, **fields: Any) -> dict[str, Any]:
    """One request to a service's control socket, and its answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(control)
            sock.sendall(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")
            with sock.makefile("rb") as reader:
                line = reader.readline()
    except OSError as e:
        raise MigrationError(f"cannot reach the control socket {control}: {e.strerror or e} "
                             "(is vhdkit serve running there?)") from None
    if not line:
        raise MigrationError(f"{control}: the service closed the connection without answering")
    return json.loads(line)
