"""Mirror a disk whose guest I/O path the engine owns (docs/engine-api.md).

The engine's VM writes through a ``GuestDisk``; a ``MirrorJob`` copies the disk to a new image
while those writes go on, and switches the guest over in one short pause. Run it in an empty
folder: ``python mirror_a_disk.py``.
"""

from __future__ import annotations

import os
import threading
import time

import vhdkit
from vhdkit.guest import GuestDisk
from vhdkit.migration import MirrorJob
from vhdkit.migration.service import create_target

MiB = 1 << 20

# The VM's disk, with something on it, and the handle the VM's I/O goes through from now on.
source = vhdkit.create("vm1.vhdx", 64 * MiB)
source.pwrite(0, b"boot sector".ljust(512, b"\0"))
source.pwrite(8 * MiB, b"\x5a" * (16 * MiB))  # data the bulk copy has to move
guest = GuestDisk(source)

# The guest keeps writing while the disk moves: 64 KiB blocks, each stamped with its number.
stop = threading.Event()
written: dict[int, bytes] = {}


def guest_io() -> None:
    n = 0
    while not stop.is_set():
        offset = MiB + (n * 7 % 1000) * 64 * 1024  # (the first MiB stays as it was)
        data = n.to_bytes(8, "little") * (64 * 1024 // 8)
        guest.pwrite(offset, data)  # the engine's I/O path: every write goes through the GuestDisk
        written[offset] = data
        n += 1
        time.sleep(0.001)


writer = threading.Thread(target=guest_io, daemon=True)
writer.start()

# The new image (opened "unpublished": nobody uses it until the switch-over), and the job.
os.makedirs("moved", exist_ok=True)
target = create_target("moved/vm1.vhdx", guest.size, format="vhdx")
events: list[str] = []
job = MirrorJob(guest, target, speed=16 * MiB, on_event=lambda event, status: events.append(event)).start()

job.pause_copy()  # hold the bulk copy (the guest's writes are still mirrored), e.g. for a busy hour
held_at = job.status()["copied"]
time.sleep(0.3)
assert job.status()["state"] == "paused" and job.status()["copied"] <= held_at + 2 * MiB  # (a piece in flight)
job.resume()

job.wait("ready", timeout=60)  # the pass is done; the target follows every write
status = job.status()
print(f"ready: copied {status['copied']} bytes, mirrored {status['mirrored']}, remaining {status['remaining']}")

pause = job.complete(timeout=60)  # one short pause: the guest now runs on the target
print(f"switched over in {pause * 1000:.1f} ms; the guest runs on {guest.name}")
verified = job.verify()  # the copy against the source, where the guest has not written since
job.end_verification()
stop.set()
writer.join()

assert guest.active is target and guest.pread(0, 11) == b"boot sector"
assert all(guest.pread(offset, len(data)) == data for offset, data in written.items())
print(f"verified {verified} bytes; {len(written)} blocks the guest wrote are all on the target")
print("events:", ", ".join(dict.fromkeys(events)))
guest.close()
job.source.close()
