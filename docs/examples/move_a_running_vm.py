"""Move a VM whose disks the engine runs: Live Storage of every file, checkpoint chains included,
with one switch-over for all its disks (docs/engine-api.md). Run it with a VM folder and a folder
(or smb:// share) to move it into:

    python move_a_running_vm.py VM_FOLDER DESTINATION
"""

from __future__ import annotations

import sys
import threading

import vhdkit
from vhdkit.guest import GuestDisk
from vhdkit.placement.locations import Host
from vhdkit.vm import load
from vhdkit.vm.move import move_vm

vm = load(sys.argv[1])
here = Host("this-host", local=True)

# The engine runs the VM: each disk's attached file (the top of its chain) behind a GuestDisk,
# the handle every guest read and write goes through, and the guests keep writing.
guests = {disk.chain[0]: GuestDisk(vhdkit.open(disk.chain[0], "r+", allowed_parent_dirs=[vm.folder]))
          for disk in vm.disks}
stop = threading.Event()
written: dict[str, dict[int, bytes]] = {path: {} for path in guests}


def guest_io(path: str, guest: GuestDisk) -> None:
    n = 0
    while not stop.is_set():
        offset = (n * 13 % 256) * 64 * 1024
        data = n.to_bytes(8, "little") * (64 * 1024 // 8)
        guest.pwrite(offset, data)
        written[path][offset] = data
        n += 1
        stop.wait(0.002)


writers = [threading.Thread(target=guest_io, args=item, daemon=True) for item in guests.items()]
for writer in writers:
    writer.start()


def on_event(event: str, fields: dict) -> None:  # "copying", "mirroring", "switched", "relinked", "written", "done"
    if event in ("switched", "written"):
        print(event, {k: v for k, v in fields.items() if k in ("pause_ms", "destination")})


report = move_vm(vm, "live-storage", to=sys.argv[2], source_host=here, guests=guests, delete_source=True,
                 on_event=on_event)
stop.set()
for writer in writers:
    writer.join()

print(f"{report.vm}: {report.files_copied} files to {report.destination}, one pause of {report.pause_ms:.1f} ms, "
      f"source deleted: {report.source_deleted}")
for path, guest in guests.items():  # every guest now runs at the destination, with every write it made
    assert guest.name.startswith(report.destination), guest.name
    assert all(guest.pread(offset, len(data)) == data for offset, data in written[path].items())
    print(f"  {guest.name}: {len(written[path])} blocks written during the move, all there")
    guest.close()
moved = load(report.destination)  # the configuration at the destination names the new files
print("chains:", [len(disk.chain) for disk in moved.disks])
