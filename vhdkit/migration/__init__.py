"""Live storage migration: move a disk a guest keeps writing, with a short switch-over.

``MirrorJob`` (mirror.py) is the job: its dirty map (dirty.py), its copier (copier.py) and its
switch-over (switchover.py), with the states in state.py. ``DiskService`` (service.py) is a running
disk with an NBD export and a control socket: ``vhdkit serve`` / ``vhdkit migrate``. The guest's
handle, ``vhdkit.guest.GuestDisk``, lives below this package, so the NBD server needs none of it.
"""

from .mirror import MirrorJob
from .state import MirrorMode, MirrorState
from .switchover import complete_together

__all__ = ["MirrorJob", "MirrorMode", "MirrorState", "complete_together"]
